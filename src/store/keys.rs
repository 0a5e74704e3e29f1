//! Key layout of the three column families.
//!
//! Integers are big-endian so that RocksDB's bytewise order equals numeric
//! order, which makes log ranges and paginated listings plain prefix scans.
//!
//! * `raft_log`:  `index: u64`                       -> encoded log entry
//! * `raft_meta`: short ASCII names (see [`meta`])   -> encoded value
//! * `sm`:        `generation: u64 | table: u8 | key` -> encoded value
//!
//! The state-machine generation prefix is what makes snapshot installation
//! atomic: a snapshot is written under a fresh generation and becomes live
//! with one synced pointer write (see `store::Store::install_generation`).

/// Names of keys in the `raft_meta` column family.
pub mod meta {
    /// The last vote, fsynced before `save_vote` returns.
    pub const VOTE: &[u8] = b"vote";
    /// The last committed log id: a hint for faster re-apply after a restart, not synced.
    pub const COMMITTED: &[u8] = b"committed";
    /// The last purged log id; entries up to it are gone from `raft_log`.
    pub const PURGED: &[u8] = b"last_purged";
    /// Which node and cluster this data dir belongs to.
    pub const IDENTITY: &[u8] = b"identity";
    /// Peer keys of the members, as a join handed them over, trusted until
    /// this node has applied the replicated ones (`Table::PeerKeys`).
    pub const BOOTSTRAP_PEERS: &[u8] = b"bootstrap_peers";
    /// The live state-machine generation.
    pub const SM_GENERATION: &[u8] = b"sm_generation";
}

/// Tables inside one state-machine generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Table {
    /// Raft's last-applied log id and membership, written in the same batch
    /// as the effects of the entries they cover.
    Applied = 0x00,
    /// Cluster-wide settings: id, public URL, root admin token hash.
    Cluster = 0x01,
    /// Node ids that were removed and may never be used again.
    RetiredNodes = 0x02,
    /// Public peer keys of admitted members, by node id (peer auth).
    PeerKeys = 0x03,
    /// Join tokens by id (verifiers only, never the secrets).
    JoinTokens = 0x04,
    /// Admin access keys (SigV4) by key id, their secrets sealed.
    AdminAccessKeys = 0x05,
    /// User pools by id.
    Pools = 0x10,
    /// App clients by client id (unique cluster-wide: public flows name
    /// only the client, and the client names its pool).
    AppClients = 0x11,
    /// Index `pool_id | 0 | client_id` of each pool's app clients.
    PoolClients = 0x12,
    /// Number of users per pool, by pool id, kept by every command that
    /// creates or deletes users (counting 1M users by scan takes seconds).
    UserCounts = 0x13,
    /// A pool's MFA setting (`SetUserPoolMfaConfig`), by pool id; absent
    /// means OFF.
    PoolMfa = 0x14,
    /// A pool's `SignInPolicy` (choice-based sign-in, magic links), by
    /// pool id; absent means `PASSWORD` only.
    PoolSignIn = 0x15,
    /// Whether a pool allows SRP sign-in (`PoolSrp`), by pool id; absent
    /// means off.
    PoolSrp = 0x16,
    /// A pool's `DeviceConfiguration`, by pool id; absent means devices
    /// are not tracked.
    PoolDevices = 0x17,
    /// An app client's OAuth settings (`ClientOAuth`), by client id;
    /// absent means the client uses no OAuth grant. Deleted with the
    /// client, and with its pool through `PoolClients`.
    AppClientOAuth = 0x18,
    /// A pool's resource servers: `pool_id | 0 | identifier`.
    ResourceServers = 0x19,
    /// Spent authorization codes until they expire: `pool_id | 0 |
    /// expires_at (u64 BE ms) | code id` -> the token family the code
    /// started, which a replay revokes. Ordered by expiry, so `apply`
    /// prunes the expired ones from the front.
    SpentCodes = 0x1a,
    /// The hosted page's branding (`Branding`): `pool_id | 0 | client_id`,
    /// with an empty client id for the pool's default. Deleted with the
    /// client and with the pool.
    Brandings = 0x1b,
    /// A pool's passkey setting (`WebAuthnConfig`), by pool id; absent
    /// means the default (relying party from the public URL).
    PoolWebAuthn = 0x1c,
    /// Spent WebAuthn sign-in challenges until they expire: `pool_id | 0 |
    /// expires_at (u64 BE ms) | challenge id` -> empty. Ordered by expiry,
    /// so `apply` prunes the expired ones from the front.
    SpentChallenges = 0x1d,
    /// A pool's triggers (`LambdaConfig`), by pool id; absent means none.
    PoolTriggers = 0x1f,
    /// Users by `pool_id | 0 | sub`.
    Users = 0x20,
    /// Unique index `pool_id | 0 | normalized username` -> sub.
    UserNames = 0x21,
    /// Unique index `pool_id | 0 | alias | normalized value` -> sub.
    UserAliases = 0x22,
    /// Outstanding one-time codes by `pool_id | 0 | sub | 0 | purpose`.
    Codes = 0x23,
    /// Revoked refresh-token families by `pool_id | 0 | origin_jti` -> expiry.
    RevokedTokens = 0x24,
    /// Groups by `pool_id | 0 | name`.
    Groups = 0x25,
    /// Members of a group: `pool_id | 0 | group | 0 | sub` -> empty.
    GroupMembers = 0x26,
    /// Groups of a user: `pool_id | 0 | sub | 0 | group` -> empty.
    UserGroups = 0x27,
    /// `ListUsers` index: `pool_id | 0 | attribute | 0 | lowercased value
    /// | 0 | sub` -> empty. Attribute values never hold a zero byte.
    UserIndex = 0x28,
    /// Failed sign-in counters by `pool_id | 0 | sub` (lockout).
    SignInFailures = 0x29,
    /// Code sends per user and purpose in the current window, by
    /// `pool_id | 0 | sub | 0 | purpose`.
    CodeSends = 0x2a,
    /// A user's MFA state (software tokens, preferences, last TOTP step,
    /// recovery-code hashes) by `pool_id | 0 | sub`; absent means none.
    UserMfa = 0x2b,
    /// A user's SRP salt and verifier, by `pool_id | 0 | sub`, bound to the
    /// password hash it was made with (`SrpVerifier`).
    UserSrp = 0x2c,
    /// A user's devices (and forgotten ones, as tombstones), by
    /// `pool_id | 0 | sub | 0 | device_key`.
    UserDevices = 0x2d,
    /// A user's passkeys (`WebAuthnCredential`), by `pool_id | 0 | sub | 0
    /// | credential id (base64url)`.
    WebAuthnCredentials = 0x2e,
    /// A user's passkey registration waiting for its completion
    /// (`PendingRegistration`), by `pool_id | 0 | sub`.
    WebAuthnPending = 0x2f,
    /// Public token-signing keys of every node, by kid (the JWKS).
    SigningKeys = 0x30,
    /// The courier's outbox by message id (big-endian, log order).
    Outbox = 0x40,
    /// Ids of outbox messages a courier backend still has to deliver.
    OutboxPending = 0x41,
    /// Open messages per pool, `pool_id | 0 | id` -> empty, oldest first:
    /// what counts against the pool's queue bound.
    OutboxOpen = 0x42,
    /// Number of open messages per pool, by pool id.
    OutboxCounts = 0x43,
    /// Ids of finished (delivered or failed) messages, oldest first.
    OutboxDone = 0x44,
    /// Audit events by `pool_id | 0 | seq`.
    AuthEvents = 0x50,
    /// Per-user audit index: `pool_id | 0 | sub | 0 | seq` -> empty.
    UserAuthEvents = 0x51,
    /// Audit sequence bounds per pool, by `pool_id`.
    AuthEventBounds = 0x52,
    /// Aggregated failures that name no user: `pool_id | 0 | window | type
    /// | source` -> the id of the event carrying their count.
    AuthEventAggregates = 0x53,
    /// Identity pools by id (cluster-wide, not part of a user pool).
    IdentityPools = 0x60,
    /// Identities by identity id (unique in the cluster, so
    /// `DescribeIdentity` needs no pool id).
    Identities = 0x61,
    /// Index `identity_pool_id | 0 | identity_id` -> empty: listing a
    /// pool's identities, and deleting them with it.
    PoolIdentities = 0x62,
    /// Unique login index `identity_pool_id | 0 | provider | 0 | subject`
    /// -> identity id, decided in `apply` like usernames.
    IdentityLogins = 0x63,
    /// Roles by name (cluster-wide).
    Roles = 0x64,
    /// A user's own role: `user_pool_id | 0 | sub` -> role name.
    UserRoles = 0x65,
    /// External identity providers of a pool: `pool_id | 0 | name`.
    IdentityProviders = 0x66,
    /// Unique index of external identities: `pool_id | 0 | provider | 0 |
    /// subject` -> the sub of the user they sign in as.
    ProviderLinks = 0x67,
    /// A user's external identities: `pool_id | 0 | sub | 0 | provider` ->
    /// the link (Cognito's `identities` claim).
    UserProviderLinks = 0x68,
    /// Who names a role: `role | 0 | pool_id | 0 | kind | name` -> empty,
    /// kind `g` for a group (its `role_arn`) and `u` for a user's own
    /// role, so `DeleteRole` can refuse a role in use without a scan.
    RoleRefs = 0x69,
    /// Sync bookkeeping of an identity: `identity_pool_id | 0 |
    /// identity_id` -> `SyncState` (epoch, latest change, log bounds,
    /// usage).
    SyncStates = 0x70,
    /// Datasets: `identity_pool_id | 0 | identity_id | 0 | dataset`.
    Datasets = 0x71,
    /// Records: `identity_pool_id | 0 | identity_id | 0 | dataset | 0 |
    /// key`. Dataset names hold no zero byte, so the key is the rest.
    Records = 0x72,
    /// The identity's change log, which devices resume from:
    /// `identity_pool_id | 0 | identity_id | 0 | seq` -> `Change`, trimmed
    /// from the oldest end (`SyncState::floor`).
    SyncLog = 0x73,
}

impl Table {
    /// Every table, in key order; snapshots and digests walk them all.
    pub const ALL: [Table; 61] = [
        Table::Applied,
        Table::Cluster,
        Table::RetiredNodes,
        Table::PeerKeys,
        Table::JoinTokens,
        Table::AdminAccessKeys,
        Table::Pools,
        Table::AppClients,
        Table::PoolClients,
        Table::UserCounts,
        Table::PoolMfa,
        Table::PoolSignIn,
        Table::PoolSrp,
        Table::PoolDevices,
        Table::AppClientOAuth,
        Table::ResourceServers,
        Table::SpentCodes,
        Table::Brandings,
        Table::PoolWebAuthn,
        Table::SpentChallenges,
        Table::PoolTriggers,
        Table::Users,
        Table::UserNames,
        Table::UserAliases,
        Table::Codes,
        Table::RevokedTokens,
        Table::Groups,
        Table::GroupMembers,
        Table::UserGroups,
        Table::UserIndex,
        Table::SignInFailures,
        Table::CodeSends,
        Table::UserMfa,
        Table::UserSrp,
        Table::UserDevices,
        Table::WebAuthnCredentials,
        Table::WebAuthnPending,
        Table::SigningKeys,
        Table::Outbox,
        Table::OutboxPending,
        Table::OutboxOpen,
        Table::OutboxCounts,
        Table::OutboxDone,
        Table::AuthEvents,
        Table::UserAuthEvents,
        Table::AuthEventBounds,
        Table::AuthEventAggregates,
        Table::IdentityPools,
        Table::Identities,
        Table::PoolIdentities,
        Table::IdentityLogins,
        Table::Roles,
        Table::UserRoles,
        Table::IdentityProviders,
        Table::ProviderLinks,
        Table::UserProviderLinks,
        Table::RoleRefs,
        Table::SyncStates,
        Table::Datasets,
        Table::Records,
        Table::SyncLog,
    ];
}

/// How a table's rows belong to a user pool, which decides what deleting a
/// pool must clear. [`Table::scope`] is an exhaustive match, so a new
/// table cannot be added without deciding this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableScope {
    /// Not per pool (cluster state, the JWKS, the Raft bookkeeping).
    Cluster,
    /// Keys start with `pool_id | 0`: cleared by one prefix delete.
    PoolPrefixed,
    /// Keyed by the bare pool id.
    PoolKeyed,
    /// Per pool, but keyed by something else (a cluster-unique id): the
    /// pool's rows are found through a pool-prefixed index and deleted
    /// with it (app clients through `PoolClients`, outbox messages through
    /// `OutboxOpen` and the message's own pool, role references through
    /// the pool's groups and user roles).
    ViaIndex,
    /// Rows of an identity pool (not of a user pool): deleted with the
    /// identity pool, never by `DeleteUserPool`.
    IdentityPool,
}

impl Table {
    /// How this table's rows belong to a pool.
    pub const fn scope(self) -> TableScope {
        use TableScope::*;
        match self {
            Table::Applied | Table::Cluster | Table::RetiredNodes | Table::PeerKeys | Table::JoinTokens => Cluster,
            Table::SigningKeys | Table::Roles | Table::AdminAccessKeys => Cluster,
            Table::IdentityPools | Table::Identities | Table::PoolIdentities | Table::IdentityLogins => IdentityPool,
            Table::SyncStates | Table::Datasets | Table::Records | Table::SyncLog => IdentityPool,
            Table::Pools
            | Table::UserCounts
            | Table::AuthEventBounds
            | Table::OutboxCounts
            | Table::PoolMfa
            | Table::PoolSignIn
            | Table::PoolSrp
            | Table::PoolDevices
            | Table::PoolWebAuthn
            | Table::PoolTriggers => PoolKeyed,
            Table::AppClients
            | Table::AppClientOAuth
            | Table::Outbox
            | Table::OutboxPending
            | Table::OutboxDone
            | Table::RoleRefs => ViaIndex,
            Table::PoolClients
            | Table::Users
            | Table::UserNames
            | Table::UserAliases
            | Table::Codes
            | Table::RevokedTokens
            | Table::Groups
            | Table::GroupMembers
            | Table::UserGroups
            | Table::UserIndex
            | Table::SignInFailures
            | Table::CodeSends
            | Table::UserMfa
            | Table::UserSrp
            | Table::UserDevices
            | Table::WebAuthnCredentials
            | Table::WebAuthnPending
            | Table::SpentChallenges
            | Table::OutboxOpen
            | Table::AuthEvents
            | Table::UserAuthEvents
            | Table::AuthEventAggregates
            | Table::UserRoles
            | Table::IdentityProviders
            | Table::ResourceServers
            | Table::SpentCodes
            | Table::Brandings
            | Table::ProviderLinks
            | Table::UserProviderLinks => PoolPrefixed,
        }
    }

    /// Every table of `scope`, in key order.
    pub fn of_scope(scope: TableScope) -> impl Iterator<Item = Table> {
        Table::ALL.into_iter().filter(move |t| t.scope() == scope)
    }
}

/// The key of log entry `index`.
pub fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// Reads a log index back from its key.
pub fn log_index(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(..8)?.try_into().ok()?))
}

/// `generation | table | key`.
pub fn sm_key(generation: u64, table: Table, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + key.len());
    out.extend_from_slice(&generation.to_be_bytes());
    out.push(table as u8);
    out.extend_from_slice(key);
    out
}

/// The first key of `generation` (inclusive).
pub fn generation_start(generation: u64) -> [u8; 8] {
    generation.to_be_bytes()
}

/// The first key after `generation` (exclusive end of its range).
pub fn generation_end(generation: u64) -> [u8; 8] {
    generation.saturating_add(1).to_be_bytes()
}

/// Strips the generation prefix, leaving `table | key` as stored in snapshots.
pub fn strip_generation(key: &[u8]) -> Option<&[u8]> {
    key.get(8..)
}

/// `pool_id | 0 | rest`: keys of per-pool tables. Pool ids never contain
/// a zero byte, so one pool's keys never interleave with another's.
pub fn pool_key(pool_id: &str, rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pool_id.len() + 1 + rest.len());
    out.extend_from_slice(pool_id.as_bytes());
    out.push(0);
    out.extend_from_slice(rest);
    out
}

/// Big-endian encoding of a u64 id used inside a table key.
pub fn id_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Bytewise key order must equal numeric order, or range scans and
        /// log truncation would visit the wrong entries.
        #[test]
        fn log_keys_sort_numerically(a in any::<u64>(), b in any::<u64>()) {
            prop_assert_eq!(a.cmp(&b), log_key(a).cmp(&log_key(b)));
            prop_assert_eq!(log_index(&log_key(a)), Some(a));
        }

        #[test]
        fn generations_do_not_interleave(g in 0u64..u64::MAX - 1, k in proptest::collection::vec(any::<u8>(), 0..40)) {
            let key = sm_key(g, Table::Pools, &k);
            prop_assert!(key.as_slice() >= generation_start(g).as_slice());
            prop_assert!(key.as_slice() < generation_end(g).as_slice());
            prop_assert!(key.as_slice() < sm_key(g + 1, Table::Applied, &[]).as_slice());
        }
    }
}

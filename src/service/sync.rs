//! Per-identity sync data: who may touch it, its reads, its writes, and
//! the change history that device sessions follow. gRPC (`api::grpc::sync`)
//! and QUIC sessions (`sync::server`) both go through here.
//!
//! Writes are `UpdateRecords` and `DeleteDataset` commands, answered once
//! committed on a quorum and applied. Reads are local: a device that wants
//! the latest follows the change feed, and a tool that must see a write
//! made on another node a moment ago asks for a read barrier
//! (`consistent`).

use std::sync::Arc;

use super::cursor::{Cursors, Scope};
use super::identity::callers::ProvenIdentity;
use super::identity::IdentityService;
use super::{page_limit, submit, try_submit, ErrorKind, ServiceError};
use crate::auth::sealing::SealingCell;
use crate::command::{DeleteDataset, Rejection, UpdateRecords};
use crate::model::identity_pool::validate_identity_id;
use crate::model::sync::{
    validate_dataset_name, validate_device_id, validate_existing_dataset_name, validate_patches, Change, Cursor,
    Dataset, PatchOp, Record, RecordPatch, SyncLimits, SyncState,
};
use crate::raft::RaftNode;
use crate::service::admin_auth::AdminAuth;
use crate::sync::hub::ChangeHub;

/// Most datasets one `ListDatasets` page holds (Cognito's bound).
pub const MAX_DATASETS_PAGE: usize = 60;
/// Most records one `ListRecords` page holds.
pub const MAX_RECORDS_PAGE: usize = 1024;
/// How often a whole-state read retries when changes keep landing.
const SNAPSHOT_ATTEMPTS: usize = 16;
/// Device id recorded for writes made with the admin token.
pub const ADMIN_DEVICE: &str = "admin";

/// Who a change is recorded as made by (`last_modified_by`, the change's
/// `device_id`): the device named, else `admin` for the admin token, else
/// the identity itself. Cognito Sync's `DeviceId` is optional, and a
/// change an identity made must never read as the admin's.
fn recorded_device<'a>(caller: &Caller, identity_id: &'a str, device_id: &'a str) -> &'a str {
    match (caller, device_id) {
        (_, d) if !d.is_empty() => d,
        (Caller::Admin, _) => ADMIN_DEVICE,
        (Caller::Identity(_), _) => identity_id,
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The admin token: any identity's data.
    Admin,
    /// An identity, with its own token: its data only.
    Identity(ProvenIdentity),
}

impl Caller {
    /// When the caller's token expires (Unix seconds); `None` for admin.
    pub fn expires_at(&self) -> Option<i64> {
        match self {
            Caller::Admin => None,
            Caller::Identity(p) => Some(p.expires_at),
        }
    }
}

/// What a write did: the change, or the records it conflicted with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Written; the change as logged (records with their new sync counts,
    /// the identity's cursor after it).
    Written(Change),
    /// Some records moved on since the device saw them; nothing was
    /// written. Their current values, to resolve and retry.
    Conflict {
        /// The conflicting records now.
        records: Vec<Record>,
        /// The dataset's sync count now.
        dataset_sync_count: u64,
    },
}

/// One page of `ListRecords`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordsPage {
    /// Records changed after the requested sync count, by key.
    pub records: Vec<Record>,
    /// The next page's token.
    pub next_token: Option<String>,
    /// The dataset, if it exists.
    pub dataset: Option<Dataset>,
    /// The identity's merged datasets.
    pub merged_dataset_names: Vec<String>,
    /// The dataset's history restarted after the requested sync count.
    pub deleted_after_requested: bool,
}

/// An identity's usage (`DescribeIdentityUsage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityUsage {
    /// The identity pool.
    pub identity_pool_id: String,
    /// The identity.
    pub identity_id: String,
    /// Datasets.
    pub dataset_count: u32,
    /// Bytes of keys and values.
    pub data_bytes: u64,
    /// Unix milliseconds of the latest change (0: none).
    pub last_modified_date: i64,
}

/// An identity's whole data at one cursor (what a reloading device gets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSnapshot {
    /// Where the data stands.
    pub cursor: Cursor,
    /// Every dataset with all its records.
    pub datasets: Vec<(Dataset, Vec<Record>)>,
}

/// What became of an identity, as this node's state says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityFate {
    /// It exists and owns its data.
    Live,
    /// It was deleted, with its data.
    Deleted,
    /// It was merged into this survivor, which now holds its datasets.
    MergedInto(String),
}

/// The sync service of one node.
#[derive(Clone)]
pub struct SyncService {
    node: Arc<RaftNode>,
    identity: IdentityService,
    admin: AdminAuth,
    cursors: Cursors,
    limits: SyncLimits,
}

impl SyncService {
    /// The sync service of `node`, writing under `limits`.
    pub fn new(node: Arc<RaftNode>, identity: IdentityService, sealing: Arc<SealingCell>, limits: SyncLimits) -> Self {
        SyncService {
            admin: AdminAuth::new(node.clone()),
            node,
            identity,
            cursors: Cursors::new(sealing),
            limits,
        }
    }

    /// The limits writes are made under.
    pub fn limits(&self) -> SyncLimits {
        self.limits
    }

    /// The node's change hub.
    pub fn hub(&self) -> &Arc<ChangeHub> {
        self.node.hub()
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.node.node_id()
    }

    /// Who `token` proves the caller to be: the admin token, an identity's
    /// credentials, or a user-pool access token mapped to its identity in
    /// `identity_pool_id`.
    pub async fn authenticate(&self, token: &str, identity_pool_id: &str) -> Result<Caller, ServiceError> {
        if token.is_empty() {
            return Err(ServiceError::not_authorized(
                "missing token: send 'authorization: Bearer <credentials, access token or admin token>'",
            ));
        }
        if self.admin.check(Some(token)).await.is_ok() {
            return Ok(Caller::Admin);
        }
        let Some((_, issuer)) = crate::auth::verifier::peek_kid_and_issuer(token) else {
            // Not even a signed token with a key id and an issuer: say what
            // was expected rather than blame one kind of token.
            return Err(ServiceError::not_authorized(
                "Invalid token: not the admin token, nor an identity's credentials or an access token.",
            ));
        };
        // Credentials name an identity pool as issuer; access tokens a
        // user pool.
        let is_credentials = self
            .identity_issuer_pool(&issuer)
            .is_some_and(|p| validate_identity_id("identity_pool_id", &p).is_ok());
        if is_credentials {
            return Ok(Caller::Identity(self.identity.prove_by_credentials(token).await?));
        }
        // Anything else must be an access token; it is verified before the
        // pool id is looked at, so a bad token is NotAuthorized whatever
        // the rest of the request says.
        Ok(Caller::Identity(
            self.identity.prove_by_access_token(identity_pool_id, token).await?,
        ))
    }

    fn identity_issuer_pool(&self, issuer: &str) -> Option<String> {
        let (_, last) = issuer.rsplit_once('/')?;
        Some(last.to_string())
    }

    /// Refuses a caller that is not `identity_id` of `identity_pool_id`
    /// (or admin), and checks both ids' shape.
    pub fn check_access(&self, caller: &Caller, identity_pool_id: &str, identity_id: &str) -> Result<(), ServiceError> {
        validate_identity_id("identity_pool_id", identity_pool_id)?;
        validate_identity_id("identity_id", identity_id)?;
        match caller {
            Caller::Admin => Ok(()),
            Caller::Identity(p) if p.identity_pool_id == identity_pool_id && p.identity_id == identity_id => Ok(()),
            Caller::Identity(p) => Err(ServiceError::new(
                ErrorKind::NotAuthorized,
                "NotAuthorizedException",
                format!(
                    "identity {} may read and write only its own data, not that of {identity_id}",
                    p.identity_id
                ),
            )),
        }
    }

    async fn barrier(&self, consistent: bool) -> Result<(), ServiceError> {
        if consistent {
            self.node.read_barrier().await?;
        }
        Ok(())
    }

    /// `ListDatasets`.
    pub async fn list_datasets(
        &self,
        caller: &Caller,
        identity_pool_id: &str,
        identity_id: &str,
        next_token: &str,
        max_results: i32,
        consistent: bool,
    ) -> Result<(Vec<Dataset>, Option<String>), ServiceError> {
        self.check_access(caller, identity_pool_id, identity_id)?;
        let limit = if max_results == 0 {
            MAX_DATASETS_PAGE
        } else {
            page_limit("max_results", max_results)?.min(MAX_DATASETS_PAGE)
        };
        let parts = [identity_pool_id, identity_id];
        let scope = Scope::next_token("ListDatasets", &parts);
        let after = self.cursors.resume_text(&scope, next_token)?;
        self.barrier(consistent).await?;
        let mut page = self
            .node
            .store()
            .datasets_page(identity_pool_id, identity_id, after.as_deref(), limit + 1)?;
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last()
                .map(|d| self.cursors.issue(&scope, d.name.as_bytes()))
                .transpose()?
        } else {
            None
        };
        Ok((page, next))
    }

    /// `DescribeDataset`.
    pub async fn describe_dataset(
        &self,
        caller: &Caller,
        identity_pool_id: &str,
        identity_id: &str,
        dataset: &str,
        consistent: bool,
    ) -> Result<Dataset, ServiceError> {
        self.check_access(caller, identity_pool_id, identity_id)?;
        validate_existing_dataset_name(dataset)?;
        self.barrier(consistent).await?;
        self.node
            .store()
            .dataset(identity_pool_id, identity_id, dataset)?
            .ok_or_else(|| ServiceError::not_found(format!("Dataset '{dataset}' of identity {identity_id} not found.")))
    }

    /// `ListRecords`: records changed after `last_sync_count`, by key.
    #[allow(clippy::too_many_arguments, reason = "Cognito's request fields, one by one")]
    pub async fn list_records(
        &self,
        caller: &Caller,
        identity_pool_id: &str,
        identity_id: &str,
        dataset: &str,
        last_sync_count: i64,
        next_token: &str,
        max_results: i32,
        consistent: bool,
    ) -> Result<RecordsPage, ServiceError> {
        self.check_access(caller, identity_pool_id, identity_id)?;
        validate_existing_dataset_name(dataset)?;
        if last_sync_count < 0 {
            return Err(ServiceError::invalid("last_sync_count: 0 or more"));
        }
        let last = last_sync_count as u64;
        // Records page by up to 1,024 (a whole dataset), not by the 60 of
        // the other listings.
        let limit = match usize::try_from(max_results) {
            Ok(0) => MAX_RECORDS_PAGE,
            Ok(n) if n <= MAX_RECORDS_PAGE => n,
            _ => {
                return Err(ServiceError::invalid(format!(
                    "max_results: {max_results} is out of range; use 1 to {MAX_RECORDS_PAGE}"
                )))
            }
        };
        let sync = last_sync_count.to_string();
        let parts = [identity_pool_id, identity_id, dataset, sync.as_str()];
        let scope = Scope::next_token("ListRecords", &parts);
        let mut after = self.cursors.resume_text(&scope, next_token)?;
        self.barrier(consistent).await?;
        let store = self.node.store();
        let ds = store.dataset(identity_pool_id, identity_id, dataset)?;
        let mut records = Vec::new();
        // A dataset holds at most max_records records: the filtered scan
        // is bounded.
        'scan: loop {
            let batch = store.records_page(identity_pool_id, identity_id, dataset, after.as_deref(), 256)?;
            let done = batch.len() < 256;
            for r in batch {
                after = Some(r.key.clone());
                if r.sync_count > last {
                    records.push(r);
                    if records.len() > limit {
                        break 'scan;
                    }
                }
            }
            if done {
                break;
            }
        }
        let next_token = if records.len() > limit {
            records.truncate(limit);
            records
                .last()
                .map(|r| self.cursors.issue(&scope, r.key.as_bytes()))
                .transpose()?
        } else {
            None
        };
        let merged_dataset_names = store
            .datasets_page(identity_pool_id, identity_id, None, usize::MAX)?
            .into_iter()
            .filter(|d| d.merged_from.is_some())
            .map(|d| d.name)
            .collect();
        let deleted_after_requested = Dataset::deleted_after(ds.as_ref(), last);
        Ok(RecordsPage {
            records,
            next_token,
            dataset: ds,
            merged_dataset_names,
            deleted_after_requested,
        })
    }

    /// `UpdateRecords`: all patches or none; a conflict names the
    /// records that moved on.
    pub async fn update_records(
        &self,
        caller: &Caller,
        identity_pool_id: &str,
        identity_id: &str,
        dataset: &str,
        device_id: &str,
        patches: Vec<RecordPatch>,
    ) -> Result<WriteOutcome, ServiceError> {
        self.check_access(caller, identity_pool_id, identity_id)?;
        validate_existing_dataset_name(dataset)?;
        let device_id = recorded_device(caller, identity_id, device_id);
        validate_device_id(device_id)?;
        validate_patches(&patches, &self.limits)?;
        if patches.is_empty() {
            return Err(ServiceError::invalid("record_patches: at least one patch"));
        }
        // Every patched key ends up in the dataset with its new value (a
        // removed one as a tombstone that still counts its key), so patches
        // whose keys and values together exceed the dataset bound can never
        // apply. Refusing them here keeps a replicated command near the
        // dataset bound, whatever the transport admitted.
        let patched: u64 = patches
            .iter()
            .map(|p| match p.op {
                PatchOp::Replace => p.key.len() + p.value.as_ref().map_or(0, String::len),
                PatchOp::Remove => p.key.len(),
            } as u64)
            .sum();
        if patched > self.limits.max_dataset_bytes {
            return Err(ServiceError::limit_exceeded(format!(
                "the patches hold {patched} bytes of keys and values; a dataset holds at most {}",
                self.limits.max_dataset_bytes
            )));
        }
        let cmd = UpdateRecords {
            identity_pool_id: identity_pool_id.into(),
            identity_id: identity_id.into(),
            dataset: dataset.into(),
            device_id: device_id.into(),
            patches,
            limits: self.limits,
            now: crate::clock::now_millis(),
        };
        match try_submit(&self.node, cmd).await? {
            Ok(change) => Ok(WriteOutcome::Written(change)),
            Err(Rejection::SyncConflict {
                records,
                dataset_sync_count,
            }) => Ok(WriteOutcome::Conflict {
                records,
                dataset_sync_count,
            }),
            Err(Rejection::NotFound { kind, id }) if kind == "identity" => Err(ServiceError::not_found(format!(
                "Identity '{id}' not found in identity pool {identity_pool_id}."
            ))),
            Err(r) => Err(r.into()),
        }
    }

    /// `DeleteDataset`: returns the dataset as it was.
    pub async fn delete_dataset(
        &self,
        caller: &Caller,
        identity_pool_id: &str,
        identity_id: &str,
        dataset: &str,
        device_id: &str,
    ) -> Result<(Dataset, Change), ServiceError> {
        self.check_access(caller, identity_pool_id, identity_id)?;
        validate_existing_dataset_name(dataset)?;
        let device_id = recorded_device(caller, identity_id, device_id);
        validate_device_id(device_id)?;
        let before = self
            .describe_dataset(caller, identity_pool_id, identity_id, dataset, true)
            .await?;
        let change = submit(
            &self.node,
            DeleteDataset {
                identity_pool_id: identity_pool_id.into(),
                identity_id: identity_id.into(),
                dataset: dataset.into(),
                device_id: device_id.into(),
                now: crate::clock::now_millis(),
            },
        )
        .await?;
        Ok((before, change))
    }

    /// `DescribeIdentityUsage`.
    pub async fn identity_usage(
        &self,
        caller: &Caller,
        identity_pool_id: &str,
        identity_id: &str,
        consistent: bool,
    ) -> Result<IdentityUsage, ServiceError> {
        self.check_access(caller, identity_pool_id, identity_id)?;
        self.barrier(consistent).await?;
        let identity = self.identity.existing_identity(identity_id).await?;
        if identity.pool_id != identity_pool_id {
            return Err(ServiceError::not_found(format!(
                "Identity '{identity_id}' not found in identity pool {identity_pool_id}."
            )));
        }
        let state = self.node.store().sync_state(identity_pool_id, identity_id)?;
        Ok(IdentityUsage {
            identity_pool_id: identity_pool_id.into(),
            identity_id: identity_id.into(),
            dataset_count: state.as_ref().map_or(0, |s| s.dataset_count),
            data_bytes: state.as_ref().map_or(0, |s| s.data_bytes),
            last_modified_date: state.as_ref().map_or(0, |s| s.last_modified_date),
        })
    }

    /// The identity's sync state on this node (`None`: no change yet).
    pub fn state(&self, identity_pool_id: &str, identity_id: &str) -> Result<Option<SyncState>, ServiceError> {
        Ok(self.node.store().sync_state(identity_pool_id, identity_id)?)
    }

    /// Up to `limit` changes after `after_seq`, from this node's log, in
    /// order. The caller checks first that the cursor can resume
    /// (`SyncState::can_resume`).
    pub fn changes_after(
        &self,
        identity_pool_id: &str,
        identity_id: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Change>, ServiceError> {
        Ok(self
            .node
            .store()
            .sync_changes_after(identity_pool_id, identity_id, after_seq, limit)?)
    }

    /// Every dataset of the identity with all its records, as of one
    /// cursor. Reads are retried until the identity's sequence did not
    /// move during the read (each change moves it in the same write), so
    /// the datasets are exactly those at the returned cursor.
    pub fn snapshot(&self, identity_pool_id: &str, identity_id: &str) -> Result<SyncSnapshot, ServiceError> {
        let store = self.node.store();
        for _ in 0..SNAPSHOT_ATTEMPTS {
            let before = store.sync_state(identity_pool_id, identity_id)?;
            let mut datasets = Vec::new();
            for d in store.datasets_page(identity_pool_id, identity_id, None, usize::MAX)? {
                let records = store.records_page(identity_pool_id, identity_id, &d.name, None, usize::MAX)?;
                datasets.push((d, records));
            }
            let after = store.sync_state(identity_pool_id, identity_id)?;
            if before == after {
                let cursor = after.map_or(Cursor { epoch: 0, seq: 0 }, |s| s.cursor());
                return Ok(SyncSnapshot { cursor, datasets });
            }
        }
        Err(ServiceError::new(
            ErrorKind::Unavailable,
            "TooManyRequestsException",
            "the identity's data kept changing while it was read; retry",
        ))
    }

    /// What became of `identity_id` on this node (a local read). A device
    /// session asks when it may have missed the hub's `IdentityGone`
    /// (its queue overflowed).
    pub fn identity_fate(&self, identity_id: &str) -> Result<IdentityFate, ServiceError> {
        Ok(match self.node.store().identity_by_id(identity_id)? {
            None => IdentityFate::Deleted,
            Some(i) => match i.merged_into {
                Some(survivor) => IdentityFate::MergedInto(survivor),
                None => IdentityFate::Live,
            },
        })
    }

    /// Validates a dataset name a device may create.
    pub fn validate_new_dataset(name: &str) -> Result<(), ServiceError> {
        Ok(validate_dataset_name(name)?)
    }
}

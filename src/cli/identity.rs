//! `tessera identity list|get|delete`: the identities of an identity pool
//! (ListIdentities, DescribeIdentity, DeleteIdentities); and, as a device or
//! app would call them, `get-id` and `credentials` (GetId,
//! GetCredentialsForIdentity), so a shell can get an identity and the
//! credentials that `tessera sync` and resource servers take.

use anyhow::{bail, Result};
use clap::Subcommand;
use tessera::proto::*;

use super::{admin_client, connect, print, status_err};
use crate::Global;

/// The most ids one DeleteIdentities call takes (identity.proto), as in
/// Cognito.
const MAX_DELETE: usize = 60;

#[derive(Subcommand)]
pub enum IdentityCmd {
    /// List the identities of an identity pool.
    List {
        #[arg(long)]
        identity_pool_id: String,
        /// Leave out the identities merged into others.
        #[arg(long)]
        hide_disabled: bool,
    },
    /// Show one identity: its logins' providers, dates, and whether it was
    /// merged into another.
    Get {
        #[arg(long)]
        identity_id: String,
    },
    /// Delete identities with their logins (at most 60 per call); a
    /// deleted identity's next GetId makes a new one.
    Delete {
        /// The identities to delete; takes several values, and may be repeated.
        #[arg(long = "identity-id", value_name = "ID", num_args = 1.., required = true)]
        identity_ids: Vec<String>,
    },
    /// GetId: the identity of the given logins (made on first use), or a
    /// new guest identity with no login. A public call: no admin token.
    GetId {
        #[arg(long)]
        identity_pool_id: String,
        /// PROVIDER=TOKEN, e.g. a user pool's provider name and an id token;
        /// may be repeated.
        #[arg(long = "login", value_name = "PROVIDER=TOKEN", value_parser = parse_login)]
        logins: Vec<(String, String)>,
    },
    /// GetCredentialsForIdentity: credentials for the identity's role. A
    /// public call: an authenticated identity needs its logins again.
    Credentials {
        #[arg(long)]
        identity_id: String,
        /// PROVIDER=TOKEN; may be repeated.
        #[arg(long = "login", value_name = "PROVIDER=TOKEN", value_parser = parse_login)]
        logins: Vec<(String, String)>,
        /// Lifetime, 900 to 43200 seconds (default: the pool's, 1 hour).
        #[arg(long, default_value_t = 0)]
        duration_seconds: i32,
    },
}

fn parse_login(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((p, t)) if !p.is_empty() && !t.is_empty() => Ok((p.to_string(), t.to_string())),
        _ => Err(format!("{s:?}: give PROVIDER=TOKEN")),
    }
}

fn show(i: &IdentityDescription) {
    println!("identity:    {}", i.identity_id);
    println!("logins:      {}", i.logins.join(","));
    println!("created:     {}", i.creation_date);
    println!("modified:    {}", i.last_modified_date);
    println!("disabled:    {}", i.disabled);
    if !i.merged_into.is_empty() {
        println!("merged_into: {}", i.merged_into);
    }
}

fn identities_table(ids: &[IdentityDescription]) {
    println!("{:<56} {:<12} {:<9} LOGINS", "IDENTITY_ID", "CREATED", "DISABLED");
    for i in ids {
        println!(
            "{:<56} {:<12} {:<9} {}",
            i.identity_id,
            i.creation_date,
            i.disabled,
            i.logins.join(",")
        );
    }
}

/// Runs one `tessera identity` command.
pub async fn run(g: &Global, cmd: IdentityCmd) -> Result<()> {
    if let IdentityCmd::Delete { identity_ids } = &cmd {
        if identity_ids.len() > MAX_DELETE {
            bail!(
                "--identity-id: {} ids given; delete at most {MAX_DELETE} per call",
                identity_ids.len()
            );
        }
    }
    // The public calls need no admin token.
    let client = match &cmd {
        IdentityCmd::GetId { .. } | IdentityCmd::Credentials { .. } => connect(g).await?,
        _ => admin_client(g).await?,
    };
    match cmd {
        IdentityCmd::GetId {
            identity_pool_id,
            logins,
        } => {
            let r = client
                .identity()
                .get_id(GetIdRequest {
                    account_id: String::new(),
                    identity_pool_id,
                    logins: logins.into_iter().collect(),
                })
                .await
                .map_err(status_err)?
                .into_inner();
            print(g, &r, || println!("{}", r.identity_id))
        }
        IdentityCmd::Credentials {
            identity_id,
            logins,
            duration_seconds,
        } => {
            let r = client
                .identity()
                .get_credentials_for_identity(GetCredentialsForIdentityRequest {
                    identity_id,
                    logins: logins.into_iter().collect(),
                    custom_role_arn: String::new(),
                    duration_seconds,
                })
                .await
                .map_err(status_err)?
                .into_inner();
            print(g, &r, || {
                if let Some(c) = &r.credentials {
                    println!("identity       {}", r.identity_id);
                    println!("access key id  {}", c.access_key_id);
                    println!("expires        {}", c.expiration);
                    println!("session token  {}", c.session_token);
                }
            })
        }
        IdentityCmd::List {
            identity_pool_id,
            hide_disabled,
        } => {
            let ids = client
                .list_all_identities(&identity_pool_id, hide_disabled)
                .await
                .map_err(status_err)?;
            let out = serde_json::json!({ "identity_pool_id": identity_pool_id, "identities": ids });
            print(g, &out, || identities_table(&ids))
        }
        IdentityCmd::Get { identity_id } => {
            let i = client
                .identity()
                .describe_identity(client.req(DescribeIdentityRequest { identity_id }))
                .await
                .map_err(status_err)?
                .into_inner();
            print(g, &i, || show(&i))
        }
        IdentityCmd::Delete { identity_ids } => {
            let n = identity_ids.len();
            let r = client
                .identity()
                .delete_identities(client.req(DeleteIdentitiesRequest {
                    identity_ids_to_delete: identity_ids,
                }))
                .await
                .map_err(status_err)?
                .into_inner();
            print(g, &r, || {
                println!(
                    "deleted {} of {n} identities",
                    n.saturating_sub(r.unprocessed_identity_ids.len())
                );
                for u in &r.unprocessed_identity_ids {
                    println!("not deleted: {} ({})", u.identity_id, u.error_code);
                }
            })?;
            // A partial delete is a failure for scripts, even though the
            // call itself succeeded.
            if !r.unprocessed_identity_ids.is_empty() {
                bail!("{} identities were not deleted", r.unprocessed_identity_ids.len());
            }
            Ok(())
        }
    }
}

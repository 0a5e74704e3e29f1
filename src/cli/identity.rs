//! `tessera identity list|get|delete`: the identities of an identity pool
//! (ListIdentities, DescribeIdentity, DeleteIdentities).

use anyhow::{bail, Result};
use clap::Subcommand;
use tessera::proto::*;

use super::{admin_client, print, status_err};
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
    let client = admin_client(g).await?;
    match cmd {
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

//! `tessera admin-key create|list|delete`: the admin access keys that sign
//! admin calls with AWS Signature Version 4 (AWS SDKs, the AWS CLI).

use anyhow::Result;
use clap::Subcommand;
use tessera::proto::*;

use super::{admin_client, print, status_err};
use crate::Global;

#[derive(Subcommand)]
pub enum AdminKeyCmd {
    /// Create a key; prints its secret, which is shown only this once.
    Create {
        /// Use this access key id (16 to 128 of A-Z 0-9) instead of a
        /// random one, e.g. to move an existing configuration; needs
        /// --secret-stdin.
        #[arg(long, requires = "secret_stdin")]
        key_id: Option<String>,
        /// Read the secret for --key-id from the first line of stdin (a
        /// hidden prompt on a terminal), so it stays out of shell history.
        #[arg(long, requires = "key_id")]
        secret_stdin: bool,
        /// What the key is for.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List keys: ids, descriptions and creation dates, never secrets.
    List,
    /// Delete a key; requests signed with it are refused from then on.
    Delete {
        /// The access key id.
        key_id: String,
    },
}

pub async fn run(g: &Global, cmd: AdminKeyCmd) -> Result<()> {
    // The secret is read before connecting, so a missing one fails first.
    let secret = match &cmd {
        AdminKeyCmd::Create { secret_stdin: true, .. } => Some(super::user::read_secret_line("Secret access key")?),
        _ => None,
    };
    let client = admin_client(g).await?;
    match cmd {
        AdminKeyCmd::Create {
            key_id, description, ..
        } => {
            let r = client
                .admin()
                .create_admin_access_key(client.req(CreateAdminAccessKeyRequest {
                    access_key_id: key_id.unwrap_or_default(),
                    secret_access_key: secret.unwrap_or_default(),
                    description,
                }))
                .await
                .map_err(status_err)?
                .into_inner();
            print(g, &r, || {
                let key = r.access_key.clone().unwrap_or_default();
                println!("access key id:     {}", key.access_key_id);
                println!("secret access key: {}", r.secret_access_key);
                println!("(the secret is shown only now; store it)");
            })
        }
        AdminKeyCmd::List => {
            let r = client
                .admin()
                .list_admin_access_keys(client.req(ListAdminAccessKeysRequest {}))
                .await
                .map_err(status_err)?
                .into_inner();
            print(g, &r, || {
                println!("{:<24} {:<26} DESCRIPTION", "ACCESS KEY ID", "CREATED");
                for k in &r.access_keys {
                    println!(
                        "{:<24} {:<26} {}",
                        k.access_key_id,
                        created(k.create_date),
                        k.description
                    );
                }
            })
        }
        AdminKeyCmd::Delete { key_id } => {
            client
                .admin()
                .delete_admin_access_key(client.req(DeleteAdminAccessKeyRequest {
                    access_key_id: key_id.clone(),
                }))
                .await
                .map_err(status_err)?;
            print(g, &serde_json::json!({ "deleted": key_id }), || {
                println!("deleted {key_id}")
            })
        }
    }
}

/// Unix ms as `yyyy-mm-ddThh:mm:ssZ`.
fn created(ms: i64) -> String {
    let d = tessera::auth::sigv4::format_amz_date(ms);
    match (
        d.get(0..4),
        d.get(4..6),
        d.get(6..8),
        d.get(9..11),
        d.get(11..13),
        d.get(13..15),
    ) {
        (Some(y), Some(m), Some(dd), Some(h), Some(mi), Some(s)) => format!("{y}-{m}-{dd}T{h}:{mi}:{s}Z"),
        _ => d,
    }
}

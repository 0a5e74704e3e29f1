//! `tessera role create|get|update|delete|list|set-user|get-user`: the
//! roles identity pools hand out (IAM's names: CreateRole, GetRole, ...),
//! and the role of one user-pool user (AdminSetUserRole,
//! AdminGetUserRole).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use tessera::proto::*;

use super::{admin_client, print, status_err};
use crate::Global;

#[derive(Subcommand)]
pub enum RoleCmd {
    /// Create a role from an IAM-style policy document (Statement[] of
    /// Effect, Action, Resource); a malformed document is refused with
    /// InvalidParameterException naming the element at fault.
    Create {
        /// 1 to 64 of letters, digits and _+=,.@-
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// A file holding the policy document.
        #[arg(
            long,
            value_name = "PATH",
            conflicts_with = "policy",
            required_unless_present = "policy"
        )]
        policy_file: Option<PathBuf>,
        /// The policy document itself, as JSON.
        #[arg(long, value_name = "JSON")]
        policy: Option<String>,
    },
    /// Show a role with its policy document.
    Get {
        #[arg(long)]
        name: String,
    },
    /// Change a role's description or policy; what is not given is kept.
    Update {
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// A file holding the new policy document.
        #[arg(long, value_name = "PATH", conflicts_with = "policy")]
        policy_file: Option<PathBuf>,
        /// The new policy document itself, as JSON.
        #[arg(long, value_name = "JSON")]
        policy: Option<String>,
    },
    /// Delete a role; refused while an identity pool or a role mapping
    /// refers to it.
    Delete {
        #[arg(long)]
        name: String,
    },
    /// List every role.
    List,
    /// Give one user-pool user a role that wins over group and rule
    /// mappings (AdminSetUserRole), or remove it with --remove.
    SetUser {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        username: String,
        /// A role name or ARN (`arn:...:role/Name` names the role Name).
        #[arg(long, value_name = "ARN_OR_NAME", required_unless_present = "remove")]
        role_arn: Option<String>,
        /// Remove the user's own role: groups and role mappings decide again.
        #[arg(long, conflicts_with = "role_arn")]
        remove: bool,
    },
    /// Show the role given to one user-pool user (AdminGetUserRole).
    GetUser {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        username: String,
    },
}

/// The policy document from `--policy-file` or `--policy`, if either was
/// given. The text is sent as it is: the server parses it and names what
/// is wrong, so the CLI and the API refuse the same documents.
fn policy_text(policy_file: &Option<PathBuf>, policy: &Option<String>) -> Result<Option<String>> {
    match (policy_file, policy) {
        (Some(path), _) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading --policy-file {}", path.display()))?;
            Ok(Some(text))
        }
        (None, inline) => Ok(inline.clone()),
    }
}

/// The policy document indented for reading; as stored when it is not
/// JSON (it always is, as the server keeps it in canonical form).
fn pretty_policy(doc: &str) -> String {
    serde_json::from_str::<serde_json::Value>(doc)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| doc.to_string())
}

fn show(r: &RoleType) {
    println!("role:        {}", r.role_name);
    println!("arn:         {}", r.role_arn);
    println!("description: {}", r.description);
    println!("created:     {}", r.create_date);
    println!("modified:    {}", r.last_modified_date);
    println!("policy:");
    for line in pretty_policy(&r.policy_document).lines() {
        println!("  {line}");
    }
}

fn roles_table(roles: &[RoleType]) {
    println!("{:<32} {:<56} DESCRIPTION", "NAME", "ARN");
    for r in roles {
        println!("{:<32} {:<56} {}", r.role_name, r.role_arn, r.description);
    }
}

/// Runs one `tessera role` command.
pub async fn run(g: &Global, cmd: RoleCmd) -> Result<()> {
    // Read before connecting, so a missing file fails without a round trip.
    let policy_document = match &cmd {
        RoleCmd::Create {
            policy_file, policy, ..
        }
        | RoleCmd::Update {
            policy_file, policy, ..
        } => policy_text(policy_file, policy)?,
        _ => None,
    };
    let client = admin_client(g).await?;
    let mut identity = client.identity();
    match cmd {
        RoleCmd::Create { name, description, .. } => {
            let Some(policy_document) = policy_document else {
                bail!("give the policy with --policy-file PATH or --policy JSON");
            };
            let r = identity
                .create_role(client.req(CreateRoleRequest {
                    role_name: name,
                    description: description.unwrap_or_default(),
                    policy_document,
                }))
                .await
                .map_err(status_err)?
                .into_inner()
                .role
                .unwrap_or_default();
            print(g, &r, || show(&r))
        }
        RoleCmd::Get { name } => {
            let r = client.get_role(&name).await.map_err(status_err)?;
            print(g, &r, || show(&r))
        }
        RoleCmd::Update { name, description, .. } => {
            if description.is_none() && policy_document.is_none() {
                bail!("nothing to update: give --description, --policy-file or --policy");
            }
            // UpdateRole replaces both fields, so the one not given is
            // carried over from the stored role.
            let current = client.get_role(&name).await.map_err(status_err)?;
            let r = identity
                .update_role(client.req(UpdateRoleRequest {
                    role_name: name,
                    description: description.unwrap_or(current.description),
                    policy_document: policy_document.unwrap_or(current.policy_document),
                }))
                .await
                .map_err(status_err)?
                .into_inner()
                .role
                .unwrap_or_default();
            print(g, &r, || show(&r))
        }
        RoleCmd::Delete { name } => {
            identity
                .delete_role(client.req(DeleteRoleRequest {
                    role_name: name.clone(),
                }))
                .await
                .map_err(status_err)?;
            print(g, &serde_json::json!({ "deleted": name }), || {
                println!("deleted {name}")
            })
        }
        RoleCmd::List => {
            let roles = client.list_all_roles().await.map_err(status_err)?;
            print(g, &serde_json::json!({ "roles": roles }), || roles_table(&roles))
        }
        RoleCmd::SetUser {
            pool_id,
            username,
            role_arn,
            remove,
        } => {
            // --remove is the API's empty role_arn, spelled out so that a
            // forgotten value never removes a role by accident.
            let role_arn = if remove {
                String::new()
            } else {
                role_arn.unwrap_or_default()
            };
            identity
                .admin_set_user_role(client.req(AdminSetUserRoleRequest {
                    user_pool_id: pool_id.clone(),
                    username: username.clone(),
                    role_arn: role_arn.clone(),
                }))
                .await
                .map_err(status_err)?;
            let out = serde_json::json!({ "user_pool_id": pool_id, "username": username, "role_arn": role_arn });
            print(g, &out, || {
                if role_arn.is_empty() {
                    println!("removed the role of {username}");
                } else {
                    println!("{username} now has role {role_arn}");
                }
            })
        }
        RoleCmd::GetUser { pool_id, username } => {
            let r = identity
                .admin_get_user_role(client.req(AdminGetUserRoleRequest {
                    user_pool_id: pool_id,
                    username,
                }))
                .await
                .map_err(status_err)?
                .into_inner();
            print(g, &r, || {
                if r.role_arn.is_empty() {
                    println!("(none: groups and role mappings decide)");
                } else {
                    println!("{}", r.role_arn);
                }
            })
        }
    }
}

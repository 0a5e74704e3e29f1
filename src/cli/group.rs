//! `tessera group create|get|update|delete|list|add-user|remove-user|members`.

use anyhow::{bail, Result};
use clap::Subcommand;
use tessera::client::Client;
use tessera::proto::*;

use super::user::{groups_table, users_table};
use super::{admin_client, print, status_err};
use crate::Global;

#[derive(Subcommand)]
pub enum GroupCmd {
    /// Create a group.
    Create {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// Lower wins when a user is in several groups (0 or more); unset
        /// ranks after every set precedence.
        #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
        precedence: Option<i32>,
        /// Stored as given, for identity pools.
        #[arg(long)]
        role_arn: Option<String>,
        /// A permission granted to members, e.g. course:read, carried in
        /// their access tokens' scope; repeatable.
        #[arg(long = "permission", value_name = "PERMISSION")]
        permissions: Vec<String>,
    },
    /// Show a group.
    Get {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        name: String,
    },
    /// Change a group; only the fields given are replaced.
    Update {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
        precedence: Option<i32>,
        #[arg(long)]
        role_arn: Option<String>,
        /// Replaces the whole permission list; repeatable.
        #[arg(long = "permission", value_name = "PERMISSION", conflicts_with = "clear_permissions")]
        permissions: Vec<String>,
        /// Remove every permission.
        #[arg(long)]
        clear_permissions: bool,
    },
    /// Delete a group; its members stay in the pool.
    Delete {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        name: String,
    },
    /// List a pool's groups.
    List {
        #[arg(long)]
        pool_id: String,
    },
    /// Add a user to a group.
    AddUser {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        username: String,
    },
    /// Remove a user from a group.
    RemoveUser {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        username: String,
    },
    /// List a group's members.
    Members {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        name: String,
    },
}

fn show(gr: &GroupType) {
    println!("group:       {}", gr.group_name);
    println!("pool:        {}", gr.user_pool_id);
    println!("description: {}", gr.description);
    println!(
        "precedence:  {}",
        gr.precedence.map(|p| p.to_string()).unwrap_or_else(|| "-".into())
    );
    if !gr.role_arn.is_empty() {
        println!("role_arn:    {}", gr.role_arn);
    }
    println!("permissions: {}", gr.permissions.join(","));
    println!("created:     {}", gr.creation_date);
    println!("modified:    {}", gr.last_modified_date);
}

/// Permissions travel in the space-separated `scope` claim, so one with a
/// space would turn into two; refuse it here with the flag's name.
fn check_permissions(permissions: &[String]) -> Result<()> {
    if let Some(bad) = permissions
        .iter()
        .find(|p| p.is_empty() || p.chars().any(char::is_whitespace))
    {
        bail!("--permission {bad:?}: must be non-empty without spaces, e.g. course:read");
    }
    Ok(())
}

pub async fn run(g: &Global, cmd: GroupCmd) -> Result<()> {
    let client = admin_client(g).await?;
    let mut admin = client.admin();
    match cmd {
        GroupCmd::Create {
            pool_id,
            name,
            description,
            precedence,
            role_arn,
            permissions,
        } => {
            check_permissions(&permissions)?;
            let r = admin
                .create_group(client.req(CreateGroupRequest {
                    group_name: name,
                    user_pool_id: pool_id,
                    description: description.unwrap_or_default(),
                    role_arn: role_arn.unwrap_or_default(),
                    precedence,
                    permissions,
                }))
                .await
                .map_err(status_err)?
                .into_inner();
            let gr = r.group.unwrap_or_default();
            print(g, &gr, || show(&gr))
        }
        GroupCmd::Get { pool_id, name } => {
            let r = admin
                .get_group(client.req(GetGroupRequest {
                    group_name: name,
                    user_pool_id: pool_id,
                    consistent_read: true,
                }))
                .await
                .map_err(status_err)?
                .into_inner();
            let gr = r.group.unwrap_or_default();
            print(g, &gr, || show(&gr))
        }
        GroupCmd::Update {
            pool_id,
            name,
            description,
            precedence,
            role_arn,
            permissions,
            clear_permissions,
        } => {
            check_permissions(&permissions)?;
            // Absent fields keep their value on the server, so an update that
            // names none would be a silent no-op.
            let replace_permissions = clear_permissions || !permissions.is_empty();
            if description.is_none() && precedence.is_none() && role_arn.is_none() && !replace_permissions {
                bail!("nothing to update: give --description, --precedence, --role-arn, --permission or --clear-permissions");
            }
            let r = admin
                .update_group(client.req(UpdateGroupRequest {
                    group_name: name,
                    user_pool_id: pool_id,
                    description,
                    role_arn,
                    precedence,
                    permissions: replace_permissions.then_some(PermissionList { values: permissions }),
                }))
                .await
                .map_err(status_err)?
                .into_inner();
            let gr = r.group.unwrap_or_default();
            print(g, &gr, || show(&gr))
        }
        GroupCmd::Delete { pool_id, name } => {
            admin
                .delete_group(client.req(DeleteGroupRequest {
                    group_name: name.clone(),
                    user_pool_id: pool_id,
                }))
                .await
                .map_err(status_err)?;
            print(g, &serde_json::json!({ "deleted": name }), || {
                println!("deleted {name}")
            })
        }
        GroupCmd::List { pool_id } => list_groups(g, &client, pool_id).await,
        GroupCmd::AddUser {
            pool_id,
            name,
            username,
        } => {
            admin
                .admin_add_user_to_group(client.req(AdminAddUserToGroupRequest {
                    user_pool_id: pool_id,
                    username: username.clone(),
                    group_name: name.clone(),
                }))
                .await
                .map_err(status_err)?;
            print(g, &serde_json::json!({ "added": username, "group": name }), || {
                println!("added {username} to {name}")
            })
        }
        GroupCmd::RemoveUser {
            pool_id,
            name,
            username,
        } => {
            admin
                .admin_remove_user_from_group(client.req(AdminRemoveUserFromGroupRequest {
                    user_pool_id: pool_id,
                    username: username.clone(),
                    group_name: name.clone(),
                }))
                .await
                .map_err(status_err)?;
            print(g, &serde_json::json!({ "removed": username, "group": name }), || {
                println!("removed {username} from {name}")
            })
        }
        GroupCmd::Members { pool_id, name } => members(g, &client, pool_id, name).await,
    }
}

/// `group list`: every group of the pool.
async fn list_groups(g: &Global, client: &Client, pool_id: String) -> Result<()> {
    let groups = Client::paginate("ListGroups", |next_token| {
        let mut admin = client.admin();
        let req = client.req(ListGroupsRequest {
            user_pool_id: pool_id.clone(),
            limit: 60,
            next_token,
            consistent_read: true,
        });
        async move {
            let r = admin.list_groups(req).await?.into_inner();
            Ok((r.groups, r.next_token))
        }
    })
    .await
    .map_err(status_err)?;
    print(g, &serde_json::json!({ "groups": groups }), || groups_table(&groups))
}

/// `group members`: every user in the group.
async fn members(g: &Global, client: &Client, pool_id: String, name: String) -> Result<()> {
    let users = Client::paginate("ListUsersInGroup", |next_token| {
        let mut admin = client.admin();
        let req = client.req(ListUsersInGroupRequest {
            user_pool_id: pool_id.clone(),
            group_name: name.clone(),
            limit: 60,
            next_token,
            consistent_read: true,
        });
        async move {
            let r = admin.list_users_in_group(req).await?.into_inner();
            Ok((r.users, r.next_token))
        }
    })
    .await
    .map_err(status_err)?;
    print(g, &serde_json::json!({ "users": users }), || users_table(&users))
}

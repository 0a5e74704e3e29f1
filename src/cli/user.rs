//! `tessera user create|get|confirm`.

use anyhow::{bail, Result};
use clap::Subcommand;
use tessera::proto::*;

use super::{admin_client, print, status_err};
use crate::Global;

#[derive(Subcommand)]
pub enum UserCmd {
    /// Create a user with a temporary password (FORCE_CHANGE_PASSWORD); the
    /// password is sent through the courier unless --suppress.
    Create {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        username: String,
        /// An attribute as name=value; repeatable.
        #[arg(long = "attribute", value_name = "NAME=VALUE")]
        attributes: Vec<String>,
        /// Default: one is generated that satisfies the pool's policy.
        #[arg(long, env = "TESSERA_TEMPORARY_PASSWORD", hide_env_values = true)]
        temporary_password: Option<String>,
        /// Send nothing.
        #[arg(long)]
        suppress: bool,
    },
    /// Show a user.
    Get {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        username: String,
    },
    /// Confirm an UNCONFIRMED user without a code.
    Confirm {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        username: String,
    },
}

fn show(u: &UserType) {
    println!("username:  {}", u.username);
    println!("status:    {}", u.user_status);
    println!("enabled:   {}", u.enabled);
    for a in &u.attributes {
        println!("  {:<24} {}", a.name, a.value);
    }
}

pub async fn run(g: &Global, cmd: UserCmd) -> Result<()> {
    let client = admin_client(g).await?;
    let mut admin = client.admin();
    match cmd {
        UserCmd::Create {
            pool_id,
            username,
            attributes,
            temporary_password,
            suppress,
        } => {
            let mut user_attributes = Vec::new();
            for a in attributes {
                let Some((name, value)) = a.split_once('=') else {
                    bail!("--attribute {a:?}: use NAME=VALUE");
                };
                user_attributes.push(AttributeValue {
                    name: name.into(),
                    value: value.into(),
                });
            }
            let r = admin
                .admin_create_user(client.req(AdminCreateUserRequest {
                    user_pool_id: pool_id,
                    username,
                    user_attributes,
                    temporary_password: temporary_password.unwrap_or_default(),
                    message_action: if suppress { "SUPPRESS".into() } else { String::new() },
                    desired_delivery_mediums: Vec::new(),
                }))
                .await
                .map_err(status_err)?
                .into_inner();
            let u = r.user.unwrap_or_default();
            print(g, &u, || show(&u))
        }
        UserCmd::Get { pool_id, username } => {
            let r = admin
                .admin_get_user(client.req(AdminGetUserRequest {
                    user_pool_id: pool_id,
                    username,
                    consistent_read: true,
                }))
                .await
                .map_err(status_err)?
                .into_inner();
            let u = UserType {
                username: r.username,
                attributes: r.user_attributes,
                user_create_date: r.user_create_date,
                user_last_modified_date: r.user_last_modified_date,
                enabled: r.enabled,
                user_status: r.user_status,
            };
            print(g, &u, || show(&u))
        }
        UserCmd::Confirm { pool_id, username } => {
            admin
                .admin_confirm_sign_up(client.req(AdminConfirmSignUpRequest {
                    user_pool_id: pool_id,
                    username: username.clone(),
                }))
                .await
                .map_err(status_err)?;
            print(g, &serde_json::json!({ "confirmed": username }), || {
                println!("confirmed {username}")
            })
        }
    }
}

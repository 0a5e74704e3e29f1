//! `tessera user create|get|confirm|list|update|delete-attributes|delete|
//! disable|enable|set-password|reset-password|sign-out|groups|mfa-preference|devices|import|export`.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use tessera::client::Client;
use tessera::proto::*;

use super::{admin_client, list, print, status_err};
use crate::Global;

// The flags of `user list` (a plain comment: a doc comment would become
// the subcommand's help text).
#[derive(Args)]
pub struct ListArgs {
    #[arg(long)]
    pub pool_id: String,
    /// `name = "value"` or `name ^= "prefix"`, case-insensitive, e.g.
    /// 'email ^= "ann"'. Names: username, email, phone_number, name,
    /// given_name, family_name, preferred_username, sub,
    /// cognito:user_status, status, enabled, indexed custom attributes.
    #[arg(long)]
    pub filter: Option<String>,
    /// Comma-separated attributes to return (default all).
    #[arg(long)]
    pub attributes: Option<String>,
    /// Users per page (1 to 60, default 60).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=60))]
    pub limit: Option<i32>,
    /// Fetch every page, not just the first.
    #[arg(long)]
    pub all: bool,
    /// Start from this page (printed by a previous list).
    #[arg(long)]
    pub pagination_token: Option<String>,
}

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
    /// List users, optionally filtered (ListUsers).
    List(ListArgs),
    /// Set or change attributes (AdminUpdateUserAttributes). Changing email
    /// or phone_number without its *_verified flag marks it unverified.
    Update {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        username: String,
        /// An attribute as name=value; repeatable.
        #[arg(long = "attribute", value_name = "NAME=VALUE", required = true)]
        attributes: Vec<String>,
    },
    /// Remove attributes (AdminDeleteUserAttributes).
    DeleteAttributes {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        username: String,
        /// An attribute name, e.g. given_name; repeatable.
        #[arg(long = "name", value_name = "NAME", required = true)]
        names: Vec<String>,
    },
    /// Delete a user with its group memberships; the username and aliases
    /// are free again at once.
    Delete {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        username: String,
    },
    /// Stop a user signing in; its refresh tokens stop working everywhere.
    Disable {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        username: String,
    },
    /// Let a disabled user sign in again.
    Enable {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        username: String,
    },
    /// Set a user's password (AdminSetUserPassword); revokes its refresh
    /// tokens. The password comes from --password, TESSERA_USER_PASSWORD,
    /// or else one line of stdin (a hidden prompt on a terminal).
    SetPassword {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        username: String,
        #[arg(long, env = "TESSERA_USER_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// CONFIRMED with this password; without it the user is
        /// FORCE_CHANGE_PASSWORD and must choose a new one at sign-in.
        #[arg(long)]
        permanent: bool,
    },
    /// Require a new password (RESET_REQUIRED): revokes refresh tokens and
    /// sends a ConfirmForgotPassword code to the verified email or phone.
    ResetPassword {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        username: String,
    },
    /// Revoke every token the user holds (AdminUserGlobalSignOut).
    SignOut {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        username: String,
    },
    /// List the groups a user belongs to, by precedence.
    Groups {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        username: String,
    },
    /// A user's MFA preferences (AdminSetUserMFAPreference).
    #[command(subcommand)]
    MfaPreference(MfaPreferenceCmd),
    /// A user's remembered devices (list, get, status, forget).
    #[command(subcommand)]
    Devices(super::user_devices::DevicesCmd),
    /// Create users in bulk from a JSONL or CSV file (AdminImportUsers,
    /// 1000 a call, a few calls in flight), with their attributes, groups
    /// and existing password hashes.
    ///
    /// JSONL (`.jsonl`, or a file starting with `{`): one object per line,
    /// `{"username":..., "attributes":{...}, "groups":[...],
    /// "password_hash":"...", "email_verified":true, ...}`, as `user
    /// export` writes. CSV: a header line with a `username` column and
    /// attribute names (email, name, custom:tier, ...), or the header of
    /// Cognito's user import CSV, plus an optional `password_hash` column.
    /// Hashes: bcrypt, scrypt, PBKDF2-SHA256/512, argon2i/argon2id, Firebase
    /// scrypt; checked at the first sign-in, then replaced by argon2id.
    ///
    /// The file is streamed. Refused lines are printed as `line N: reason`
    /// and the rest imported; the exit status is 1 if any line was refused.
    Import(super::user_import::ImportArgs),
    /// Write every user of a pool as JSONL (AdminExportUsers): attributes,
    /// status, groups, MFA settings and password hashes, in the format
    /// `user import` reads. Audited. Software-token secrets and recovery
    /// codes are not exported.
    Export {
        #[arg(long)]
        pool_id: String,
        /// Write here (created, mode 0600) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum MfaPreferenceCmd {
    /// Enable or disable the user's software token (TOTP) as an MFA factor,
    /// and make it preferred; the token must be verified first
    /// (VerifySoftwareToken).
    Set {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        username: String,
        /// enabled or disabled.
        #[arg(long, value_parser = ["enabled", "disabled"])]
        software_token: String,
        /// Make the software token the preferred factor.
        #[arg(long)]
        preferred: bool,
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

/// One line per user, for `user list` and `group members`.
pub fn users_table(users: &[UserType]) {
    println!("{:<24} {:<22} {:<8} ATTRIBUTES", "USERNAME", "STATUS", "ENABLED");
    for u in users {
        let attrs: Vec<String> = u.attributes.iter().map(|a| format!("{}={}", a.name, a.value)).collect();
        println!(
            "{:<24} {:<22} {:<8} {}",
            u.username,
            u.user_status,
            u.enabled,
            attrs.join(" ")
        );
    }
}

/// One line per group, for `user groups` and `group list`.
pub fn groups_table(groups: &[GroupType]) {
    // Permissions last: the list is the widest column and would push the
    // others out of line.
    println!("{:<24} {:<11} {:<28} PERMISSIONS", "GROUP", "PRECEDENCE", "DESCRIPTION");
    for gr in groups {
        let precedence = gr.precedence.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        println!(
            "{:<24} {:<11} {:<28} {}",
            gr.group_name,
            precedence,
            gr.description,
            gr.permissions.join(",")
        );
    }
}

/// `--attribute name=value` flags as attributes.
fn parse_attributes(attributes: Vec<String>) -> Result<Vec<AttributeValue>> {
    let mut out = Vec::new();
    for a in attributes {
        let Some((name, value)) = a.split_once('=') else {
            bail!("--attribute {a:?}: use NAME=VALUE");
        };
        out.push(AttributeValue {
            name: name.into(),
            value: value.into(),
        });
    }
    Ok(out)
}

/// One line of stdin, without its line ending: a hidden prompt on a
/// terminal, so that secrets never echo or land in shell history.
pub fn read_secret_line(prompt: &str) -> Result<String> {
    let stdin = std::io::stdin();
    let s = if stdin.is_terminal() {
        rpassword::prompt_password(format!("{prompt}: "))?
    } else {
        let mut s = String::new();
        stdin.lock().read_line(&mut s)?;
        s
    };
    let s = s.trim_end_matches(['\r', '\n']).to_string();
    if s.is_empty() {
        bail!("expected a line on stdin for {prompt}");
    }
    Ok(s)
}

pub async fn run(g: &Global, cmd: UserCmd) -> Result<()> {
    // Opened before connecting, so a bad file fails without a round trip.
    let import = match &cmd {
        UserCmd::Import(args) => Some(super::user_import::open(args)?),
        _ => None,
    };
    let client = admin_client(g).await?;
    match cmd {
        UserCmd::Create {
            pool_id,
            username,
            attributes,
            temporary_password,
            suppress,
        } => create(g, &client, pool_id, username, attributes, temporary_password, suppress).await,
        UserCmd::Get { pool_id, username } => get(g, &client, pool_id, username).await,
        UserCmd::Confirm { pool_id, username } => confirm(g, &client, pool_id, username).await,
        UserCmd::List(args) => list_users(g, &client, args).await,
        UserCmd::Update {
            pool_id,
            username,
            attributes,
        } => update(g, &client, pool_id, username, attributes).await,
        UserCmd::DeleteAttributes {
            pool_id,
            username,
            names,
        } => delete_attributes(g, &client, pool_id, username, names).await,
        UserCmd::Delete { pool_id, username } => delete(g, &client, pool_id, username).await,
        UserCmd::Disable { pool_id, username } => disable(g, &client, pool_id, username).await,
        UserCmd::Enable { pool_id, username } => enable(g, &client, pool_id, username).await,
        UserCmd::SetPassword {
            pool_id,
            username,
            password,
            permanent,
        } => set_password(g, &client, pool_id, username, password, permanent).await,
        UserCmd::ResetPassword { pool_id, username } => reset_password(g, &client, pool_id, username).await,
        UserCmd::SignOut { pool_id, username } => sign_out(g, &client, pool_id, username).await,
        UserCmd::Groups { pool_id, username } => groups(g, &client, pool_id, username).await,
        UserCmd::MfaPreference(MfaPreferenceCmd::Set {
            pool_id,
            username,
            software_token,
            preferred,
        }) => mfa_preference(g, &client, pool_id, username, software_token == "enabled", preferred).await,
        UserCmd::Import(args) => match import {
            Some(lines) => super::user_import::import(g, &client, &args, lines).await,
            None => bail!("the import file was not opened"),
        },
        UserCmd::Export { pool_id, out } => super::user_import::export(&client, &pool_id, out.as_deref()).await,
        UserCmd::Devices(cmd) => super::user_devices::run(g, &client, cmd).await,
    }
}

/// `user create`: AdminCreateUser.
async fn create(
    g: &Global,
    client: &Client,
    pool_id: String,
    username: String,
    attributes: Vec<String>,
    temporary_password: Option<String>,
    suppress: bool,
) -> Result<()> {
    let mut admin = client.admin();
    let user_attributes = parse_attributes(attributes)?;
    let r = admin
        .admin_create_user(client.req(AdminCreateUserRequest {
            user_pool_id: pool_id,
            username,
            user_attributes,
            temporary_password: temporary_password.unwrap_or_default(),
            message_action: if suppress { "SUPPRESS".into() } else { String::new() },
            desired_delivery_mediums: Vec::new(),
            force_alias_creation: false,
            ..Default::default()
        }))
        .await
        .map_err(status_err)?
        .into_inner();
    let u = r.user.unwrap_or_default();
    print(g, &u, || show(&u))
}

/// `user get`: a consistent AdminGetUser, shown as a listed user.
async fn get(g: &Global, client: &Client, pool_id: String, username: String) -> Result<()> {
    let mut admin = client.admin();
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

/// `user confirm`: AdminConfirmSignUp.
async fn confirm(g: &Global, client: &Client, pool_id: String, username: String) -> Result<()> {
    let req = AdminConfirmSignUpRequest {
        user_pool_id: pool_id,
        username: username.clone(),
    };
    client
        .admin()
        .admin_confirm_sign_up(client.req(req))
        .await
        .map_err(status_err)?;
    report_done(g, "confirmed", &username, &format!("confirmed {username}"))
}

/// Reports an action on one user: `{"<done>": "<username>"}` as JSON, or
/// `line` for people.
fn report_done(g: &Global, done: &str, username: &str, line: &str) -> Result<()> {
    print(g, &serde_json::json!({ done: username }), || println!("{line}"))
}

/// `user list`: one page, or with `--all` every page from the given token on.
async fn list_users(g: &Global, client: &Client, args: ListArgs) -> Result<()> {
    let ListArgs {
        pool_id,
        filter,
        attributes,
        limit,
        all,
        pagination_token,
    } = args;
    let mut admin = client.admin();
    let filter = filter.unwrap_or_default();
    // The server parses the filter too; this catches the common slip
    // (a bare value) with a message that names the flag.
    if !filter.trim().is_empty() && !filter.contains('=') {
        bail!("--filter {filter:?}: use 'name = \"value\"' or 'name ^= \"prefix\"'");
    }
    let body = ListUsersRequest {
        user_pool_id: pool_id,
        attributes_to_get: list(&attributes),
        limit: limit.unwrap_or(60),
        pagination_token: pagination_token.unwrap_or_default(),
        filter,
        consistent_read: true,
    };
    if !all {
        let r = admin
            .list_users(client.req(body))
            .await
            .map_err(status_err)?
            .into_inner();
        return print(g, &r, || {
            users_table(&r.users);
            if !r.pagination_token.is_empty() {
                eprintln!("more: --pagination-token {} (or --all)", r.pagination_token);
            }
        });
    }
    // `--all --pagination-token T` collects from page T on.
    let start = body.pagination_token.clone();
    let users = Client::paginate_from("ListUsers", start, |pagination_token| {
        let mut admin = client.admin();
        let req = client.req(ListUsersRequest {
            pagination_token,
            ..body.clone()
        });
        async move {
            let r = admin.list_users(req).await?.into_inner();
            Ok((r.users, r.pagination_token))
        }
    })
    .await
    .map_err(status_err)?;
    print(g, &serde_json::json!({ "users": users }), || users_table(&users))
}

/// `user update`: AdminUpdateUserAttributes.
async fn update(g: &Global, client: &Client, pool_id: String, username: String, attributes: Vec<String>) -> Result<()> {
    let mut admin = client.admin();
    let user_attributes = parse_attributes(attributes)?;
    admin
        .admin_update_user_attributes(client.req(AdminUpdateUserAttributesRequest {
            user_pool_id: pool_id,
            username: username.clone(),
            user_attributes,
        }))
        .await
        .map_err(status_err)?;
    print(g, &serde_json::json!({ "updated": username }), || {
        println!("updated {username}")
    })
}

/// `user delete-attributes`: AdminDeleteUserAttributes.
async fn delete_attributes(
    g: &Global,
    client: &Client,
    pool_id: String,
    username: String,
    names: Vec<String>,
) -> Result<()> {
    let mut admin = client.admin();
    if let Some(bad) = names.iter().find(|n| n.trim().is_empty() || n.contains('=')) {
        bail!("--name {bad:?}: give an attribute name alone, e.g. --name given_name");
    }
    admin
        .admin_delete_user_attributes(client.req(AdminDeleteUserAttributesRequest {
            user_pool_id: pool_id,
            username: username.clone(),
            user_attribute_names: names.clone(),
        }))
        .await
        .map_err(status_err)?;
    print(
        g,
        &serde_json::json!({ "updated": username, "deleted_attributes": names }),
        || println!("deleted {} from {username}", names.join(",")),
    )
}

/// `user delete`: AdminDeleteUser.
async fn delete(g: &Global, client: &Client, pool_id: String, username: String) -> Result<()> {
    let req = AdminDeleteUserRequest {
        user_pool_id: pool_id,
        username: username.clone(),
    };
    client
        .admin()
        .admin_delete_user(client.req(req))
        .await
        .map_err(status_err)?;
    report_done(g, "deleted", &username, &format!("deleted {username}"))
}

/// `user disable`: AdminDisableUser.
async fn disable(g: &Global, client: &Client, pool_id: String, username: String) -> Result<()> {
    let req = AdminDisableUserRequest {
        user_pool_id: pool_id,
        username: username.clone(),
    };
    client
        .admin()
        .admin_disable_user(client.req(req))
        .await
        .map_err(status_err)?;
    report_done(g, "disabled", &username, &format!("disabled {username}"))
}

/// `user enable`: AdminEnableUser.
async fn enable(g: &Global, client: &Client, pool_id: String, username: String) -> Result<()> {
    let req = AdminEnableUserRequest {
        user_pool_id: pool_id,
        username: username.clone(),
    };
    client
        .admin()
        .admin_enable_user(client.req(req))
        .await
        .map_err(status_err)?;
    report_done(g, "enabled", &username, &format!("enabled {username}"))
}

/// `user set-password`: AdminSetUserPassword, the password from the flag or read from the terminal.
async fn set_password(
    g: &Global,
    client: &Client,
    pool_id: String,
    username: String,
    password: Option<String>,
    permanent: bool,
) -> Result<()> {
    let mut admin = client.admin();
    let password = match password {
        Some(p) if !p.is_empty() => p,
        Some(_) => bail!("--password is empty"),
        None => read_secret_line("New password")?,
    };
    admin
        .admin_set_user_password(client.req(AdminSetUserPasswordRequest {
            user_pool_id: pool_id,
            username: username.clone(),
            password,
            permanent,
        }))
        .await
        .map_err(status_err)?;
    let status = if permanent {
        "CONFIRMED"
    } else {
        "FORCE_CHANGE_PASSWORD"
    };
    print(
        g,
        &serde_json::json!({ "password_set": username, "user_status": status }),
        || println!("password set for {username} ({status})"),
    )
}

/// `user reset-password`: AdminResetUserPassword.
async fn reset_password(g: &Global, client: &Client, pool_id: String, username: String) -> Result<()> {
    let req = AdminResetUserPasswordRequest {
        user_pool_id: pool_id,
        username: username.clone(),
        client_metadata: BTreeMap::new(),
    };
    client
        .admin()
        .admin_reset_user_password(client.req(req))
        .await
        .map_err(status_err)?;
    report_done(
        g,
        "reset",
        &username,
        &format!("{username} must reset the password (RESET_REQUIRED); a code was sent"),
    )
}

/// `user sign-out`: AdminUserGlobalSignOut.
async fn sign_out(g: &Global, client: &Client, pool_id: String, username: String) -> Result<()> {
    let req = AdminUserGlobalSignOutRequest {
        user_pool_id: pool_id,
        username: username.clone(),
    };
    client
        .admin()
        .admin_user_global_sign_out(client.req(req))
        .await
        .map_err(status_err)?;
    report_done(g, "signed_out", &username, &format!("signed out {username} everywhere"))
}

/// `user groups`: every group of the user.
async fn groups(g: &Global, client: &Client, pool_id: String, username: String) -> Result<()> {
    let groups = Client::paginate("AdminListGroupsForUser", |next_token| {
        let mut admin = client.admin();
        let req = client.req(AdminListGroupsForUserRequest {
            username: username.clone(),
            user_pool_id: pool_id.clone(),
            limit: 60,
            next_token,
            consistent_read: true,
        });
        async move {
            let r = admin.admin_list_groups_for_user(req).await?.into_inner();
            Ok((r.groups, r.next_token))
        }
    })
    .await
    .map_err(status_err)?;
    print(g, &serde_json::json!({ "groups": groups }), || groups_table(&groups))
}

/// `user mfa-preference set`: AdminSetUserMFAPreference, then the user's
/// MFA settings as a consistent AdminGetUser reads them.
async fn mfa_preference(
    g: &Global,
    client: &Client,
    pool_id: String,
    username: String,
    enabled: bool,
    preferred: bool,
) -> Result<()> {
    client
        .admin()
        .admin_set_user_mfa_preference(client.req(AdminSetUserMfaPreferenceRequest {
            user_pool_id: pool_id.clone(),
            username: username.clone(),
            software_token_mfa_settings: Some(SoftwareTokenMfaSettingsType {
                enabled,
                preferred_mfa: preferred,
            }),
            ..Default::default()
        }))
        .await
        .map_err(status_err)?;
    let r = client
        .admin()
        .admin_get_user(client.req(AdminGetUserRequest {
            user_pool_id: pool_id,
            username: username.clone(),
            consistent_read: true,
        }))
        .await
        .map_err(status_err)?
        .into_inner();
    let value = serde_json::json!({
        "username": username,
        "user_mfa_setting_list": r.user_mfa_setting_list,
        "preferred_mfa_setting": r.preferred_mfa_setting,
    });
    print(g, &value, || {
        println!("user:           {username}");
        println!("mfa factors:    {}", r.user_mfa_setting_list.join(","));
        println!("preferred:      {}", r.preferred_mfa_setting);
    })
}

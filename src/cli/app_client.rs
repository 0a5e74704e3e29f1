//! `tessera app-client create|get|list|delete`, with the OAuth settings.

use anyhow::Result;
use clap::Subcommand;
use tessera::client::Client;
use tessera::proto::*;

use super::{admin_client, list, print, status_err};
use crate::Global;

#[derive(Subcommand)]
pub enum AppClientCmd {
    /// Create an app client; prints its id (and secret, shown once here and
    /// by `get`).
    Create {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        name: String,
        /// Give the client a secret; calls must then carry SECRET_HASH.
        #[arg(long)]
        generate_secret: bool,
        /// Comma-separated ALLOW_* flows. Default:
        /// ALLOW_USER_PASSWORD_AUTH,ALLOW_REFRESH_TOKEN_AUTH.
        #[arg(long)]
        auth_flows: Option<String>,
        /// Comma-separated attributes the client may read (default all).
        #[arg(long)]
        read_attributes: Option<String>,
        /// Comma-separated attributes the client may write (default all).
        #[arg(long)]
        write_attributes: Option<String>,
        /// Access and id token lifetime in minutes (default the pool's).
        #[arg(long, default_value_t = 0)]
        token_validity_minutes: i32,
        /// Refresh token lifetime in days (default the pool's).
        #[arg(long, default_value_t = 0)]
        refresh_token_validity_days: i32,
        /// Report "user does not exist" instead of a generic error.
        #[arg(long)]
        legacy_user_existence_errors: bool,
        /// Comma-separated OAuth grants: code, implicit, client_credentials
        /// (client_credentials needs --generate-secret). Turns OAuth on.
        #[arg(long)]
        oauth_flows: Option<String>,
        /// Comma-separated OAuth scopes: openid, email, phone, profile,
        /// aws.cognito.signin.user.admin, or a resource server's
        /// identifier/scope.
        #[arg(long)]
        oauth_scopes: Option<String>,
        /// Comma-separated callback URLs (code and implicit grants).
        #[arg(long)]
        callback_urls: Option<String>,
        /// Comma-separated sign-out URLs.
        #[arg(long)]
        logout_urls: Option<String>,
    },
    /// Show an app client, including its secret.
    Get {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        client_id: String,
    },
    /// List a pool's app clients.
    List {
        #[arg(long)]
        pool_id: String,
    },
    /// Delete an app client.
    Delete {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        client_id: String,
    },
}

fn show(c: &UserPoolClientType) {
    println!("client_id:     {}", c.client_id);
    println!("name:          {}", c.client_name);
    println!("pool:          {}", c.user_pool_id);
    if !c.client_secret.is_empty() {
        println!("client_secret: {}", c.client_secret);
    }
    println!("auth flows:    {}", c.explicit_auth_flows.join(","));
    if c.allowed_oauth_flows_user_pool_client {
        println!("oauth flows:   {}", c.allowed_oauth_flows.join(","));
        println!("oauth scopes:  {}", c.allowed_oauth_scopes.join(" "));
        if !c.callback_urls.is_empty() {
            println!("callbacks:     {}", c.callback_urls.join(" "));
        }
        if !c.logout_urls.is_empty() {
            println!("logout urls:   {}", c.logout_urls.join(" "));
        }
    }
    println!(
        "validity:      access {} {}, id {} {}, refresh {} {}",
        c.access_token_validity,
        c.token_validity_units
            .as_ref()
            .map(|u| u.access_token.as_str())
            .unwrap_or(""),
        c.id_token_validity,
        c.token_validity_units
            .as_ref()
            .map(|u| u.id_token.as_str())
            .unwrap_or(""),
        c.refresh_token_validity,
        c.token_validity_units
            .as_ref()
            .map(|u| u.refresh_token.as_str())
            .unwrap_or("")
    );
}

pub async fn run(g: &Global, cmd: AppClientCmd) -> Result<()> {
    let client = admin_client(g).await?;
    let mut admin = client.admin();
    match cmd {
        AppClientCmd::Create {
            pool_id,
            name,
            generate_secret,
            auth_flows,
            read_attributes,
            write_attributes,
            token_validity_minutes,
            refresh_token_validity_days,
            legacy_user_existence_errors,
            oauth_flows,
            oauth_scopes,
            callback_urls,
            logout_urls,
        } => {
            let units = TokenValidityUnitsType {
                access_token: "minutes".into(),
                id_token: "minutes".into(),
                refresh_token: "days".into(),
            };
            let r = admin
                .create_user_pool_client(
                    client.req(CreateUserPoolClientRequest {
                        user_pool_id: pool_id,
                        client_name: name,
                        generate_secret,
                        access_token_validity: token_validity_minutes,
                        id_token_validity: token_validity_minutes,
                        refresh_token_validity: refresh_token_validity_days,
                        token_validity_units: Some(units),
                        read_attributes: list(&read_attributes),
                        write_attributes: list(&write_attributes),
                        explicit_auth_flows: list(&auth_flows),
                        prevent_user_existence_errors: if legacy_user_existence_errors {
                            "LEGACY"
                        } else {
                            "ENABLED"
                        }
                        .into(),
                        enable_token_revocation: None,
                        allowed_oauth_flows_user_pool_client: oauth_flows.is_some(),
                        allowed_oauth_flows: list(&oauth_flows),
                        allowed_oauth_scopes: list(&oauth_scopes),
                        callback_urls: list(&callback_urls),
                        logout_urls: list(&logout_urls),
                        ..Default::default()
                    }),
                )
                .await
                .map_err(status_err)?
                .into_inner();
            let c = r.user_pool_client.unwrap_or_default();
            print(g, &c, || show(&c))
        }
        AppClientCmd::Get { pool_id, client_id } => {
            let r = admin
                .describe_user_pool_client(client.req(DescribeUserPoolClientRequest {
                    user_pool_id: pool_id,
                    client_id,
                    consistent_read: true,
                }))
                .await
                .map_err(status_err)?
                .into_inner();
            let c = r.user_pool_client.unwrap_or_default();
            print(g, &c, || show(&c))
        }
        AppClientCmd::List { pool_id } => {
            let all = Client::paginate("ListUserPoolClients", |next_token| {
                let mut admin = client.admin();
                let req = client.req(ListUserPoolClientsRequest {
                    user_pool_id: pool_id.clone(),
                    max_results: 60,
                    next_token,
                    consistent_read: true,
                });
                async move {
                    let r = admin.list_user_pool_clients(req).await?.into_inner();
                    Ok((r.user_pool_clients, r.next_token))
                }
            })
            .await
            .map_err(status_err)?;
            let body = serde_json::json!({ "user_pool_clients": all });
            print(g, &body, || {
                println!("{:<28} NAME", "CLIENT_ID");
                for c in &all {
                    println!("{:<28} {}", c.client_id, c.client_name);
                }
            })
        }
        AppClientCmd::Delete { pool_id, client_id } => {
            admin
                .delete_user_pool_client(client.req(DeleteUserPoolClientRequest {
                    user_pool_id: pool_id,
                    client_id: client_id.clone(),
                }))
                .await
                .map_err(status_err)?;
            print(g, &serde_json::json!({ "deleted": client_id }), || {
                println!("deleted {client_id}")
            })
        }
    }
}

//! `tessera audit list`: a pool's audit log (AdminListUserAuthEvents).

use anyhow::Result;
use clap::Subcommand;
use tessera::client::Client;
use tessera::proto::*;

use super::{admin_client, print, status_err};
use crate::Global;

#[derive(Subcommand)]
pub enum AuditCmd {
    /// List audit events, newest first: sign-ups, sign-ins and failures,
    /// lockouts, password changes, group changes, admin actions.
    List {
        #[arg(long)]
        pool_id: String,
        /// Only this user's events (default: the whole pool).
        #[arg(long)]
        username: Option<String>,
        /// Events per page (1 to 60, default 60).
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..=60))]
        limit: Option<i32>,
        /// Fetch every page, not just the first.
        #[arg(long)]
        all: bool,
        /// Start from this page (printed by a previous list).
        #[arg(long)]
        next_token: Option<String>,
    },
}

fn events_table(events: &[AuthEventType]) {
    // Times are Unix milliseconds, as everywhere else in the CLI: there is no
    // date crate to render them, and `--output json` carries the same value.
    println!(
        "{:<15} {:<16} {:<8} {:<24} {:<28} {:<16} DETAIL",
        "TIME_MS", "EVENT_TYPE", "RESULT", "USERNAME", "CLIENT_ID", "IP"
    );
    for e in events {
        let ip = e
            .event_context_data
            .as_ref()
            .map(|c| c.ip_address.as_str())
            .unwrap_or("");
        println!(
            "{:<15} {:<16} {:<8} {:<24} {:<28} {:<16} {}",
            e.creation_date, e.event_type, e.event_response, e.username, e.client_id, ip, e.detail
        );
    }
}

pub async fn run(g: &Global, cmd: AuditCmd) -> Result<()> {
    let client = admin_client(g).await?;
    let mut admin = client.admin();
    let AuditCmd::List {
        pool_id,
        username,
        limit,
        all,
        next_token,
    } = cmd;
    let body = AdminListUserAuthEventsRequest {
        user_pool_id: pool_id,
        username: username.unwrap_or_default(),
        max_results: limit.unwrap_or(60),
        next_token: next_token.unwrap_or_default(),
        consistent_read: true,
    };
    if !all {
        let r = admin
            .admin_list_user_auth_events(client.req(body))
            .await
            .map_err(status_err)?
            .into_inner();
        return print(g, &r, || {
            events_table(&r.auth_events);
            if !r.next_token.is_empty() {
                eprintln!("more: --next-token {} (or --all)", r.next_token);
            }
        });
    }
    // `--all --next-token T` collects from page T on.
    let start = body.next_token.clone();
    let events = Client::paginate_from("AdminListUserAuthEvents", start, |next_token| {
        let mut admin = client.admin();
        let req = client.req(AdminListUserAuthEventsRequest {
            next_token,
            ..body.clone()
        });
        async move {
            let r = admin.admin_list_user_auth_events(req).await?.into_inner();
            Ok((r.auth_events, r.next_token))
        }
    })
    .await
    .map_err(status_err)?;
    print(g, &serde_json::json!({ "auth_events": events }), || {
        events_table(&events)
    })
}

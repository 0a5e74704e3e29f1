//! `tessera outbox list`: the messages the `outbox` courier backend keeps.

use anyhow::Result;
use clap::Subcommand;
use tessera::proto::*;

use super::{admin_client, print, status_err};
use crate::Global;

#[derive(Subcommand)]
pub enum OutboxCmd {
    /// List outbox messages, oldest first.
    List {
        /// Only this pool's messages.
        #[arg(long)]
        pool_id: Option<String>,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: i32,
    },
}

pub async fn run(g: &Global, cmd: OutboxCmd) -> Result<()> {
    let client = admin_client(g).await?;
    let OutboxCmd::List { pool_id, limit } = cmd;
    let r = client
        .admin()
        .list_outbox_messages(client.req(ListOutboxMessagesRequest {
            user_pool_id: pool_id.unwrap_or_default(),
            max_results: limit,
            next_token: String::new(),
            consistent_read: true,
        }))
        .await
        .map_err(status_err)?
        .into_inner();
    print(g, &r, || {
        println!(
            "{:<8} {:<20} {:<20} {:<18} {:<28} {:<10} CODE",
            "ID", "POOL", "USERNAME", "KIND", "DESTINATION", "STATUS"
        );
        for m in &r.messages {
            println!(
                "{:<8} {:<20} {:<20} {:<18} {:<28} {:<10} {}",
                m.id, m.user_pool_id, m.username, m.kind, m.destination, m.status, m.code
            );
        }
    })
}

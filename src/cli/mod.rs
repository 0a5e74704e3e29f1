//! Every command of the `tessera` binary; `main.rs` only parses and
//! dispatches here. Running a node (`node`), forming and changing the
//! cluster (`cluster`), pools, app clients, users, groups, a pool's
//! external identity providers and links, identity pools with their
//! identities and roles, the audit log, the outbox, signing in
//! and checking tokens, an identity's synced data as a device sees it
//! (`sync`), the admin access keys that sign calls with SigV4
//! (`admin-key`), and the judged runs
//! (`bench`: benchmarks and chaos). Each parses its flags and calls the
//! library's client; output is a table or, with `--output json`, the
//! response as JSON.

pub mod admin_key;
pub mod app_client;
pub mod audit;
pub mod bench;
pub mod branding;
pub mod cluster;
pub mod group;
pub mod identity;
pub mod identity_pool;
pub mod identity_provider;
pub mod login;
pub mod node;
pub mod outbox;
pub mod pool;
pub mod resource_server;
pub mod role;
pub mod sync;
pub mod user;
pub mod user_devices;
pub mod user_import;

use anyhow::{bail, Result};
use serde::Serialize;
use tessera::client::Client;

use crate::{Global, Output};

/// Connects to `--endpoint`, sending the admin token if one was given.
pub async fn connect(g: &Global) -> Result<Client> {
    Ok(Client::connect(&g.endpoint, g.token.clone()).await?)
}

/// Connects with the admin token, which these commands require.
pub async fn admin_client(g: &Global) -> Result<Client> {
    if g.token.is_none() {
        bail!("an admin token is required: pass --token or set TESSERA_ADMIN_TOKEN");
    }
    connect(g).await
}

/// Turns a status into an error that names the exception and the message.
pub fn status_err(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}

/// Prints `value` as JSON, or `table()` for humans.
pub fn print<T: Serialize>(g: &Global, value: &T, table: impl FnOnce()) -> Result<()> {
    match g.output {
        Output::Json => println!("{}", serde_json::to_string(value)?),
        Output::Table => table(),
    }
    Ok(())
}

/// Splits comma-separated flag values, dropping empty items.
pub fn list(s: &Option<String>) -> Vec<String> {
    s.as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

//! `tessera resource-server create|get|update|delete|list`: a user pool's
//! resource servers (`CreateResourceServer` and the rest of
//! `tessera.v1.Admin`), whose `identifier/scope` names app clients may be
//! allowed and service tokens carry.
//!
//! `--scope NAME=DESCRIPTION` is checked for its shape here, naming the
//! flag; what a scope may be called is the server's to say.

use anyhow::{bail, Result};
use clap::Subcommand;
use tessera::client::Client;
use tessera::proto::*;

use super::{admin_client, print, status_err};
use crate::Global;

#[derive(Subcommand)]
pub enum ResourceServerCmd {
    /// Create a resource server with its scopes.
    Create {
        #[arg(long)]
        pool_id: String,
        /// Usually the API's URL, e.g. https://orders.example.com; scopes
        /// are named IDENTIFIER/NAME.
        #[arg(long)]
        identifier: String,
        /// A name for people.
        #[arg(long)]
        name: String,
        /// A scope as NAME=DESCRIPTION; repeat for more.
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// Show a resource server.
    Get {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        identifier: String,
    },
    /// Replace a resource server's name and its whole list of scopes.
    Update {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        identifier: String,
        #[arg(long)]
        name: String,
        /// A scope as NAME=DESCRIPTION; repeat for more. Scopes left out
        /// are dropped, and no token grants them any more.
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// Delete a resource server; no token grants its scopes any more.
    Delete {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        identifier: String,
    },
    /// List a pool's resource servers.
    List {
        #[arg(long)]
        pool_id: String,
    },
}

/// `--scope NAME=DESCRIPTION` flags as the API takes them.
fn parse_scopes(flags: &[String]) -> Result<Vec<ResourceServerScopeType>> {
    flags
        .iter()
        .map(|f| match f.split_once('=') {
            Some((name, description)) if !name.is_empty() && !description.is_empty() => Ok(ResourceServerScopeType {
                scope_name: name.to_string(),
                scope_description: description.to_string(),
            }),
            _ => bail!("--scope {f:?}: expected NAME=DESCRIPTION, e.g. --scope read=\"Read orders\""),
        })
        .collect()
}

fn show(s: &ResourceServerType) {
    println!("identifier: {}", s.identifier);
    println!("name:       {}", s.name);
    println!("pool:       {}", s.user_pool_id);
    for sc in &s.scopes {
        println!(
            "scope:      {}/{}  {}",
            s.identifier, sc.scope_name, sc.scope_description
        );
    }
}

pub async fn run(g: &Global, cmd: ResourceServerCmd) -> Result<()> {
    let client = admin_client(g).await?;
    let mut admin = client.admin();
    let server = match cmd {
        ResourceServerCmd::Create {
            pool_id,
            identifier,
            name,
            scopes,
        } => admin
            .create_resource_server(client.req(CreateResourceServerRequest {
                user_pool_id: pool_id,
                identifier,
                name,
                scopes: parse_scopes(&scopes)?,
            }))
            .await
            .map_err(status_err)?
            .into_inner(),
        ResourceServerCmd::Get { pool_id, identifier } => admin
            .describe_resource_server(client.req(DescribeResourceServerRequest {
                user_pool_id: pool_id,
                identifier,
            }))
            .await
            .map_err(status_err)?
            .into_inner(),
        ResourceServerCmd::Update {
            pool_id,
            identifier,
            name,
            scopes,
        } => admin
            .update_resource_server(client.req(UpdateResourceServerRequest {
                user_pool_id: pool_id,
                identifier,
                name,
                scopes: parse_scopes(&scopes)?,
            }))
            .await
            .map_err(status_err)?
            .into_inner(),
        ResourceServerCmd::Delete { pool_id, identifier } => {
            admin
                .delete_resource_server(client.req(DeleteResourceServerRequest {
                    user_pool_id: pool_id,
                    identifier: identifier.clone(),
                }))
                .await
                .map_err(status_err)?;
            return print(g, &serde_json::json!({ "deleted": identifier }), || {
                println!("deleted {identifier}")
            });
        }
        ResourceServerCmd::List { pool_id } => return list(g, &client, pool_id).await,
    };
    let s = server.resource_server.unwrap_or_default();
    print(g, &s, || show(&s))
}

async fn list(g: &Global, client: &Client, pool_id: String) -> Result<()> {
    let all = Client::paginate("ListResourceServers", |next_token| {
        let mut admin = client.admin();
        let req = client.req(ListResourceServersRequest {
            user_pool_id: pool_id.clone(),
            max_results: 60,
            next_token,
        });
        async move {
            let r = admin.list_resource_servers(req).await?.into_inner();
            Ok((r.resource_servers, r.next_token))
        }
    })
    .await
    .map_err(status_err)?;
    let body = serde_json::json!({ "resource_servers": all });
    print(g, &body, || {
        println!("{:<48} {:<6} NAME", "IDENTIFIER", "SCOPES");
        for s in &all {
            println!("{:<48} {:<6} {}", s.identifier, s.scopes.len(), s.name);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_flags() {
        let s = parse_scopes(&["read=Read orders".into(), "w=a=b".into()]).unwrap();
        assert_eq!(s[0].scope_name, "read");
        assert_eq!(s[1].scope_description, "a=b");
        assert!(parse_scopes(&["read".into()]).is_err());
        assert!(parse_scopes(&["=x".into()]).is_err());
    }
}

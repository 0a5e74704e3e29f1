//! `tessera identity-provider create|get|update|delete|list|link|unlink`:
//! a user pool's external identity providers (`CreateIdentityProvider` and
//! the rest of `tessera.v1.Admin`'s federation calls) and the links of
//! external identities to the pool's own users
//! (`AdminLinkProviderForUser`, `AdminDisableProviderForUser`).
//!
//! Flags are checked for their shape here (`KEY=VALUE`, a key given
//! twice), naming the flag; what a provider may hold (known details, no
//! secrets, an issuer and a client id) is the server's to say, so the two
//! never disagree.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use clap::{Subcommand, ValueEnum};
use tessera::client::Client;
use tessera::proto::*;

use super::identity_pool::parse_pairs;
use super::{admin_client, print, status_err};
use crate::Global;

/// The pool's own users, as `AdminLinkProviderForUser` names them.
const COGNITO: &str = "Cognito";
/// The attribute that names an external identity by its `sub`.
const SUBJECT_ATTRIBUTE: &str = "Cognito_Subject";

/// The kinds of providers (Cognito's `ProviderType`); SAML and Login with
/// Amazon are not offered, their tokens not being OpenID Connect id tokens.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderKind {
    /// Any OpenID Connect issuer: --detail oidc_issuer=URL.
    #[value(name = "OIDC")]
    Oidc,
    /// Google (issuer https://accounts.google.com).
    #[value(name = "Google")]
    Google,
    /// Sign in with Apple (issuer https://appleid.apple.com).
    #[value(name = "SignInWithApple")]
    SignInWithApple,
    /// Facebook Limited Login (issuer https://www.facebook.com).
    #[value(name = "Facebook")]
    Facebook,
}

impl ProviderKind {
    /// Cognito's string, as the API takes it.
    fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Oidc => "OIDC",
            ProviderKind::Google => "Google",
            ProviderKind::SignInWithApple => "SignInWithApple",
            ProviderKind::Facebook => "Facebook",
        }
    }
}

#[derive(Subcommand)]
pub enum IdentityProviderCmd {
    /// Create an identity provider whose id tokens sign in to the pool
    /// (InitiateAuth with FEDERATED_ID_TOKEN_AUTH). Its first sign-in
    /// creates a user named {name}_{subject}.
    Create {
        #[arg(long)]
        pool_id: String,
        /// Its name in the pool: 1 to 32 characters, no '_' or space, not
        /// Cognito.
        #[arg(long)]
        name: String,
        #[arg(long = "type", value_name = "TYPE", value_enum, ignore_case = true)]
        provider_type: ProviderKind,
        /// A provider detail: client_id (the accepted audiences, several
        /// separated by spaces), oidc_issuer (required for OIDC), and
        /// optionally jwks_uri or discovery_url. Secrets (client_secret,
        /// private_key) are refused. Repeatable.
        #[arg(long = "detail", value_name = "KEY=VALUE")]
        details: Vec<String>,
        /// A pool attribute and the provider's claim that fills it, e.g.
        /// email=email. Repeatable.
        #[arg(long = "attribute-mapping", value_name = "ATTRIBUTE=CLAIM")]
        attribute_mappings: Vec<String>,
        /// Another name of the provider (Cognito's IdpIdentifiers).
        /// Repeatable.
        #[arg(long = "idp-identifier", value_name = "ID")]
        idp_identifiers: Vec<String>,
    },
    /// Show an identity provider.
    Get {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        name: String,
    },
    /// Change an identity provider; only what is given is replaced, and a
    /// repeatable flag replaces its whole map or list: --detail replaces
    /// every detail (give client_id and oidc_issuer again).
    /// UpdateIdentityProvider keeps a map or list that is sent empty, so
    /// none can be emptied here.
    Update {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        name: String,
        /// Replaces every provider detail; repeatable.
        #[arg(long = "detail", value_name = "KEY=VALUE")]
        details: Vec<String>,
        /// Replaces the whole attribute mapping; repeatable.
        #[arg(long = "attribute-mapping", value_name = "ATTRIBUTE=CLAIM")]
        attribute_mappings: Vec<String>,
        /// Replaces every identifier; repeatable.
        #[arg(long = "idp-identifier", value_name = "ID")]
        idp_identifiers: Vec<String>,
    },
    /// Delete an identity provider; its users stay, and cannot sign in
    /// through it any more.
    Delete {
        #[arg(long)]
        pool_id: String,
        #[arg(long)]
        name: String,
    },
    /// List a pool's identity providers.
    List {
        #[arg(long)]
        pool_id: String,
    },
    /// Link an external identity to an existing user of the pool
    /// (AdminLinkProviderForUser): the provider's subject then signs in as
    /// that user.
    Link {
        #[arg(long)]
        pool_id: String,
        /// The pool's own user it signs in as.
        #[arg(long)]
        username: String,
        /// The identity provider's name in the pool.
        #[arg(long)]
        provider: String,
        /// The external identity's `sub` at the provider.
        #[arg(long)]
        subject: String,
    },
    /// Unlink an external identity (AdminDisableProviderForUser); a
    /// federated user it created is disabled and its tokens stop.
    Unlink {
        #[arg(long)]
        pool_id: String,
        /// The identity provider's name in the pool.
        #[arg(long)]
        provider: String,
        /// The external identity's `sub` at the provider.
        #[arg(long)]
        subject: String,
    },
}

/// `--detail KEY=VALUE` flags as a map.
fn details(values: &[String]) -> Result<BTreeMap<String, String>> {
    parse_pairs("--detail", "KEY=VALUE", values)
}

/// `--attribute-mapping ATTRIBUTE=CLAIM` flags as a map.
fn attribute_mapping(values: &[String]) -> Result<BTreeMap<String, String>> {
    parse_pairs("--attribute-mapping", "ATTRIBUTE=CLAIM", values)
}

fn pairs(m: &BTreeMap<String, String>) -> String {
    m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

fn show(p: &IdentityProviderType) {
    println!("provider:          {}", p.provider_name);
    println!("pool:              {}", p.user_pool_id);
    println!("type:              {}", p.provider_type);
    println!("details:           {}", pairs(&p.provider_details));
    println!("attribute_mapping: {}", pairs(&p.attribute_mapping));
    println!("idp_identifiers:   {}", p.idp_identifiers.join(","));
    println!("created:           {}", p.creation_date);
    println!("modified:          {}", p.last_modified_date);
}

/// An external identity as the link calls name it.
fn external(provider: String, subject: String) -> ProviderUserIdentifierType {
    ProviderUserIdentifierType {
        provider_name: provider,
        provider_attribute_name: SUBJECT_ATTRIBUTE.into(),
        provider_attribute_value: subject,
    }
}

/// Runs one `tessera identity-provider` command.
pub async fn run(g: &Global, cmd: IdentityProviderCmd) -> Result<()> {
    let client = admin_client(g).await?;
    let mut admin = client.admin();
    match cmd {
        IdentityProviderCmd::Create {
            pool_id,
            name,
            provider_type,
            details: detail_flags,
            attribute_mappings,
            idp_identifiers,
        } => {
            let req = CreateIdentityProviderRequest {
                user_pool_id: pool_id,
                provider_name: name,
                provider_type: provider_type.as_str().into(),
                provider_details: details(&detail_flags)?,
                attribute_mapping: attribute_mapping(&attribute_mappings)?,
                idp_identifiers,
            };
            let r = admin
                .create_identity_provider(client.req(req))
                .await
                .map_err(status_err)?
                .into_inner();
            let p = r.identity_provider.unwrap_or_default();
            print(g, &p, || show(&p))
        }
        IdentityProviderCmd::Get { pool_id, name } => {
            let r = admin
                .describe_identity_provider(client.req(DescribeIdentityProviderRequest {
                    user_pool_id: pool_id,
                    provider_name: name,
                }))
                .await
                .map_err(status_err)?
                .into_inner();
            let p = r.identity_provider.unwrap_or_default();
            print(g, &p, || show(&p))
        }
        IdentityProviderCmd::Update {
            pool_id,
            name,
            details: detail_flags,
            attribute_mappings,
            idp_identifiers,
        } => {
            // The server keeps what is sent empty, so an update that names
            // nothing would be a silent no-op.
            if detail_flags.is_empty() && attribute_mappings.is_empty() && idp_identifiers.is_empty() {
                bail!("nothing to update: give --detail, --attribute-mapping or --idp-identifier");
            }
            let req = UpdateIdentityProviderRequest {
                user_pool_id: pool_id,
                provider_name: name,
                provider_details: details(&detail_flags)?,
                attribute_mapping: attribute_mapping(&attribute_mappings)?,
                idp_identifiers,
            };
            let r = admin
                .update_identity_provider(client.req(req))
                .await
                .map_err(status_err)?
                .into_inner();
            let p = r.identity_provider.unwrap_or_default();
            print(g, &p, || show(&p))
        }
        IdentityProviderCmd::Delete { pool_id, name } => {
            admin
                .delete_identity_provider(client.req(DeleteIdentityProviderRequest {
                    user_pool_id: pool_id,
                    provider_name: name.clone(),
                }))
                .await
                .map_err(status_err)?;
            print(g, &serde_json::json!({ "deleted": name }), || {
                println!("deleted {name}")
            })
        }
        IdentityProviderCmd::List { pool_id } => list(g, &client, pool_id).await,
        IdentityProviderCmd::Link {
            pool_id,
            username,
            provider,
            subject,
        } => {
            admin
                .admin_link_provider_for_user(client.req(AdminLinkProviderForUserRequest {
                    user_pool_id: pool_id,
                    destination_user: Some(ProviderUserIdentifierType {
                        provider_name: COGNITO.into(),
                        provider_attribute_name: String::new(),
                        provider_attribute_value: username.clone(),
                    }),
                    source_user: Some(external(provider.clone(), subject.clone())),
                }))
                .await
                .map_err(status_err)?;
            let linked = serde_json::json!({ "linked": username, "provider": provider, "subject": subject });
            print(g, &linked, || {
                println!("linked {provider} identity {subject} to {username}")
            })
        }
        IdentityProviderCmd::Unlink {
            pool_id,
            provider,
            subject,
        } => {
            admin
                .admin_disable_provider_for_user(client.req(AdminDisableProviderForUserRequest {
                    user_pool_id: pool_id,
                    user: Some(external(provider.clone(), subject.clone())),
                }))
                .await
                .map_err(status_err)?;
            let unlinked = serde_json::json!({ "unlinked": subject, "provider": provider });
            print(g, &unlinked, || println!("unlinked {provider} identity {subject}"))
        }
    }
}

/// `identity-provider list`: every provider of the pool.
async fn list(g: &Global, client: &Client, pool_id: String) -> Result<()> {
    let providers = Client::paginate("ListIdentityProviders", |next_token| {
        let mut admin = client.admin();
        let req = client.req(ListIdentityProvidersRequest {
            user_pool_id: pool_id.clone(),
            max_results: 60,
            next_token,
        });
        async move {
            let r = admin.list_identity_providers(req).await?.into_inner();
            Ok((r.providers, r.next_token))
        }
    })
    .await
    .map_err(status_err)?;
    print(g, &serde_json::json!({ "providers": providers }), || {
        println!("{:<32} {:<16} {:<12} MODIFIED", "NAME", "TYPE", "CREATED");
        for p in &providers {
            println!(
                "{:<32} {:<16} {:<12} {}",
                p.provider_name, p.provider_type, p.creation_date, p.last_modified_date
            );
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_name_their_flag() {
        let m = details(&["client_id=a b".into(), "oidc_issuer=https://x/realm?y=1".into()]).unwrap();
        assert_eq!(m["client_id"], "a b");
        assert_eq!(m["oidc_issuer"], "https://x/realm?y=1");
        let e = details(&["client_id".into()]).unwrap_err().to_string();
        assert!(e.contains("--detail") && e.contains("KEY=VALUE"), "{e}");
        let e = attribute_mapping(&["email=email".into(), "email=mail".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--attribute-mapping") && e.contains("given twice"), "{e}");
    }

    #[test]
    fn provider_types_are_cognitos_strings() {
        for (s, want) in [
            ("OIDC", "OIDC"),
            ("oidc", "OIDC"),
            ("Google", "Google"),
            ("signinwithapple", "SignInWithApple"),
            ("Facebook", "Facebook"),
        ] {
            let k = ProviderKind::from_str(s, true).unwrap();
            assert_eq!(k.as_str(), want);
        }
        assert!(ProviderKind::from_str("SAML", true).is_err());
    }
}

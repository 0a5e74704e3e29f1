//! `tessera login` (password sign-in, printing tokens) and `tessera token
//! verify` (offline verification against the cluster's JWKS).

use std::io::BufRead;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use tessera::auth::jwks::Jwks;
use tessera::auth::secret_hash::secret_hash;
use tessera::auth::verifier::{peek_kid_and_issuer, TokenVerifier};
use tessera::client::Client;
use tessera::proto::*;

use super::{print, status_err};
use crate::Global;

#[derive(Args)]
pub struct LoginArgs {
    /// The pool the client belongs to (checked against the tokens' issuer).
    #[arg(long)]
    pool_id: String,
    #[arg(long)]
    client_id: String,
    #[arg(long)]
    username: String,
    /// For clients with a secret (SECRET_HASH is computed from it).
    #[arg(long, env = "TESSERA_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// Read the password from the first line of stdin instead of a prompt
    /// (and, for a first sign-in with a temporary password, the new
    /// password from the second line; for a SOFTWARE_TOKEN_MFA challenge,
    /// the TOTP or recovery code from the second line).
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Verify a token against the cluster's JWKS and print its claims.
    Verify {
        token: String,
        /// For id tokens: the app client they must be for.
        #[arg(long)]
        client_id: Option<String>,
    },
}

fn read_secret(prompt: &str, stdin: &mut Option<std::io::StdinLock<'static>>) -> Result<String> {
    match stdin {
        Some(lines) => {
            let mut s = String::new();
            lines.read_line(&mut s)?;
            let s = s.trim_end_matches(['\r', '\n']).to_string();
            if s.is_empty() {
                bail!("expected a line on stdin for {prompt}");
            }
            Ok(s)
        }
        None => Ok(rpassword::prompt_password(format!("{prompt}: "))?),
    }
}

pub async fn login(g: &Global, a: LoginArgs) -> Result<()> {
    let client = Client::connect(&g.endpoint, None).await?;
    let mut auth = client.auth();
    let mut stdin = a.password_stdin.then(|| std::io::stdin().lock());
    let password = read_secret("Password", &mut stdin)?;
    let hash = a
        .client_secret
        .as_deref()
        .map(|s| secret_hash(s, &a.username, &a.client_id));
    let mut params = std::collections::BTreeMap::new();
    params.insert("USERNAME".to_string(), a.username.clone());
    params.insert("PASSWORD".to_string(), password);
    if let Some(h) = &hash {
        params.insert("SECRET_HASH".to_string(), h.clone());
    }
    let r = auth
        .initiate_auth(InitiateAuthRequest {
            auth_flow: "USER_PASSWORD_AUTH".into(),
            auth_parameters: params,
            client_id: a.client_id.clone(),
            client_metadata: Default::default(),
        })
        .await
        .map_err(status_err)?
        .into_inner();
    let result = match (r.authentication_result, r.challenge_name.as_str()) {
        (Some(t), _) => t,
        (None, "NEW_PASSWORD_REQUIRED") => {
            eprintln!("A new password is required for this first sign-in.");
            let new_password = read_secret("New password", &mut stdin)?;
            let mut responses = std::collections::BTreeMap::new();
            responses.insert("USERNAME".to_string(), a.username.clone());
            responses.insert("NEW_PASSWORD".to_string(), new_password);
            if let Some(h) = hash {
                responses.insert("SECRET_HASH".to_string(), h);
            }
            auth.respond_to_auth_challenge(RespondToAuthChallengeRequest {
                client_id: a.client_id.clone(),
                challenge_name: r.challenge_name.clone(),
                session: r.session,
                challenge_responses: responses,
            })
            .await
            .map_err(status_err)?
            .into_inner()
            .authentication_result
            .ok_or_else(|| anyhow!("the challenge response returned no tokens"))?
        }
        (None, "SOFTWARE_TOKEN_MFA") => {
            // Six digits are a TOTP code; anything else a recovery code.
            let code = read_secret("MFA code from your authenticator app (or a recovery code)", &mut stdin)?;
            let field = if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
                "SOFTWARE_TOKEN_MFA_CODE"
            } else {
                "RECOVERY_CODE"
            };
            let mut responses = std::collections::BTreeMap::new();
            responses.insert("USERNAME".to_string(), a.username.clone());
            responses.insert(field.to_string(), code);
            if let Some(h) = hash {
                responses.insert("SECRET_HASH".to_string(), h);
            }
            auth.respond_to_auth_challenge(RespondToAuthChallengeRequest {
                client_id: a.client_id.clone(),
                challenge_name: r.challenge_name.clone(),
                session: r.session,
                challenge_responses: responses,
            })
            .await
            .map_err(status_err)?
            .into_inner()
            .authentication_result
            .ok_or_else(|| anyhow!("the challenge response returned no tokens"))?
        }
        (None, other) => bail!("the pool answered with challenge {other:?}, which this CLI does not handle"),
    };
    let (_, issuer) = peek_kid_and_issuer(&result.access_token).ok_or_else(|| anyhow!("malformed access token"))?;
    if !issuer.ends_with(&format!("/{}", a.pool_id)) {
        bail!("the client belongs to another pool (issuer {issuer})");
    }
    print(g, &result, || {
        println!("id_token:      {}", result.id_token);
        println!("access_token:  {}", result.access_token);
        println!("refresh_token: {}", result.refresh_token);
        println!("expires_in:    {} s", result.expires_in);
    })
}

pub async fn token(g: &Global, cmd: TokenCmd) -> Result<()> {
    let TokenCmd::Verify { token, client_id } = cmd;
    let (_, issuer) = peek_kid_and_issuer(&token).ok_or_else(|| anyhow!("not a JWT issued by Tessera"))?;
    let pool_id = issuer.rsplit('/').next().unwrap_or_default().to_string();
    let discovery =
        tessera::client::http::get_json(&g.endpoint, &format!("/{pool_id}/.well-known/openid-configuration"))
            .await
            .context("fetching the pool's OpenID configuration")?;
    let trusted_issuer = discovery["issuer"].as_str().unwrap_or_default();
    let jwks: Jwks = serde_json::from_value(
        tessera::client::http::get_json(&g.endpoint, &format!("/{pool_id}/.well-known/jwks.json"))
            .await
            .context("fetching the pool's JWKS")?,
    )?;
    let verifier = TokenVerifier::new(trusted_issuer, &jwks);
    let now = tessera::clock::now_millis() / 1000;
    let claims = match client_id {
        Some(c) => verifier.verify_id(&token, &c, now),
        None => verifier
            .verify_access(&token, now)
            .or_else(|_| verifier.verify(&token, "id", now)),
    }
    .map_err(|e| anyhow!("{e}"))?;
    print(g, &claims, || {
        println!("valid token from {trusted_issuer}");
        for (k, v) in &claims {
            println!("  {k:<18} {v}");
        }
    })
}

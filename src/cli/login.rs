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
    /// password from the second line; for a SOFTWARE_TOKEN_MFA, SMS_MFA,
    /// EMAIL_OTP or SMS_OTP challenge, the code from the next line).
    #[arg(long)]
    password_stdin: bool,
    /// Sign in with USER_AUTH (the client needs ALLOW_USER_AUTH) and this
    /// first factor: PASSWORD, EMAIL_OTP, SMS_OTP or MAGIC_LINK; `SELECT`
    /// asks the pool what the user can do. Codes are read like passwords
    /// (prompt, or the next line of stdin).
    #[arg(long, value_parser = ["PASSWORD", "EMAIL_OTP", "SMS_OTP", "MAGIC_LINK", "SELECT"])]
    challenge: Option<String>,
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
    let hash = a
        .client_secret
        .as_deref()
        .map(|s| secret_hash(s, &a.username, &a.client_id));
    let mut params = std::collections::BTreeMap::new();
    params.insert("USERNAME".to_string(), a.username.clone());
    if let Some(h) = &hash {
        params.insert("SECRET_HASH".to_string(), h.clone());
    }
    // USER_AUTH with a preferred first factor, or the password flow.
    let flow = match a.challenge.as_deref() {
        None => {
            params.insert("PASSWORD".to_string(), read_secret("Password", &mut stdin)?);
            "USER_PASSWORD_AUTH"
        }
        Some("PASSWORD") => {
            params.insert("PREFERRED_CHALLENGE".to_string(), "PASSWORD".into());
            params.insert("PASSWORD".to_string(), read_secret("Password", &mut stdin)?);
            "USER_AUTH"
        }
        Some("SELECT") => "USER_AUTH",
        Some(other) => {
            params.insert("PREFERRED_CHALLENGE".to_string(), other.to_string());
            "USER_AUTH"
        }
    };
    let r = auth
        .initiate_auth(InitiateAuthRequest {
            auth_flow: flow.into(),
            auth_parameters: params,
            client_id: a.client_id.clone(),
            client_metadata: Default::default(),
        })
        .await
        .map_err(status_err)?
        .into_inner();
    let (mut name, mut session, mut parameters, mut result) = (
        r.challenge_name,
        r.session,
        r.challenge_parameters,
        r.authentication_result,
    );
    let mut available = r.available_challenges;
    // Each round answers one challenge; a sign-in takes at most a few.
    for _ in 0..8 {
        if result.is_some() {
            break;
        }
        let mut responses = std::collections::BTreeMap::new();
        responses.insert("USERNAME".to_string(), a.username.clone());
        if let Some(h) = &hash {
            responses.insert("SECRET_HASH".to_string(), h.clone());
        }
        let sent_to = || {
            format!(
                "{} sent by {} to {}",
                if name == "MAGIC_LINK" {
                    "A link was"
                } else {
                    "A code was"
                },
                parameters
                    .get("CODE_DELIVERY_DELIVERY_MEDIUM")
                    .map(String::as_str)
                    .unwrap_or("?"),
                parameters
                    .get("CODE_DELIVERY_DESTINATION")
                    .map(String::as_str)
                    .unwrap_or("?")
            )
        };
        match name.as_str() {
            "NEW_PASSWORD_REQUIRED" => {
                eprintln!("A new password is required for this first sign-in.");
                responses.insert("NEW_PASSWORD".to_string(), read_secret("New password", &mut stdin)?);
            }
            "SOFTWARE_TOKEN_MFA" => {
                // Six digits are a TOTP code; anything else a recovery code.
                let code = read_secret("MFA code from your authenticator app (or a recovery code)", &mut stdin)?;
                let field = if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
                    "SOFTWARE_TOKEN_MFA_CODE"
                } else {
                    "RECOVERY_CODE"
                };
                responses.insert(field.to_string(), code);
            }
            "SMS_MFA" | "EMAIL_OTP" | "SMS_OTP" => {
                eprintln!("{}.", sent_to());
                let field = format!("{name}_CODE");
                responses.insert(field, read_secret("Code", &mut stdin)?);
            }
            "SELECT_MFA_TYPE" => {
                let choices = parameters.get("MFAS_CAN_CHOOSE").cloned().unwrap_or_default();
                eprintln!("Choose a second factor: {choices}");
                responses.insert("ANSWER".to_string(), read_secret("Factor", &mut stdin)?);
            }
            "SELECT_CHALLENGE" => {
                eprintln!("Choose how to sign in: {}", available.join(", "));
                let choice = read_secret("Choice", &mut stdin)?;
                if choice == "PASSWORD" {
                    responses.insert("PASSWORD".to_string(), read_secret("Password", &mut stdin)?);
                }
                responses.insert("ANSWER".to_string(), choice);
            }
            "MAGIC_LINK" => {
                eprintln!("{}. Open it and confirm; this command waits.", sent_to());
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3600);
                loop {
                    let attempt = auth
                        .respond_to_auth_challenge(RespondToAuthChallengeRequest {
                            client_id: a.client_id.clone(),
                            challenge_name: name.clone(),
                            session: session.clone(),
                            challenge_responses: responses.clone(),
                        })
                        .await;
                    match attempt {
                        Ok(ok) => {
                            result = ok.into_inner().authentication_result;
                            break;
                        }
                        Err(e)
                            if e.message().starts_with("MagicLinkNotApprovedException")
                                && std::time::Instant::now() < deadline =>
                        {
                            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                        }
                        Err(e) => return Err(status_err(e)),
                    }
                }
                continue;
            }
            "" => bail!("the pool answered with neither tokens nor a challenge"),
            other => bail!("the pool answered with challenge {other:?}, which this CLI does not handle"),
        }
        let next = auth
            .respond_to_auth_challenge(RespondToAuthChallengeRequest {
                client_id: a.client_id.clone(),
                challenge_name: name.clone(),
                session: session.clone(),
                challenge_responses: responses,
            })
            .await
            .map_err(status_err)?
            .into_inner();
        available = next.available_challenges;
        (name, session, parameters, result) = (
            next.challenge_name,
            next.session,
            next.challenge_parameters,
            next.authentication_result,
        );
    }
    let result = result.ok_or_else(|| anyhow!("the sign-in did not finish after 8 challenges"))?;
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

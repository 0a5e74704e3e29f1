//! The hosted page's entry points into sign-up, confirmation and account
//! recovery. Each one is the API's flow for the page's app client (so the
//! pool's attributes, password policy, triggers, courier, rate limits and
//! `PreventUserExistenceErrors` apply exactly as they do to `SignUp` or
//! `ForgotPassword`), with the `SECRET_HASH` the page computes for a
//! client with a secret. Nothing here re-implements a flow.
//!
//! A user who confirms a sign-up on the page is signed in at once, as on
//! Cognito's hosted UI, without typing the password again and without the
//! password coming back through the browser in the clear: the page holds
//! it only as a [`PendingSignUp`] sealed with the cluster key (any node
//! opens it, no browser reads or changes it) that expires after
//! [`PENDING_SIGN_UP_MS`].
//!
//! Passkeys on the page: [`AuthService::hosted_passkey_start`] opens a
//! username-less `WEB_AUTHN` sign-in (any discoverable credential of the
//! pool answers it), and after a sign-in that yields tokens the page may
//! offer to add a passkey. That offer holds the fresh access token (what
//! `StartWebAuthnRegistration` needs) and where the browser goes next, as a
//! [`PasskeyOffer`] sealed like a sign-up, for [`PASSKEY_OFFER_MS`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::signin::AuthAnswer;
use super::signup::{CodeDelivery, SignUp, SignUpResult};
use super::AuthService;
use crate::model::passwordless::FirstFactor;
use crate::model::pool_settings::MAX_PASSWORD_BYTES;
use crate::service::oauth::authorize::PendingAuthorization;
use crate::service::oauth::sealed;
use crate::service::{Origin, ServiceError};

/// How long a sealed sign-up waits for its confirmation code (the page's
/// pending authorization bounds it too).
pub const PENDING_SIGN_UP_MS: i64 = 30 * 60 * 1000;

/// How long the page's offer to add a passkey, after a sign-in, stays
/// good: long enough to find the authenticator, short for a page that
/// holds an access token.
pub const PASSKEY_OFFER_MS: i64 = 10 * 60 * 1000;

/// A sign-in that just yielded tokens, held while the page offers to add
/// a passkey: sealed into the offer's forms, so "Add a passkey" and "Not
/// now" both go on to the app, on any node, without the browser seeing the
/// token or changing where the sign-in leads. Not `Debug`: it holds a
/// token, which must never reach a log.
#[derive(Clone, Serialize, Deserialize)]
pub struct PasskeyOffer {
    /// The access token of the sign-in: what registration needs.
    pub access_token: String,
    /// Who signed in, and when (seconds), for the code to the app.
    pub sub: String,
    /// `auth_time` of the sign-in (seconds since the epoch).
    pub auth_time: i64,
    /// The authorization the sign-in continues.
    pub pending: PendingAuthorization,
    /// When the seal stops opening (ms since the epoch).
    pub expires_at: i64,
}

/// Most attributes the page's sign-up form asks for.
pub const MAX_FORM_ATTRIBUTES: usize = 20;

/// A sign-up waiting for its code, sealed into the page's confirmation
/// form so the confirmation signs the user in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingSignUp {
    /// The username signed up (or signed in with).
    pub username: String,
    /// The password, which only ever leaves this node sealed.
    pub password: String,
    /// When the seal stops opening (ms since the epoch).
    pub expires_at: i64,
}

/// One attribute the sign-up form asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormAttribute {
    /// The attribute's name (`email`, `custom:team`).
    pub name: String,
    /// Whether the pool requires it.
    pub required: bool,
}

impl AuthService {
    fn page_secret_hash(
        &self,
        client: &crate::model::app_client::AppClient,
        username: &str,
    ) -> Result<String, ServiceError> {
        Ok(self
            .client_secret(client)?
            .map(|secret| crate::auth::secret_hash::secret_hash(&secret, username, &client.client_id))
            .unwrap_or_default())
    }

    /// The attributes the sign-up form of `client_id` asks for: those the
    /// pool requires, then the auto-verified ones (where the confirmation
    /// code goes), each only if the client may write it.
    pub async fn hosted_sign_up_fields(&self, client_id: &str) -> Result<Vec<FormAttribute>, ServiceError> {
        let caller = self.caller(client_id).await?;
        let settings = &caller.pool.settings;
        let mut fields: Vec<FormAttribute> = settings
            .schema
            .iter()
            .filter(|(_, s)| s.required)
            .map(|(name, _)| FormAttribute {
                name: name.clone(),
                required: true,
            })
            .collect();
        for alias in &settings.auto_verified_attributes {
            let name = alias.attribute();
            if !fields.iter().any(|f| f.name == name) {
                fields.push(FormAttribute {
                    name: name.to_string(),
                    required: false,
                });
            }
        }
        fields.retain(|f| caller.client.may_write(&f.name));
        fields.truncate(MAX_FORM_ATTRIBUTES);
        Ok(fields)
    }

    /// Seals `username` and `password` for the confirmation form of
    /// `pool_id`'s page.
    pub fn seal_pending_sign_up(&self, pool_id: &str, username: &str, password: &str) -> Result<String, ServiceError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(ServiceError::invalid_password(format!(
                "password must be 1 to {MAX_PASSWORD_BYTES} bytes"
            )));
        }
        let p = PendingSignUp {
            username: username.to_string(),
            password: password.to_string(),
            expires_at: crate::clock::now_millis() + PENDING_SIGN_UP_MS,
        };
        let key = crate::service::sealing_key(&self.sealing)?;
        sealed::seal(&key, &sealed::context("signup", pool_id), &p)
    }

    /// Opens a sealed sign-up of `pool_id`'s page; `None` if it is not
    /// one, or expired.
    pub fn open_pending_sign_up(&self, pool_id: &str, text: &str) -> Option<PendingSignUp> {
        let key = self.sealing.get()?;
        let p: PendingSignUp = sealed::open(&key, &sealed::context("signup", pool_id), text)?;
        (p.expires_at > crate::clock::now_millis()).then_some(p)
    }

    /// The page's `SignUp` for `client_id`.
    pub async fn hosted_sign_up(
        &self,
        client_id: &str,
        username: &str,
        password: &str,
        attributes: BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<SignUpResult, ServiceError> {
        let caller = self.caller(client_id).await?;
        let secret_hash = self.page_secret_hash(&caller.client, username)?;
        self.sign_up(
            SignUp {
                client_id: client_id.to_string(),
                secret_hash,
                username: username.to_string(),
                password: password.to_string(),
                attributes,
                validation_data: BTreeMap::new(),
            },
            origin,
        )
        .await
    }

    /// The page's `ConfirmSignUp`; the page then signs the user in with
    /// the sealed password ([`AuthService::hosted_password`]).
    pub async fn hosted_confirm(
        &self,
        client_id: &str,
        username: &str,
        code: &str,
        origin: &Origin,
    ) -> Result<(), ServiceError> {
        let caller = self.caller(client_id).await?;
        let secret_hash = self.page_secret_hash(&caller.client, username)?;
        self.confirm_sign_up(client_id, &secret_hash, username, code, false, origin)
            .await
    }

    /// The page's `ResendConfirmationCode`.
    pub async fn hosted_resend(
        &self,
        client_id: &str,
        username: &str,
        origin: &Origin,
    ) -> Result<CodeDelivery, ServiceError> {
        let caller = self.caller(client_id).await?;
        let secret_hash = self.page_secret_hash(&caller.client, username)?;
        self.resend_confirmation_code(client_id, &secret_hash, username, origin)
            .await
    }

    /// The page's `ForgotPassword`.
    pub async fn hosted_forgot(
        &self,
        client_id: &str,
        username: &str,
        origin: &Origin,
    ) -> Result<CodeDelivery, ServiceError> {
        let caller = self.caller(client_id).await?;
        let secret_hash = self.page_secret_hash(&caller.client, username)?;
        self.forgot_password(client_id, &secret_hash, username, origin).await
    }

    /// The page's `ConfirmForgotPassword`.
    pub async fn hosted_reset(
        &self,
        client_id: &str,
        username: &str,
        code: &str,
        password: &str,
        origin: &Origin,
    ) -> Result<(), ServiceError> {
        let caller = self.caller(client_id).await?;
        let secret_hash = self.page_secret_hash(&caller.client, username)?;
        self.confirm_forgot_password(client_id, &secret_hash, username, code, password, origin)
            .await
    }

    /// Whether the page offers `client_id` a sign-in without password:
    /// only when the client allows `USER_AUTH`, as the API requires.
    pub fn hosted_offers_user_auth(&self, client_id: &str) -> bool {
        self.node
            .store()
            .app_client(client_id)
            .ok()
            .flatten()
            .is_some_and(|c| c.allows(crate::model::app_client::AuthFlow::UserAuth))
    }

    /// The page's `InitiateAuth(USER_AUTH)` without a preferred challenge:
    /// the flow answers `SELECT_CHALLENGE` with the pool's first factors.
    pub async fn hosted_user_auth(
        &self,
        client_id: &str,
        username: &str,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        let caller = self.caller(client_id).await?;
        let mut params = BTreeMap::from([("USERNAME".to_string(), username.to_string())]);
        let secret_hash = self.page_secret_hash(&caller.client, username)?;
        if !secret_hash.is_empty() {
            params.insert("SECRET_HASH".into(), secret_hash);
        }
        self.initiate_auth("USER_AUTH", client_id, &params, origin).await
    }

    /// Whether `client_id`'s pool allows passkeys as a first factor.
    fn pool_allows_passkeys(&self, client_id: &str) -> bool {
        let store = self.node.store();
        let Some(client) = store.app_client(client_id).ok().flatten() else {
            return false;
        };
        store
            .pool_sign_in(&client.pool_id)
            .is_ok_and(|p| p.allows(FirstFactor::WebAuthn))
    }

    /// Whether the sign-in form of `client_id` offers "Sign in with a
    /// passkey": the client allows `USER_AUTH` (as the API requires) and
    /// the pool allows `WEB_AUTHN` as a first factor.
    pub fn hosted_offers_passkeys(&self, client_id: &str) -> bool {
        self.hosted_offers_user_auth(client_id) && self.pool_allows_passkeys(client_id)
    }

    /// Whether the page should offer to add a passkey after a sign-in of
    /// `client_id` that yielded `access_token`: the pool allows `WEB_AUTHN`
    /// and the user has no passkey yet. Any failure says no: the offer
    /// never stands between a user and the app.
    pub async fn hosted_wants_passkey(&self, client_id: &str, access_token: &str) -> bool {
        if !self.pool_allows_passkeys(client_id) {
            return false;
        }
        self.list_web_authn_credentials(access_token, "", 1)
            .await
            .is_ok_and(|(list, _)| list.is_empty())
    }

    /// The page's username-less passkey sign-in: `InitiateAuth(USER_AUTH)`
    /// with `PREFERRED_CHALLENGE=WEB_AUTHN` and no `USERNAME` (the
    /// `SECRET_HASH`, for a client with a secret, over the empty
    /// username). The answer is the `WEB_AUTHN` challenge, whose session
    /// the flow signs; [`AuthService::hosted_respond`] with an empty
    /// username completes it.
    pub async fn hosted_passkey_start(&self, client_id: &str, origin: &Origin) -> Result<AuthAnswer, ServiceError> {
        let caller = self.caller(client_id).await?;
        let mut params = BTreeMap::from([("PREFERRED_CHALLENGE".to_string(), "WEB_AUTHN".to_string())]);
        let secret_hash = self.page_secret_hash(&caller.client, "")?;
        if !secret_hash.is_empty() {
            params.insert("SECRET_HASH".into(), secret_hash);
        }
        self.initiate_auth("USER_AUTH", client_id, &params, origin).await
    }

    /// Seals the offer to add a passkey after `sub`'s sign-in on
    /// `pool_id`'s page.
    pub fn seal_passkey_offer(
        &self,
        pool_id: &str,
        access_token: &str,
        (sub, auth_time): (&str, i64),
        pending: &PendingAuthorization,
    ) -> Result<String, ServiceError> {
        let offer = PasskeyOffer {
            access_token: access_token.to_string(),
            sub: sub.to_string(),
            auth_time,
            pending: pending.clone(),
            expires_at: crate::clock::now_millis() + PASSKEY_OFFER_MS,
        };
        let key = crate::service::sealing_key(&self.sealing)?;
        sealed::seal(&key, &sealed::context("passkey-offer", pool_id), &offer)
    }

    /// Opens an offer of `pool_id`'s page; `None` if it is not one, or
    /// expired.
    pub fn open_passkey_offer(&self, pool_id: &str, text: &str) -> Option<PasskeyOffer> {
        let key = self.sealing.get()?;
        let o: PasskeyOffer = sealed::open(&key, &sealed::context("passkey-offer", pool_id), text)?;
        (o.expires_at > crate::clock::now_millis()).then_some(o)
    }
}

//! Where the user flows call the pool's triggers (`crate::service::triggers`):
//! `PostConfirmation`, `PreAuthentication`, `PostAuthentication` and
//! `PreTokenGeneration` (`PreSignUp` is `Triggers::pre_sign_up`, which the
//! admin service calls too).
//!
//! Each hook is a no-op costing one local read when the pool has no such
//! trigger. A trigger runs on the node preparing the request, before
//! anything is proposed (the `Pre*` ones) or after the write is durable
//! (the `Post*` notices). A `Post*` failure reaches the caller as
//! `UserLambdaValidationException` even though the write stays, as in
//! Cognito.

use serde_json::json;

use super::AuthService;
use crate::model::app_client::AppClient;
use crate::model::pool::UserPool;
use crate::model::triggers::TriggerKind;
use crate::model::user::User;
use crate::service::tokens::{IssuedTokens, Lineage, OAuthGrant};
use crate::service::triggers::events::{self, Caller};
use crate::service::{Origin, ServiceError};

/// Why tokens are being minted: the `triggerSource` suffix of
/// `PreTokenGeneration`, and whether a `PostAuthentication` comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource<'a> {
    /// A sign-in that just completed (password, MFA, federation): a new
    /// token family.
    Authentication,
    /// A sign-in completed by answering `NEW_PASSWORD_REQUIRED`.
    NewPasswordChallenge,
    /// `REFRESH_TOKEN_AUTH` within the family `origin_jti`: no
    /// authentication happened, so no `PostAuthentication`.
    RefreshTokens {
        /// The family of the refresh token.
        origin_jti: &'a str,
        /// The OAuth scopes the family was granted (its refresh token's
        /// `scope`); empty for a family started through the API.
        scope: &'a str,
    },
}

impl<'a> TokenSource<'a> {
    fn trigger_source(self) -> &'static str {
        match self {
            TokenSource::Authentication => "TokenGeneration_Authentication",
            TokenSource::NewPasswordChallenge => "TokenGeneration_NewPasswordChallenge",
            TokenSource::RefreshTokens { .. } => "TokenGeneration_RefreshTokens",
        }
    }

    fn origin_jti(self) -> Option<&'a str> {
        match self {
            TokenSource::RefreshTokens { origin_jti, .. } => Some(origin_jti),
            _ => None,
        }
    }
}

/// Why `PostConfirmation` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmSource {
    /// A sign-up confirmed by its code, or auto-confirmed by `PreSignUp`.
    ConfirmSignUp,
    /// A forgotten password reset with its code.
    ConfirmForgotPassword,
}

impl AuthService {
    /// `PostConfirmation`, once the confirmation is durable.
    pub(crate) async fn post_confirmation(
        &self,
        pool: &UserPool,
        client_id: &str,
        user: &User,
        origin: &Origin,
        source: ConfirmSource,
    ) -> Result<(), ServiceError> {
        let trigger_source = match source {
            ConfirmSource::ConfirmSignUp => "PostConfirmation_ConfirmSignUp",
            ConfirmSource::ConfirmForgotPassword => "PostConfirmation_ConfirmForgotPassword",
        };
        let request = json!({
            "userAttributes": events::user_attributes(user),
            "clientMetadata": events::string_map(&origin.client_metadata),
        });
        self.notify(
            pool,
            client_id,
            user,
            TriggerKind::PostConfirmation,
            trigger_source,
            request,
        )
        .await
    }

    /// `PreAuthentication`, before a password is checked: a refusal ends
    /// the sign-in without counting a failure. An unknown user is sent
    /// with `userNotFound: true`, so that its answer takes as long.
    pub(crate) async fn pre_authentication(
        &self,
        pool: &UserPool,
        client_id: &str,
        username: &str,
        user: Option<&User>,
        origin: &Origin,
    ) -> Result<(), ServiceError> {
        if self
            .triggers
            .configured(&pool.id, TriggerKind::PreAuthentication)?
            .is_none()
        {
            return Ok(());
        }
        let request = json!({
            "userAttributes": user.map_or_else(|| json!({}), events::user_attributes),
            "validationData": events::string_map(&origin.client_metadata),
            "userNotFound": user.is_none(),
        });
        let name = user.map_or(username, |u| u.username.as_str());
        let caller = Caller {
            pool_id: &pool.id,
            username: name,
            client_id,
        };
        let event = events::event("PreAuthentication_Authentication", caller, request, "1");
        self.triggers
            .call(&pool.id, TriggerKind::PreAuthentication, &event)
            .await
            .map(|_| ())
    }

    /// Ends a successful sign-in: `PostAuthentication` (unless this is a
    /// refresh), then `PreTokenGeneration`, then the tokens.
    pub(crate) async fn issue_tokens(
        &self,
        pool: &UserPool,
        client: &AppClient,
        user: &User,
        auth_time: i64,
        source: TokenSource<'_>,
        origin: &Origin,
    ) -> Result<IssuedTokens, ServiceError> {
        let device = self.device_for_tokens(pool, user, source, origin)?;
        let mut tokens = self
            .mint_tokens(pool, client, user, auth_time, source, device.key.as_deref(), origin)
            .await?;
        tokens.new_device = device.new;
        Ok(tokens)
    }

    /// [`Self::issue_tokens`] for a sign-in of a pool without triggers,
    /// started on a blocking thread before the sign-in's last write has
    /// committed. The signing (three Ed25519 signatures and the claims,
    /// about a tenth of a millisecond) then runs on the other core while
    /// this one carries the write and the WAL fsync waits on the disk, and
    /// the tokens are handed out only if the write succeeds. `None` when
    /// the pool has triggers: those tell a webhook about the sign-in, which
    /// must not happen before it is decided. The blocking thread, not a
    /// task: a task spawned here would sit beside the Raft core's task in
    /// this worker's queue, and the previous attempt with `join!` delayed
    /// the write by the signing's length.
    pub(crate) fn mint_in_background(
        &self,
        pool: &UserPool,
        client: &AppClient,
        user: &User,
        auth_time: i64,
        origin: &Origin,
    ) -> Result<Option<tokio::task::JoinHandle<Result<IssuedTokens, ServiceError>>>, ServiceError> {
        if self.triggers.config(&pool.id)?.is_some() {
            return Ok(None);
        }
        let (this, pool, client, user, origin) =
            (self.clone(), pool.clone(), client.clone(), user.clone(), origin.clone());
        Ok(Some(tokio::task::spawn_blocking(move || {
            let source = TokenSource::Authentication;
            let device = this.device_for_tokens(&pool, &user, source, &origin)?;
            let lineage = Lineage {
                origin: source.origin_jti(),
                device_key: device.key.as_deref(),
                ..Lineage::default()
            };
            let mut tokens = this.tokens.mint(&pool, &client, &user, auth_time, lineage)?;
            tokens.new_device = device.new;
            Ok(tokens)
        })))
    }

    /// [`Self::issue_tokens`] once the device is decided: the triggers,
    /// then the signing.
    #[allow(clippy::too_many_arguments)]
    async fn mint_tokens(
        &self,
        pool: &UserPool,
        client: &AppClient,
        user: &User,
        auth_time: i64,
        source: TokenSource<'_>,
        device_key: Option<&str>,
        origin: &Origin,
    ) -> Result<IssuedTokens, ServiceError> {
        let oauth_scopes: Vec<String> = match source {
            TokenSource::RefreshTokens { scope, .. } => {
                scope.split(' ').filter(|s| !s.is_empty()).map(String::from).collect()
            }
            _ => Vec::new(),
        };
        let lineage = Lineage {
            origin: source.origin_jti(),
            device_key,
            oauth: (!oauth_scopes.is_empty()).then_some(OAuthGrant {
                scopes: &oauth_scopes,
                nonce: None,
            }),
            ..Lineage::default()
        };
        let Some(config) = self.triggers.config(&pool.id)? else {
            return self.tokens.mint(pool, client, user, auth_time, lineage);
        };
        if !matches!(source, TokenSource::RefreshTokens { .. }) && config.url(TriggerKind::PostAuthentication).is_some()
        {
            let request = json!({
                "userAttributes": events::user_attributes(user),
                "newDeviceUsed": device_key.is_some() && origin.device_key.is_empty(),
                "clientMetadata": events::string_map(&origin.client_metadata),
            });
            self.notify(
                pool,
                &client.client_id,
                user,
                TriggerKind::PostAuthentication,
                "PostAuthentication_Authentication",
                request,
            )
            .await?;
        }
        if config.url(TriggerKind::PreTokenGeneration).is_none() {
            return self.tokens.mint(pool, client, user, auth_time, lineage);
        }
        let m = self.tokens.memberships(&pool.id, &user.sub)?;
        let version = config.pre_token_version;
        let scopes = crate::auth::claims::scope(&m.permissions);
        let v2 = version == crate::model::triggers::PreTokenVersion::V2;
        let request = events::pre_token_request(
            user,
            &m.names,
            &m.roles,
            &origin.client_metadata,
            v2.then_some(scopes.as_str()),
        );
        let caller = Caller {
            pool_id: &pool.id,
            username: &user.username,
            client_id: &client.client_id,
        };
        let version_str = if v2 { "2" } else { "1" };
        let event = events::event(source.trigger_source(), caller, request, version_str);
        let response = self
            .triggers
            .call_with(&pool.id, &config, TriggerKind::PreTokenGeneration, &event)
            .await?;
        let overrides = events::claim_overrides(&response, version)?;
        self.tokens
            .mint_with(pool, client, user, auth_time, lineage, &overrides)
    }

    /// Calls a notice trigger (`Post*`) about `user`, if configured.
    async fn notify(
        &self,
        pool: &UserPool,
        client_id: &str,
        user: &User,
        kind: TriggerKind,
        trigger_source: &str,
        request: serde_json::Value,
    ) -> Result<(), ServiceError> {
        if self.triggers.configured(&pool.id, kind)?.is_none() {
            return Ok(());
        }
        let caller = Caller {
            pool_id: &pool.id,
            username: &user.username,
            client_id,
        };
        let event = events::event(trigger_source, caller, request, "1");
        self.triggers.call(&pool.id, kind, &event).await.map(|_| ())
    }
}

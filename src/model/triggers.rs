//! User-pool triggers: Cognito's `LambdaConfig`, with HTTP(S) webhooks in
//! place of Lambda functions.
//!
//! A pool names, per trigger, the URL that the node handling a request
//! POSTs Cognito's event JSON to, and keeps one signing secret (sealed
//! under the cluster sealing key, like client secrets) with which every
//! request is signed, so a receiver can tell Tessera's calls from anyone
//! else's. Triggers run while a request is prepared, on the node that
//! received it, never in `apply`: a trigger's answer becomes part of the
//! command, as the clock and random ids do.

use serde::{Deserialize, Serialize};

use super::app_client::SealedSecret;
use super::ValidationError;

/// Default time a trigger may take, as Cognito's 5 s.
pub const DEFAULT_TIMEOUT_MS: u32 = 5_000;
/// Bounds of a pool's trigger timeout.
pub const TIMEOUT_MS_RANGE: std::ops::RangeInclusive<u32> = 100..=30_000;
/// Longest trigger URL.
pub const MAX_URL_CHARS: usize = 2_048;
/// Wrong `CUSTOM_AUTH` answers after which a sign-in fails, by default.
pub const DEFAULT_CUSTOM_AUTH_MAX_WRONG: u32 = 3;
/// Bounds of that setting.
pub const CUSTOM_AUTH_MAX_WRONG_RANGE: std::ops::RangeInclusive<u32> = 1..=10;
/// Shortest and longest signing secret, in bytes.
pub const SECRET_BYTES_RANGE: std::ops::RangeInclusive<usize> = 16..=512;

/// The triggers Tessera calls, by Cognito's `LambdaConfig` field name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TriggerKind {
    /// Before a user is created by `SignUp` or `AdminCreateUser`; may
    /// refuse it, auto-confirm it and auto-verify its email or phone.
    PreSignUp,
    /// After a sign-up or a forgotten password is confirmed.
    PostConfirmation,
    /// Before a password is checked; may refuse the sign-in.
    PreAuthentication,
    /// After a successful sign-in, before its tokens are returned.
    PostAuthentication,
    /// Before tokens are minted; may add, override or suppress claims and
    /// override groups.
    PreTokenGeneration,
    /// Before a code or temporary password message is written; may replace
    /// its text.
    CustomMessage,
    /// `CUSTOM_AUTH`: decides the next challenge, or success or failure.
    DefineAuthChallenge,
    /// `CUSTOM_AUTH`: makes a challenge.
    CreateAuthChallenge,
    /// `CUSTOM_AUTH`: checks an answer.
    VerifyAuthChallengeResponse,
    /// Lazy migration of a user the pool does not have yet.
    UserMigration,
}

impl TriggerKind {
    /// Every trigger, in `LambdaConfig` order.
    pub const ALL: [TriggerKind; 10] = [
        TriggerKind::PreSignUp,
        TriggerKind::PostConfirmation,
        TriggerKind::PreAuthentication,
        TriggerKind::PostAuthentication,
        TriggerKind::PreTokenGeneration,
        TriggerKind::CustomMessage,
        TriggerKind::DefineAuthChallenge,
        TriggerKind::CreateAuthChallenge,
        TriggerKind::VerifyAuthChallengeResponse,
        TriggerKind::UserMigration,
    ];

    /// Cognito's `LambdaConfig` field name (also the metric label).
    pub fn as_cognito(self) -> &'static str {
        match self {
            TriggerKind::PreSignUp => "PreSignUp",
            TriggerKind::PostConfirmation => "PostConfirmation",
            TriggerKind::PreAuthentication => "PreAuthentication",
            TriggerKind::PostAuthentication => "PostAuthentication",
            TriggerKind::PreTokenGeneration => "PreTokenGeneration",
            TriggerKind::CustomMessage => "CustomMessage",
            TriggerKind::DefineAuthChallenge => "DefineAuthChallenge",
            TriggerKind::CreateAuthChallenge => "CreateAuthChallenge",
            TriggerKind::VerifyAuthChallengeResponse => "VerifyAuthChallengeResponse",
            TriggerKind::UserMigration => "UserMigration",
        }
    }

    /// Whether calling the trigger twice for one event does no harm, so a
    /// failed attempt may be retried within the timeout. The notices
    /// (`Post*`) and `CreateAuthChallenge` (which may send a code) are
    /// called once.
    pub fn idempotent(self) -> bool {
        !matches!(
            self,
            TriggerKind::PostConfirmation | TriggerKind::PostAuthentication | TriggerKind::CreateAuthChallenge
        )
    }
}

/// Which event shape `PreTokenGeneration` receives (Cognito's
/// `PreTokenGenerationConfig.LambdaVersion`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PreTokenVersion {
    /// `V1_0`: id-token claims and groups.
    #[default]
    V1,
    /// `V2_0`: also access-token claims and scopes.
    V2,
}

impl PreTokenVersion {
    /// Cognito's string.
    pub fn as_cognito(self) -> &'static str {
        match self {
            PreTokenVersion::V1 => "V1_0",
            PreTokenVersion::V2 => "V2_0",
        }
    }

    /// Parses `V1_0` or `V2_0`; empty is `V1_0`.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        match s {
            "" | "V1_0" => Ok(PreTokenVersion::V1),
            "V2_0" => Ok(PreTokenVersion::V2),
            other => Err(ValidationError::new(
                "lambda_config.pre_token_generation_config.lambda_version",
                format!("{other:?} is not V1_0 or V2_0"),
            )),
        }
    }
}

/// A pool's triggers as stored and replicated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LambdaConfig {
    /// `(trigger, url)`, at most one per trigger, in [`TriggerKind::ALL`] order.
    pub urls: Vec<(TriggerKind, String)>,
    /// Event shape of `PreTokenGeneration`.
    pub pre_token_version: PreTokenVersion,
    /// Time one call may take, retries included.
    pub timeout_ms: u32,
    /// The signing secret, sealed; `None` only when no trigger is set.
    pub secret: Option<SealedSecret>,
    /// Wrong answers to `CUSTOM_CHALLENGE` after which the sign-in fails
    /// (whatever DefineAuthChallenge says).
    pub custom_auth_max_wrong_answers: u32,
    /// Proposer's clock (Unix ms) of the last change.
    pub modified_at: i64,
}

impl LambdaConfig {
    /// The URL configured for `kind`.
    pub fn url(&self, kind: TriggerKind) -> Option<&str> {
        self.urls.iter().find(|(k, _)| *k == kind).map(|(_, u)| u.as_str())
    }

    /// Whether any trigger is configured.
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// Checks the URLs and the timeout, and that a secret exists when a
    /// trigger does. URLs must be `http://` or `https://` with a host;
    /// a full parse happens again when the node calls one.
    pub fn validate(&self) -> Result<(), ValidationError> {
        for (i, (kind, url)) in self.urls.iter().enumerate() {
            if self.urls[..i].iter().any(|(k, _)| k == kind) {
                return Err(ValidationError::new(
                    "lambda_config",
                    format!("{} is given twice", kind.as_cognito()),
                ));
            }
            validate_url(*kind, url)?;
        }
        if !TIMEOUT_MS_RANGE.contains(&self.timeout_ms) {
            return Err(ValidationError::new(
                "lambda_config.timeout_ms",
                format!(
                    "must be {} to {} milliseconds",
                    TIMEOUT_MS_RANGE.start(),
                    TIMEOUT_MS_RANGE.end()
                ),
            ));
        }
        if !CUSTOM_AUTH_MAX_WRONG_RANGE.contains(&self.custom_auth_max_wrong_answers) {
            return Err(ValidationError::new(
                "lambda_config.custom_auth_max_wrong_answers",
                format!(
                    "must be {} to {}",
                    CUSTOM_AUTH_MAX_WRONG_RANGE.start(),
                    CUSTOM_AUTH_MAX_WRONG_RANGE.end()
                ),
            ));
        }
        if !self.urls.is_empty() && self.secret.is_none() {
            return Err(ValidationError::new(
                "lambda_config.signing_secret",
                "required when a trigger is configured: every trigger request is signed with it",
            ));
        }
        Ok(())
    }
}

/// A trigger URL: `http://` or `https://`, a host, no user info, no
/// fragment, at most [`MAX_URL_CHARS`].
pub fn validate_url(kind: TriggerKind, url: &str) -> Result<(), ValidationError> {
    let field = "lambda_config";
    let bad = |why: &str| ValidationError::new(field, format!("{}: {url:?} {why}", kind.as_cognito()));
    if url.len() > MAX_URL_CHARS {
        return Err(ValidationError::new(
            field,
            format!("{}: a URL is at most {MAX_URL_CHARS} characters", kind.as_cognito()),
        ));
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| bad("must start with http:// or https:// (a webhook stands in for a Lambda ARN)"))?;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.is_empty() {
        return Err(bad("has no host"));
    }
    if authority.contains('@') {
        return Err(bad(
            "must not carry user info; requests are authenticated by their signature",
        ));
    }
    if url.contains('#') || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("must not contain a fragment, spaces or control characters"));
    }
    Ok(())
}

/// A signing secret as an operator gives it.
pub fn validate_secret(secret: &str) -> Result<(), ValidationError> {
    if !SECRET_BYTES_RANGE.contains(&secret.len()) {
        return Err(ValidationError::new(
            "lambda_config.signing_secret",
            format!(
                "must be {} to {} bytes; 32 random bytes or more is a good choice",
                SECRET_BYTES_RANGE.start(),
                SECRET_BYTES_RANGE.end()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(urls: &[(TriggerKind, &str)]) -> LambdaConfig {
        LambdaConfig {
            urls: urls.iter().map(|(k, u)| (*k, u.to_string())).collect(),
            pre_token_version: PreTokenVersion::V1,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            secret: Some(SealedSecret {
                nonce: [0; 12],
                ciphertext: vec![1; 32],
            }),
            custom_auth_max_wrong_answers: DEFAULT_CUSTOM_AUTH_MAX_WRONG,
            modified_at: 0,
        }
    }

    #[test]
    fn urls_are_checked() {
        assert!(config(&[(TriggerKind::PreSignUp, "http://127.0.0.1:9/hook")])
            .validate()
            .is_ok());
        assert!(config(&[(TriggerKind::PreSignUp, "https://hooks.example.com")])
            .validate()
            .is_ok());
        for bad in [
            "arn:aws:lambda:eu-west-1:1:function:f",
            "ftp://x/",
            "http:///path",
            "http://user:pw@host/",
            "http://host/a b",
            "http://host/#frag",
        ] {
            let err = config(&[(TriggerKind::PreSignUp, bad)]).validate().unwrap_err();
            assert!(err.reason.contains("PreSignUp"), "{bad}: {err}");
        }
        let long = format!("http://h/{}", "a".repeat(MAX_URL_CHARS));
        assert!(config(&[(TriggerKind::PreSignUp, &long)]).validate().is_err());
        let twice = config(&[
            (TriggerKind::PreSignUp, "http://a/"),
            (TriggerKind::PreSignUp, "http://b/"),
        ]);
        assert!(twice.validate().unwrap_err().reason.contains("twice"));
    }

    #[test]
    fn a_trigger_needs_a_secret_and_a_sane_timeout() {
        let mut c = config(&[(TriggerKind::PreSignUp, "http://a/")]);
        c.secret = None;
        assert_eq!(c.validate().unwrap_err().field, "lambda_config.signing_secret");
        let mut c = config(&[]);
        c.secret = None;
        assert!(c.validate().is_ok(), "no trigger, no secret needed");
        let mut c = config(&[]);
        c.timeout_ms = 50;
        assert!(c.validate().is_err());
        c.timeout_ms = 30_001;
        assert!(c.validate().is_err());
        assert!(validate_secret("short").is_err());
        assert!(validate_secret(&"s".repeat(32)).is_ok());
    }

    #[test]
    fn only_side_effect_free_triggers_are_retried() {
        assert!(TriggerKind::PreSignUp.idempotent());
        assert!(TriggerKind::PreTokenGeneration.idempotent());
        assert!(!TriggerKind::PostAuthentication.idempotent());
        assert!(!TriggerKind::PostConfirmation.idempotent());
        assert!(!TriggerKind::CreateAuthChallenge.idempotent());
    }
}

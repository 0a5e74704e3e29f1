//! Calling a pool's triggers: webhooks in place of Cognito's Lambda
//! functions.
//!
//! # The request
//!
//! The node handling a request POSTs Cognito's event JSON (see
//! [`events`]) to the trigger's URL, signed as the courier's webhook is
//! (`crate::courier::http`): `x-tessera-timestamp` and
//! `x-tessera-signature: sha256=HMAC-SHA256(pool secret, "<ts>.<body>")`,
//! plus `x-tessera-trigger: <triggerSource>`. A receiver checks the
//! signature in constant time and the timestamp against its clock.
//!
//! # The answer
//!
//! A `2xx` answer carries the event back with its `response` filled in, as
//! a Lambda returns it (a body that is just the `response` object is
//! accepted too). Any other status refuses the flow: the reason is the
//! body's `errorMessage` (a Lambda's error, as Cognito shows it) or the
//! status. The flow then fails with `UserLambdaValidationException:
//! <Trigger> failed with error <reason>.`, as in Cognito.
//!
//! # Never hanging
//!
//! One call, retries included, fits in the pool's timeout (5 s by
//! default); the response body is bounded. A trigger whose repeat is
//! harmless ([`TriggerKind::idempotent`]) is tried again after a
//! connection failure, a timeout of the attempt or a `5xx`, while time is
//! left. Calls and their latencies per trigger and outcome are counted in
//! `tessera_trigger_calls_total` and `tessera_trigger_latency_seconds`.

pub mod custom_message;
pub mod events;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{ErrorKind, ServiceError};
use crate::auth::sealing::{SealingCell, SealingKey};
use crate::courier::http::{BodyUse, Target};
use crate::model::app_client::SealedSecret;
use crate::model::triggers::{LambdaConfig, TriggerKind};
use crate::raft::RaftNode;

/// The header naming the event's `triggerSource`.
pub const TRIGGER_HEADER: &str = "x-tessera-trigger";
/// Largest answer read from a trigger.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// Longest reason quoted from a refusing trigger.
const MAX_REASON_CHARS: usize = 512;
/// Attempts of an idempotent trigger within its timeout.
const MAX_ATTEMPTS: u32 = 3;
/// Parsed targets kept; beyond it the cache starts over.
const MAX_CACHED_TARGETS: usize = 1024;

/// The additional data a pool's trigger secret is sealed under.
pub fn secret_context(pool_id: &str) -> Vec<u8> {
    format!("tessera/trigger-secret|{pool_id}").into_bytes()
}

/// Seals an operator's signing secret for `pool_id`.
pub fn seal_secret(key: &SealingKey, pool_id: &str, secret: &str) -> SealedSecret {
    key.seal_bytes(
        &secret_context(pool_id),
        secret.as_bytes(),
        crate::clock::random_bytes::<12>(),
    )
}

/// Calls triggers for the services of one node.
#[derive(Clone)]
pub struct Triggers {
    node: Arc<RaftNode>,
    sealing: Arc<SealingCell>,
    /// Parsed URLs (and, for `https`, their TLS connectors, which load
    /// the CA bundle once rather than per call).
    targets: Arc<Mutex<BTreeMap<String, Arc<Target>>>>,
}

/// How a call ended, for the metrics.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CallOutcome {
    Ok,
    Refused,
    Failed,
    Timeout,
}

impl CallOutcome {
    fn label(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Refused => "refused",
            CallOutcome::Failed => "failed",
            CallOutcome::Timeout => "timeout",
        }
    }
}

impl Triggers {
    /// The trigger caller of `node`.
    pub fn new(node: Arc<RaftNode>, sealing: Arc<SealingCell>) -> Self {
        Triggers {
            node,
            sealing,
            targets: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    /// The pool's triggers as applied on this node.
    pub fn config(&self, pool_id: &str) -> Result<Option<LambdaConfig>, ServiceError> {
        Ok(self.node.store().pool_triggers(pool_id)?)
    }

    /// Whether `kind` is configured for `pool_id`, and with what.
    pub fn configured(&self, pool_id: &str, kind: TriggerKind) -> Result<Option<LambdaConfig>, ServiceError> {
        Ok(self.config(pool_id)?.filter(|c| c.url(kind).is_some()))
    }

    /// Calls `kind` with `event` if the pool configured it: `Ok(None)`
    /// when it did not, else the event's `response` object as answered.
    /// Fails with `UserLambdaValidationException` when the trigger refuses,
    /// fails, answers something that is not JSON, or runs out of time.
    pub async fn call(&self, pool_id: &str, kind: TriggerKind, event: &Value) -> Result<Option<Value>, ServiceError> {
        let Some(config) = self.configured(pool_id, kind)? else {
            return Ok(None);
        };
        self.call_with(pool_id, &config, kind, event).await.map(Some)
    }

    /// [`call`](Self::call) with a configuration already read.
    pub async fn call_with(
        &self,
        pool_id: &str,
        config: &LambdaConfig,
        kind: TriggerKind,
        event: &Value,
    ) -> Result<Value, ServiceError> {
        self.measured(pool_id, config, kind, event).await.map_err(|(_, e)| e)
    }

    /// [`call_with`](Self::call_with) for a trigger whose refusal is an
    /// answer rather than a failure (`UserMigration` saying "no such
    /// user"): `Ok(None)` when the receiver answered a status other than
    /// `2xx`. Timeouts, unreachable receivers and unusable answers still
    /// fail.
    pub async fn call_or_refusal(
        &self,
        pool_id: &str,
        config: &LambdaConfig,
        kind: TriggerKind,
        event: &Value,
    ) -> Result<Option<Value>, ServiceError> {
        match self.measured(pool_id, config, kind, event).await {
            Ok(v) => Ok(Some(v)),
            Err((CallOutcome::Refused, _)) => Ok(None),
            Err((_, e)) => Err(e),
        }
    }

    /// The attempts of one call, counted and timed in the metrics.
    #[tracing::instrument(skip_all, fields(pool_id = %pool_id, trigger = kind.as_cognito()))]
    async fn measured(
        &self,
        pool_id: &str,
        config: &LambdaConfig,
        kind: TriggerKind,
        event: &Value,
    ) -> Result<Value, (CallOutcome, ServiceError)> {
        let started = Instant::now();
        let result = self.attempts(pool_id, config, kind, event).await;
        let outcome = match &result {
            Ok(_) => CallOutcome::Ok,
            Err((outcome, _)) => *outcome,
        };
        let m = self.node.metrics();
        m.trigger_calls
            .get_or_create(&[("trigger", kind.as_cognito()), ("outcome", outcome.label())])
            .inc();
        m.trigger_latency
            .get_or_create(&[("trigger", kind.as_cognito())])
            .observe(started.elapsed().as_secs_f64());
        if let Err((_, e)) = &result {
            tracing::info!(reason = %e.message, "trigger failed");
        }
        result
    }

    async fn attempts(
        &self,
        pool_id: &str,
        config: &LambdaConfig,
        kind: TriggerKind,
        event: &Value,
    ) -> Result<Value, (CallOutcome, ServiceError)> {
        let name = kind.as_cognito();
        // A receiver that cannot be reached in time is Unavailable (worth
        // a retry later); one that refuses or answers nonsense is not.
        let failed_as = |outcome: CallOutcome, kind: ErrorKind, why: String| {
            (
                outcome,
                ServiceError::new(
                    kind,
                    "UserLambdaValidationException",
                    format!("{name} failed with error {why}."),
                ),
            )
        };
        let failed = |outcome: CallOutcome, why: String| failed_as(outcome, ErrorKind::FailedPrecondition, why);
        let url = config
            .url(kind)
            .ok_or_else(|| failed(CallOutcome::Failed, "no URL is configured".into()))?;
        let target = self.target(url).map_err(|e| failed(CallOutcome::Failed, e.message))?;
        let secret = self
            .secret(pool_id, config)
            .map_err(|e| failed(CallOutcome::Failed, e.message))?;
        let body = serde_json::to_vec(event).map_err(|e| failed(CallOutcome::Failed, format!("encoding: {e}")))?;
        let source = event.get("triggerSource").and_then(Value::as_str).unwrap_or(name);
        let extra = [(TRIGGER_HEADER, source.to_string())];
        let timeout = Duration::from_millis(u64::from(config.timeout_ms));
        let deadline = Instant::now() + timeout;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(failed_as(
                    CallOutcome::Timeout,
                    ErrorKind::Unavailable,
                    format!("timed out after {} ms", config.timeout_ms),
                ));
            }
            let retry_left = kind.idempotent() && attempt < MAX_ATTEMPTS;
            match target
                .post_signed(&secret, &extra, body.clone(), left, BodyUse::Read(MAX_RESPONSE_BYTES))
                .await
            {
                Ok(reply) if reply.status.is_success() => {
                    let bytes = reply.body.unwrap_or_default();
                    return parse_answer(&bytes).map_err(|why| failed(CallOutcome::Failed, why));
                }
                Ok(reply) if reply.status.is_server_error() && retry_left => continue,
                Ok(reply) => {
                    let reason = reply
                        .body
                        .as_deref()
                        .and_then(error_message)
                        .unwrap_or_else(|| format!("status {}", reply.status.as_u16()));
                    return Err(failed(CallOutcome::Refused, reason));
                }
                Err(e) if e.retryable && retry_left => {
                    // Do not spin against a receiver that refuses at once.
                    tokio::time::sleep(Duration::from_millis(20).min(left / 4)).await;
                    continue;
                }
                Err(e) => {
                    let outcome = if e.message.contains("timed out") {
                        CallOutcome::Timeout
                    } else {
                        CallOutcome::Failed
                    };
                    return Err(failed_as(outcome, ErrorKind::Unavailable, e.message));
                }
            }
        }
    }

    /// `PreSignUp` (`PreSignUp_SignUp`, or `PreSignUp_AdminCreateUser`
    /// when `admin`): may refuse the user, auto-confirm it (a sign-up
    /// only) and auto-verify its email or phone number. The default
    /// answer when the pool has no such trigger.
    #[allow(clippy::too_many_arguments, reason = "the fields of Cognito's PreSignUp event")]
    pub async fn pre_sign_up(
        &self,
        pool_id: &str,
        client_id: &str,
        username: &str,
        attributes: &BTreeMap<String, String>,
        validation_data: &BTreeMap<String, String>,
        client_metadata: &BTreeMap<String, String>,
        admin: bool,
    ) -> Result<events::PreSignUpAnswer, ServiceError> {
        let Some(config) = self.configured(pool_id, TriggerKind::PreSignUp)? else {
            return Ok(events::PreSignUpAnswer::default());
        };
        let request = serde_json::json!({
            "userAttributes": events::string_map(attributes),
            "validationData": events::string_map(validation_data),
            "clientMetadata": events::string_map(client_metadata),
        });
        let caller = events::Caller {
            pool_id,
            username,
            client_id,
        };
        let source = if admin {
            "PreSignUp_AdminCreateUser"
        } else {
            "PreSignUp_SignUp"
        };
        let event = events::event(source, caller, request, "1");
        let response = self.call_with(pool_id, &config, TriggerKind::PreSignUp, &event).await?;
        events::pre_sign_up_answer(&response)
    }

    fn target(&self, url: &str) -> Result<Arc<Target>, crate::courier::transport::DeliveryError> {
        let mut cache = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = cache.get(url) {
            return Ok(t.clone());
        }
        let t = Arc::new(Target::parse(url, None)?);
        if cache.len() >= MAX_CACHED_TARGETS {
            cache.clear();
        }
        cache.insert(url.to_string(), t.clone());
        Ok(t)
    }

    fn secret(&self, pool_id: &str, config: &LambdaConfig) -> Result<Vec<u8>, ServiceError> {
        let sealed = config
            .secret
            .as_ref()
            .ok_or_else(|| ServiceError::internal("the pool's triggers have no signing secret"))?;
        let key = super::sealing_key(&self.sealing)?;
        key.open_bytes(&secret_context(pool_id), sealed).ok_or_else(|| {
            ServiceError::internal("the trigger signing secret does not open with this node's sealing key")
        })
    }
}

/// The `response` object of a `2xx` answer: the event returned with its
/// `response` filled, or just that object; an empty body is an empty
/// response.
pub fn parse_answer(bytes: &[u8]) -> Result<Value, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("its answer is not JSON: {e}"))?;
    let Value::Object(mut map) = v else {
        return Err("its answer is not a JSON object".into());
    };
    if map.contains_key("triggerSource") || map.contains_key("request") {
        return match map.remove("response") {
            None | Some(Value::Null) => Ok(Value::Object(Default::default())),
            Some(r @ Value::Object(_)) => Ok(r),
            Some(_) => Err("its `response` is not a JSON object".into()),
        };
    }
    Ok(Value::Object(map))
}

/// A refusing receiver's reason: `errorMessage` of a JSON body, or a short
/// plain-text body; printable characters only, bounded.
fn error_message(body: &[u8]) -> Option<String> {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(v) => v.get("errorMessage").and_then(Value::as_str)?.to_string(),
        Err(_) => std::str::from_utf8(body).ok()?.trim().to_string(),
    };
    let clean: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_REASON_CHARS)
        .collect();
    (!clean.is_empty()).then_some(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_as_lambda_returns_them() {
        let full = br#"{"triggerSource":"PreSignUp_SignUp","request":{},"response":{"autoConfirmUser":true}}"#;
        assert_eq!(parse_answer(full).unwrap()["autoConfirmUser"], true);
        assert_eq!(
            parse_answer(br#"{"autoConfirmUser":true}"#).unwrap()["autoConfirmUser"],
            true
        );
        assert!(parse_answer(b"").unwrap().as_object().unwrap().is_empty());
        assert!(parse_answer(br#"{"triggerSource":"x","response":null}"#)
            .unwrap()
            .is_object());
        assert!(parse_answer(b"[1]").is_err());
        assert!(parse_answer(b"not json").is_err());
        assert!(parse_answer(br#"{"triggerSource":"x","response":7}"#).is_err());
    }

    #[test]
    fn a_refusal_reason_is_bounded_and_printable() {
        assert_eq!(
            error_message(br#"{"errorMessage":"no \u0007thanks"}"#).unwrap(),
            "no thanks"
        );
        assert_eq!(error_message(b"  plain words \n").unwrap(), "plain words");
        assert!(error_message(b"").is_none());
        assert!(error_message(br#"{"other":1}"#).is_none());
        let long = format!(r#"{{"errorMessage":"{}"}}"#, "x".repeat(5000));
        assert_eq!(error_message(long.as_bytes()).unwrap().len(), MAX_REASON_CHARS);
    }
}

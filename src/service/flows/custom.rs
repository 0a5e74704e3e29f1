//! `CUSTOM_AUTH`: sign-in driven by the pool's three custom-auth triggers,
//! as in Cognito.
//!
//! `InitiateAuth(CUSTOM_AUTH, USERNAME)` asks DefineAuthChallenge what to
//! do with an empty history: issue tokens, fail, or pose a
//! `CUSTOM_CHALLENGE`, which CreateAuthChallenge makes (public parameters
//! for the client, private ones for the check, metadata for the history).
//! Each `RespondToAuthChallenge(CUSTOM_CHALLENGE, USERNAME, ANSWER)` goes
//! to VerifyAuthChallengeResponse, its result joins the history, and
//! DefineAuthChallenge decides again: as many rounds as it asks for, up to
//! [`MAX_ROUNDS`].
//!
//! # The session
//!
//! Cognito keeps the history and the private parameters on its side. Here
//! they travel in the session, sealed (ChaCha20-Poly1305 under the cluster
//! sealing key, bound to the pool and the app client), so any node can
//! continue the sign-in and the client can neither read the expected
//! answer nor change the history. The session expires with the pool's
//! challenge-session lifetime, renewed at each round, and names the
//! user's credential digest (password hash, sign-out times) as the MFA
//! sessions do: a password change, a reset or a global sign-out ends it.
//!
//! # Wrong answers
//!
//! A wrong answer is a replicated failed sign-in, evaluated under a lockout
//! reservation like a wrong password, so the user's lockout bounds the
//! guesses cluster-wide even if a client replays an older session; and
//! after the pool's `custom_auth_max_wrong_answers` in one session the
//! sign-in fails, whatever DefineAuthChallenge says.
//!
//! # Unknown users
//!
//! With `PreventUserExistenceErrors` an unknown user goes through the same
//! triggers with `userNotFound: true` (so a define step can pose a decoy
//! challenge) and can never be issued tokens; without it the answer is
//! `UserNotFoundException`.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::hooks::TokenSource;
use super::signin::{param, required, AuthAnswer};
use super::{AuthService, Caller};
use crate::model::app_client::AppClient;
use crate::model::auth_event::AuthEventType;
use crate::model::mfa::session_binding;
use crate::model::pool::UserPool;
use crate::model::triggers::{LambdaConfig, TriggerKind};
use crate::model::user::{User, UserStatus};
use crate::service::triggers::events::{self, Caller as EventCaller};
use crate::service::{Origin, ServiceError};

/// The one challenge custom authentication poses.
pub const CUSTOM_CHALLENGE: &str = "CUSTOM_CHALLENGE";
/// Most rounds in one sign-in.
pub const MAX_ROUNDS: usize = 16;
/// Largest session state before sealing.
const MAX_STATE_BYTES: usize = 12 * 1024;
/// Longest `ANSWER`.
const MAX_ANSWER_BYTES: usize = 4096;
/// Marks a custom-auth session (sealed state, not a signed token).
const SESSION_PREFIX: &str = "tca1.";

/// One answered round, as DefineAuthChallenge sees the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Round {
    name: String,
    result: bool,
    metadata: String,
}

/// What a custom-auth session carries, sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    pool_id: String,
    client_id: String,
    /// The name the client signed in with.
    username: String,
    /// Empty for an unknown user.
    sub: String,
    /// The user's credential digest when the session was made.
    bind: String,
    /// Unix ms after which the session is refused.
    exp_ms: i64,
    rounds: Vec<Round>,
    wrong: u32,
    /// The challenge waiting for its answer.
    private: BTreeMap<String, String>,
    metadata: String,
}

fn failed() -> ServiceError {
    ServiceError::not_authorized("Incorrect username or password.")
}

fn invalid_session() -> ServiceError {
    ServiceError::not_authorized("Invalid session for the user, session is expired.")
}

fn seal_context(pool_id: &str, client_id: &str) -> Vec<u8> {
    format!("tessera/custom-auth-session|{pool_id}|{client_id}").into_bytes()
}

impl AuthService {
    /// `InitiateAuth(CUSTOM_AUTH)`.
    pub(super) async fn custom_auth(
        &self,
        caller: Caller,
        params: &BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        let Caller { pool, client } = caller;
        let username = required(params, "auth_parameters", "USERNAME")?;
        if username.chars().count() > 128 {
            return Err(ServiceError::invalid(
                "auth_parameters.USERNAME: at most 128 characters",
            ));
        }
        self.check_secret_hash(&client, &[username], param(params, "SECRET_HASH"))?;
        let config = self.custom_triggers(&pool)?;
        let user = match self.find_user(&pool, username).await? {
            Some(u) => {
                usable(&u)?;
                // A locked-out user gets no challenge at all.
                self.check_lockout(&pool.id, &u.sub).await?.release();
                Some(u)
            }
            None if client.prevent_user_existence_errors => None,
            None => return Err(ServiceError::user_not_found()),
        };
        let state = State {
            pool_id: pool.id.clone(),
            client_id: client.client_id.clone(),
            username: username.to_string(),
            sub: user.as_ref().map(|u| u.sub.clone()).unwrap_or_default(),
            bind: user.as_ref().map(session_binding).unwrap_or_default(),
            exp_ms: 0,
            rounds: Vec::new(),
            wrong: 0,
            private: BTreeMap::new(),
            metadata: String::new(),
        };
        self.next_round(&pool, &client, user.as_ref(), &config, state, origin)
            .await
    }

    /// `RespondToAuthChallenge(CUSTOM_CHALLENGE)`: `USERNAME` and `ANSWER`.
    pub(super) async fn custom_challenge_answer(
        &self,
        caller: &Caller,
        session: &str,
        responses: &BTreeMap<String, String>,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        let Caller { pool, client } = caller;
        let mut state = self.open_custom_session(&pool.id, &client.client_id, session)?;
        let username = required(responses, "challenge_responses", "USERNAME")?;
        if username != state.username {
            return Err(invalid_session());
        }
        let answer = required(responses, "challenge_responses", "ANSWER")?;
        if answer.len() > MAX_ANSWER_BYTES {
            return Err(ServiceError::invalid(format!(
                "challenge_responses.ANSWER: at most {MAX_ANSWER_BYTES} bytes"
            )));
        }
        self.check_secret_hash(client, &[username], param(responses, "SECRET_HASH"))?;
        let config = self.custom_triggers(pool)?;
        let user = if state.sub.is_empty() {
            None
        } else {
            let u = self
                .user_by_sub(&pool.id, &state.sub)
                .await?
                .ok_or_else(invalid_session)?;
            if session_binding(&u) != state.bind {
                return Err(invalid_session());
            }
            usable(&u)?;
            Some(u)
        };
        // The guess is evaluated only under a reservation, as a password is.
        let slot = match &user {
            Some(u) => Some(self.check_lockout(&pool.id, &u.sub).await?),
            None => None,
        };
        let request = json!({
            "userAttributes": user.as_ref().map_or_else(|| json!({}), events::user_attributes),
            "privateChallengeParameters": events::string_map(&state.private),
            "challengeAnswer": answer,
            "clientMetadata": events::string_map(&origin.client_metadata),
            "userNotFound": user.is_none(),
        });
        let response = self
            .custom_trigger(
                pool,
                client,
                &state,
                &config,
                TriggerKind::VerifyAuthChallengeResponse,
                request,
            )
            .await;
        let correct = match response.and_then(|r| events::answer_correct(&r)) {
            Ok(c) => c,
            Err(e) => {
                if let Some(s) = slot {
                    s.release();
                }
                return Err(e);
            }
        };
        match (user.as_ref(), slot) {
            (Some(u), Some(slot)) if !correct => {
                self.record_failure_as(
                    AuthEventType::SignIn,
                    &pool.id,
                    &client.client_id,
                    u,
                    origin,
                    "wrong custom challenge answer",
                    slot,
                )
                .await?;
            }
            (_, Some(slot)) => slot.release(),
            (_, None) => {}
        }
        state.rounds.push(Round {
            name: CUSTOM_CHALLENGE.into(),
            result: correct,
            metadata: std::mem::take(&mut state.metadata),
        });
        state.private.clear();
        if !correct {
            state.wrong += 1;
            if state.wrong >= config.custom_auth_max_wrong_answers {
                return Err(failed());
            }
        }
        self.next_round(pool, client, user.as_ref(), &config, state, origin)
            .await
    }

    /// Asks DefineAuthChallenge what follows `state.rounds`, and acts on it.
    async fn next_round(
        &self,
        pool: &UserPool,
        client: &AppClient,
        user: Option<&User>,
        config: &LambdaConfig,
        mut state: State,
        origin: &Origin,
    ) -> Result<AuthAnswer, ServiceError> {
        let attributes = user.map_or_else(|| json!({}), events::user_attributes);
        let history = history(&state.rounds);
        let request = json!({
            "userAttributes": attributes,
            "session": history,
            "clientMetadata": events::string_map(&origin.client_metadata),
            "userNotFound": user.is_none(),
        });
        let define = self
            .custom_trigger(pool, client, &state, config, TriggerKind::DefineAuthChallenge, request)
            .await?;
        let define = events::define_answer(&define)?;
        if define.fail_authentication {
            return Err(failed());
        }
        if define.issue_tokens {
            // An unknown user is never signed in, whatever the trigger says.
            let Some(user) = user else {
                return Err(failed());
            };
            let now = crate::clock::now_millis();
            self.settle_success(&pool.id, &user.sub, None, now).await?;
            let tokens = self
                .issue_tokens(pool, client, user, now / 1000, TokenSource::Authentication, origin)
                .await?;
            self.audit.record_later(
                crate::model::auth_event::AuthEvent::draft(&pool.id, AuthEventType::SignIn, now)
                    .user(&user.username, &user.sub)
                    .origin(&client.client_id, &origin.ip)
                    .detail(format!("CUSTOM_AUTH after {} rounds", state.rounds.len())),
            );
            return Ok(AuthAnswer::Tokens(tokens));
        }
        match define.challenge_name.as_deref() {
            Some(CUSTOM_CHALLENGE) => {}
            Some(other) => {
                return Err(events::invalid_answer(
                    "DefineAuthChallenge",
                    format!("challengeName {other:?} is not supported; use CUSTOM_CHALLENGE"),
                ))
            }
            None => {
                return Err(events::invalid_answer(
                    "DefineAuthChallenge",
                    "neither issueTokens, failAuthentication nor a challengeName",
                ))
            }
        }
        if state.rounds.len() >= MAX_ROUNDS {
            return Err(failed());
        }
        let request = json!({
            "userAttributes": user.map_or_else(|| json!({}), events::user_attributes),
            "challengeName": CUSTOM_CHALLENGE,
            "session": history,
            "clientMetadata": events::string_map(&origin.client_metadata),
            "userNotFound": user.is_none(),
        });
        let created = self
            .custom_trigger(pool, client, &state, config, TriggerKind::CreateAuthChallenge, request)
            .await?;
        let created = events::created_challenge(&created)?;
        state.private = created.private;
        state.metadata = created.metadata;
        let validity = self.node.store().pool_mfa(&pool.id)?.session_validity_secs;
        state.exp_ms = crate::clock::now_millis() + i64::from(validity) * 1000;
        let session = self.seal_custom_session(&state)?;
        let mut parameters = created.public;
        parameters.insert(
            "USERNAME".into(),
            user.map_or(state.username.clone(), |u| u.username.clone()),
        );
        Ok(AuthAnswer::Challenge {
            name: CUSTOM_CHALLENGE.into(),
            session,
            parameters,
            available: Vec::new(),
        })
    }

    /// The pool's triggers, which must include all three custom-auth ones.
    fn custom_triggers(&self, pool: &UserPool) -> Result<LambdaConfig, ServiceError> {
        let needed = [
            TriggerKind::DefineAuthChallenge,
            TriggerKind::CreateAuthChallenge,
            TriggerKind::VerifyAuthChallengeResponse,
        ];
        self.triggers
            .config(&pool.id)?
            .filter(|c| needed.iter().all(|k| c.url(*k).is_some()))
            .ok_or_else(|| {
                ServiceError::invalid(
                    "CUSTOM_AUTH needs the pool's DefineAuthChallenge, CreateAuthChallenge and VerifyAuthChallengeResponse triggers",
                )
            })
    }

    /// Calls one of the three triggers about `state`'s user.
    async fn custom_trigger(
        &self,
        pool: &UserPool,
        client: &AppClient,
        state: &State,
        config: &LambdaConfig,
        kind: TriggerKind,
        request: serde_json::Value,
    ) -> Result<serde_json::Value, ServiceError> {
        let source = format!("{}_Authentication", kind.as_cognito());
        let caller = EventCaller {
            pool_id: &pool.id,
            username: &state.username,
            client_id: &client.client_id,
        };
        let event = events::event(&source, caller, request, "1");
        self.triggers.call_with(&pool.id, config, kind, &event).await
    }

    fn seal_custom_session(&self, state: &State) -> Result<String, ServiceError> {
        let plain =
            serde_json::to_vec(state).map_err(|e| ServiceError::internal(format!("encoding a session: {e}")))?;
        if plain.len() > MAX_STATE_BYTES {
            return Err(events::invalid_answer(
                "CreateAuthChallenge",
                format!("the challenge parameters and history exceed {MAX_STATE_BYTES} bytes"),
            ));
        }
        let bytes = self.seal_state(&seal_context(&state.pool_id, &state.client_id), &plain)?;
        Ok(format!("{SESSION_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    fn open_custom_session(&self, pool_id: &str, client_id: &str, session: &str) -> Result<State, ServiceError> {
        let body = session.strip_prefix(SESSION_PREFIX).ok_or_else(invalid_session)?;
        if body.len() > 2 * MAX_STATE_BYTES {
            return Err(invalid_session());
        }
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| invalid_session())?;
        // The context names the pool and client: a session made for
        // another client or pool does not open here.
        let plain = self
            .open_state(&seal_context(pool_id, client_id), &bytes)?
            .ok_or_else(invalid_session)?;
        let state: State = serde_json::from_slice(&plain).map_err(|_| invalid_session())?;
        if state.pool_id != pool_id || state.client_id != client_id || crate::clock::now_millis() >= state.exp_ms {
            return Err(invalid_session());
        }
        Ok(state)
    }
}

/// Whether `u` may sign in at all.
fn usable(u: &User) -> Result<(), ServiceError> {
    if !u.enabled {
        return Err(ServiceError::not_authorized("User is disabled."));
    }
    match u.status {
        UserStatus::Confirmed => Ok(()),
        UserStatus::Unconfirmed => Err(ServiceError::new(
            crate::service::ErrorKind::FailedPrecondition,
            "UserNotConfirmedException",
            "User is not confirmed.",
        )),
        UserStatus::ResetRequired => Err(ServiceError::new(
            crate::service::ErrorKind::FailedPrecondition,
            "PasswordResetRequiredException",
            "Password reset required for the user",
        )),
        UserStatus::ForceChangePassword | UserStatus::ExternalProvider => Err(failed()),
    }
}

/// The history as Cognito's events carry it.
fn history(rounds: &[Round]) -> serde_json::Value {
    serde_json::Value::Array(
        rounds
            .iter()
            .map(|r| {
                json!({
                    "challengeName": r.name,
                    "challengeResult": r.result,
                    "challengeMetadata": r.metadata,
                })
            })
            .collect(),
    )
}

//! The two-step scenarios of `tessera bench auth` (see [`super::auth`]):
//! `mfa` (password, then a TOTP code) and `email-otp` (`USER_AUTH` with a
//! code by email, read from the outbox). Setup, the sign-in of one user,
//! and the outbox reader that stands in for a mail gateway.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use futures::{StreamExt as _, TryStreamExt as _};
use tonic::transport::Channel;

use super::auth::{lock_steps, password_auth, record_step, sign_in_all, step_histogram, tokens, StepTimes, PASSWORD};
use super::driver::{status_error, Failure};
use crate::client::Client;
use crate::proto::auth_client::AuthClient;
use crate::proto::*;

/// Setup calls in flight at once (as in [`super::auth`]).
const SETUP_CONCURRENCY: usize = 8;
/// How often the outbox reader asks for new messages.
const OUTBOX_POLL: Duration = Duration::from_millis(20);
/// Messages per outbox page: the reader re-reads at most one partial page.
const OUTBOX_PAGE: i32 = 100;
/// How long a sign-in waits for its code before giving up.
const CODE_TIMEOUT: Duration = Duration::from_secs(10);

/// A bench user with a software token: its secret (the bench's own copy,
/// from `AssociateSoftwareToken`) and the last TOTP step it used.
pub struct TotpUser {
    username: String,
    secret: Vec<u8>,
    last_step: Mutex<u64>,
}

fn base32_decode(s: &str) -> anyhow::Result<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut out, mut buf, mut bits) = (Vec::new(), 0u32, 0u32);
    for c in s.trim_end_matches('=').bytes() {
        let v = ALPHABET
            .iter()
            .position(|a| *a == c)
            .ok_or_else(|| anyhow!("the secret is not base32"))?;
        buf = (buf << 5) | u32::try_from(v)?;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buf >> bits) & 0xff)?);
        }
    }
    Ok(out)
}

fn unix_secs() -> u64 {
    u64::try_from(crate::clock::now_millis() / 1000).unwrap_or(0)
}

/// `mfa` setup: TOTP allowed (OPTIONAL) in the pool; each user signs in,
/// associates a token, verifies it with its first code and prefers it.
pub async fn setup_totp_users(
    admin: &Client,
    pool_id: &str,
    client_id: &str,
    usernames: &[String],
) -> anyhow::Result<Vec<TotpUser>> {
    admin
        .admin()
        .set_user_pool_mfa_config(admin.req(SetUserPoolMfaConfigRequest {
            user_pool_id: pool_id.to_string(),
            software_token_mfa_configuration: Some(SoftwareTokenMfaConfigType { enabled: true }),
            mfa_configuration: "OPTIONAL".into(),
            ..Default::default()
        }))
        .await
        .map_err(|s| status_error("SetUserPoolMfaConfig", s))?;
    let signed_in = sign_in_all(admin, client_id, usernames).await?;
    tracing::info!(users = usernames.len(), "giving the bench users software tokens");
    futures::stream::iter(usernames.iter().zip(signed_in))
        .map(|(username, t)| async move {
            let mut auth = admin.auth();
            let a = auth
                .associate_software_token(AssociateSoftwareTokenRequest {
                    access_token: t.access_token.clone(),
                    session: String::new(),
                })
                .await
                .map_err(|s| status_error(&format!("AssociateSoftwareToken {username}"), s))?
                .into_inner();
            let secret = base32_decode(&a.secret_code)?;
            let step = crate::auth::totp::step_of(unix_secs());
            let code = crate::auth::totp::code_at_step(&secret, step)?;
            auth.verify_software_token(VerifySoftwareTokenRequest {
                access_token: t.access_token.clone(),
                session: String::new(),
                user_code: code,
                friendly_device_name: "bench".into(),
            })
            .await
            .map_err(|s| status_error(&format!("VerifySoftwareToken {username}"), s))?;
            auth.set_user_mfa_preference(SetUserMfaPreferenceRequest {
                software_token_mfa_settings: Some(SoftwareTokenMfaSettingsType {
                    enabled: true,
                    preferred_mfa: true,
                }),
                access_token: t.access_token,
                ..Default::default()
            })
            .await
            .map_err(|s| status_error(&format!("SetUserMFAPreference {username}"), s))?;
            anyhow::Ok(TotpUser {
                username: username.clone(),
                secret,
                last_step: Mutex::new(step),
            })
        })
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await
}

/// Reserves the next TOTP step of `user` that the server still accepts:
/// the current one or the next (never the previous, which may lapse
/// before the answer arrives). `None` when both are spent.
fn reserve_step(user: &TotpUser) -> Option<u64> {
    let now = crate::auth::totp::step_of(unix_secs());
    let mut last = match user.last_step.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let step = (*last + 1).max(now);
    if step > now + 1 {
        return None;
    }
    *last = step;
    Some(step)
}

/// A password step answered with `SOFTWARE_TOKEN_MFA`: whom it is for,
/// the TOTP step reserved for its answer, and the challenge's session.
struct Challenged<'a> {
    user: &'a TotpUser,
    step: u64,
    session: String,
    /// The password step's latency.
    took: Duration,
    /// Whether it waited for a user with a free TOTP step.
    waited: bool,
}

/// The password step of an `mfa` sign-in: the first user from `start`
/// with a free TOTP step signs in with its password and is challenged.
async fn password_step<'a>(
    auth: &mut AuthClient<Channel>,
    client_id: &str,
    users: &'a [TotpUser],
    start: usize,
) -> Result<Challenged<'a>, Failure> {
    let mut waited = false;
    let (user, step) = loop {
        let found = (0..users.len())
            .map(|i| &users[(start + i) % users.len()])
            .find_map(|u| reserve_step(u).map(|s| (u, s)));
        match found {
            Some(f) => break f,
            None => {
                waited = true;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let t0 = Instant::now();
    let r = auth
        .initiate_auth(password_auth(client_id, &user.username))
        .await?
        .into_inner();
    let took = t0.elapsed();
    if r.challenge_name != "SOFTWARE_TOKEN_MFA" {
        return Err(Failure::new(
            "NoChallenge",
            format!("expected SOFTWARE_TOKEN_MFA, got {:?}", r.challenge_name),
        ));
    }
    Ok(Challenged {
        user,
        step,
        session: r.session,
        took,
        waited,
    })
}

/// Answers a challenge with the TOTP code of its reserved step and
/// checks that tokens came back; returns the answer's latency.
async fn answer_step(auth: &mut AuthClient<Channel>, client_id: &str, c: Challenged<'_>) -> Result<Duration, Failure> {
    let code =
        crate::auth::totp::code_at_step(&c.user.secret, c.step).map_err(|e| Failure::new("Totp", e.to_string()))?;
    let t0 = Instant::now();
    let answer = auth
        .respond_to_auth_challenge(RespondToAuthChallengeRequest {
            client_id: client_id.to_string(),
            challenge_name: "SOFTWARE_TOKEN_MFA".into(),
            session: c.session,
            challenge_responses: [
                ("USERNAME".to_string(), c.user.username.clone()),
                ("SOFTWARE_TOKEN_MFA_CODE".to_string(), code),
            ]
            .into_iter()
            .collect(),
        })
        .await?
        .into_inner();
    let took = t0.elapsed();
    answer
        .authentication_result
        .filter(|t| !t.access_token.is_empty())
        .ok_or_else(|| Failure::new("NoTokens", "SOFTWARE_TOKEN_MFA answered without tokens".into()))?;
    Ok(took)
}

/// One `mfa` sign-in: the first user from `start` with a free step
/// signs in with its password, then answers `SOFTWARE_TOKEN_MFA`.
pub(super) async fn mfa_sign_in(
    auth: &mut AuthClient<Channel>,
    client_id: &str,
    users: &[TotpUser],
    start: usize,
    steps: &Mutex<StepTimes>,
) -> Result<(), Failure> {
    let challenged = password_step(auth, client_id, users, start).await?;
    let (first, waited) = (challenged.took, challenged.waited);
    let second = answer_step(auth, client_id, challenged).await?;
    let mut s = lock_steps(steps);
    s.record(first, None, second);
    if waited {
        s.waits += 1;
    }
    Ok(())
}

/// Password steps each caller of the answers-alone window runs before it
/// answers their challenges back to back.
pub const ALONE_BATCH: usize = 16;
/// How long the answers-alone window may run past its length for want of
/// a recorded answer: two TOTP periods.
const ALONE_GRACE: Duration = Duration::from_secs(60);

/// The `mfa` answers with no password hash before them, measured after the
/// scenario's windows for `window`.
///
/// Why: in the interleaved load every answer follows its own password
/// step, whose argon2 hash (19 MiB by default) has just swept the CPU
/// caches the answer then runs in. That is the machine's cost of the hash,
/// paid by whatever runs next, not the MFA step's own. Here all callers
/// run [`ALONE_BATCH`] password steps each, wait for each other, then
/// answer the batch back to back, so only a batch's first answer follows
/// a hash. The first batch is a warm-up and is not recorded. The window
/// closes after `window` once a batch was recorded (a password step may
/// wait up to a TOTP period for a user with a free step, so the first
/// recorded batch can come late), and at the latest [`ALONE_GRACE`]
/// later.
pub(super) async fn answers_alone(
    auth: AuthClient<Channel>,
    client_id: &str,
    users: &[TotpUser],
    callers: usize,
    window: Duration,
) -> anyhow::Result<AloneAnswers> {
    let callers = callers.max(1);
    let barrier = tokio::sync::Barrier::new(callers);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let deadline = Instant::now() + window;
    let recorded = Mutex::new(AloneAnswers::new()?);
    let caller = |task: usize| {
        let (mut auth, barrier, stop, recorded) = (auth.clone(), &barrier, &stop, &recorded);
        async move {
            let mut batch_no = 0usize;
            loop {
                let mut batch = Vec::with_capacity(ALONE_BATCH);
                for i in 0..ALONE_BATCH {
                    let start = (batch_no * callers + task) * ALONE_BATCH + i;
                    match password_step(&mut auth, client_id, users, start % users.len().max(1)).await {
                        Ok(c) => batch.push(c),
                        Err(e) => lock_alone(recorded).failed(&e),
                    }
                }
                barrier.wait().await;
                for c in batch {
                    let answered = answer_step(&mut auth, client_id, c).await;
                    let mut r = lock_alone(recorded);
                    match answered {
                        Ok(took) if batch_no > 0 => r.record(took),
                        Ok(_) => {}
                        Err(e) => r.failed(&e),
                    }
                }
                // One caller decides whether to go on, and all follow it:
                // a caller that stopped alone would leave the rest
                // waiting at the barrier.
                if barrier.wait().await.is_leader() {
                    let now = Instant::now();
                    let some = !lock_alone(recorded).latency.is_empty();
                    let done = now >= deadline && some || now >= deadline + ALONE_GRACE;
                    stop.store(done, std::sync::atomic::Ordering::SeqCst);
                }
                barrier.wait().await;
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                batch_no += 1;
            }
        }
    };
    futures::future::join_all((0..callers).map(caller)).await;
    Ok(match recorded.into_inner() {
        Ok(r) => r,
        Err(p) => p.into_inner(),
    })
}

/// What [`answers_alone`] measured.
pub(super) struct AloneAnswers {
    pub(super) latency: hdrhistogram::Histogram<u64>,
    /// Failed calls, by error code.
    pub(super) errors: BTreeMap<String, u64>,
}

impl AloneAnswers {
    fn new() -> anyhow::Result<Self> {
        Ok(AloneAnswers {
            latency: step_histogram()?,
            errors: BTreeMap::new(),
        })
    }

    fn record(&mut self, took: Duration) {
        record_step(&mut self.latency, took);
    }

    fn failed(&mut self, e: &Failure) {
        *self.errors.entry(e.code.clone()).or_default() += 1;
    }
}

fn lock_alone(m: &Mutex<AloneAnswers>) -> std::sync::MutexGuard<'_, AloneAnswers> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// `email-otp` setup: `EMAIL_OTP` allowed as a first factor, and users
/// with a verified email and a permanent password, made by the admin API
/// (no confirmation messages in the outbox).
pub async fn setup_email_otp(admin: &Client, pool_id: &str, usernames: &[String]) -> anyhow::Result<()> {
    admin
        .admin()
        .update_user_pool(admin.req(UpdateUserPoolRequest {
            user_pool_id: pool_id.to_string(),
            policies: Some(UserPoolPolicyType {
                password_policy: None,
                sign_in_policy: Some(SignInPolicyType {
                    allowed_first_auth_factors: vec!["PASSWORD".into(), "EMAIL_OTP".into()],
                    magic_link_validity_seconds: 0,
                }),
            }),
            ..Default::default()
        }))
        .await
        .map_err(|s| status_error("UpdateUserPool sign_in_policy", s))?;
    tracing::info!(users = usernames.len(), "creating bench users with verified emails");
    futures::stream::iter(usernames)
        .map(|username| async move {
            admin
                .admin()
                .admin_create_user(admin.req(AdminCreateUserRequest {
                    user_pool_id: pool_id.to_string(),
                    username: username.clone(),
                    user_attributes: vec![
                        AttributeValue {
                            name: "email".into(),
                            value: format!("{username}@bench.invalid"),
                        },
                        AttributeValue {
                            name: "email_verified".into(),
                            value: "true".into(),
                        },
                    ],
                    temporary_password: PASSWORD.into(),
                    message_action: "SUPPRESS".into(),
                    ..Default::default()
                }))
                .await
                .map_err(|s| status_error(&format!("AdminCreateUser {username}"), s))?;
            admin
                .admin()
                .admin_set_user_password(admin.req(AdminSetUserPasswordRequest {
                    user_pool_id: pool_id.to_string(),
                    username: username.clone(),
                    password: PASSWORD.into(),
                    permanent: true,
                }))
                .await
                .map_err(|s| status_error(&format!("AdminSetUserPassword {username}"), s))?;
            anyhow::Ok(())
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// The newest sign-in code per username, as one reader tailing the
/// pool's outbox sees them (a mail gateway's view). The reader stops when
/// the last handle is dropped.
#[derive(Clone)]
pub struct OutboxTail {
    codes: Arc<Mutex<BTreeMap<String, (u64, String)>>>,
    _stop: Arc<tokio::sync::watch::Sender<()>>,
}

impl OutboxTail {
    /// Starts the reader on `pool_id`'s outbox.
    pub fn start(admin: Client, pool_id: String) -> Self {
        let codes: Arc<Mutex<BTreeMap<String, (u64, String)>>> = Arc::default();
        let (stop, mut stopped) = tokio::sync::watch::channel(());
        let shared = codes.clone();
        tokio::spawn(async move {
            // The token after the last full page: a partial page is read
            // again until it fills.
            let mut token = String::new();
            loop {
                let page = admin
                    .admin()
                    .list_outbox_messages(admin.req(ListOutboxMessagesRequest {
                        user_pool_id: pool_id.clone(),
                        max_results: OUTBOX_PAGE,
                        next_token: token.clone(),
                        consistent_read: false,
                    }))
                    .await;
                let mut full = false;
                if let Ok(page) = page.map(tonic::Response::into_inner) {
                    {
                        let mut map = match shared.lock() {
                            Ok(g) => g,
                            Err(p) => p.into_inner(),
                        };
                        for m in page.messages.iter().filter(|m| m.kind == "SIGN_IN_CODE") {
                            let newer = map.get(&m.username).is_none_or(|(id, _)| *id < m.id);
                            if newer && !m.code.is_empty() {
                                map.insert(m.username.clone(), (m.id, m.code.clone()));
                            }
                        }
                    }
                    if !page.next_token.is_empty() {
                        token = page.next_token;
                        full = true;
                    }
                }
                if full {
                    continue;
                }
                tokio::select! {
                    _ = tokio::time::sleep(OUTBOX_POLL) => {}
                    _ = stopped.changed() => return,
                }
            }
        });
        OutboxTail {
            codes,
            _stop: Arc::new(stop),
        }
    }

    fn newest(&self, username: &str) -> Option<(u64, String)> {
        match self.codes.lock() {
            Ok(g) => g.get(username).cloned(),
            Err(p) => p.into_inner().get(username).cloned(),
        }
    }

    /// Waits for a code for `username` newer than message `after`.
    async fn code_after(&self, username: &str, after: u64) -> Result<String, Failure> {
        let deadline = Instant::now() + CODE_TIMEOUT;
        loop {
            if let Some((id, code)) = self.newest(username) {
                if id > after {
                    return Ok(code);
                }
            }
            if Instant::now() > deadline {
                return Err(Failure::new("NoCode", format!("no code for {username} in the outbox")));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// One `email-otp` sign-in of the user at `start` (or the next free one):
/// `USER_AUTH` with `EMAIL_OTP`, the code from the outbox, the answer.
pub(super) async fn email_otp_sign_in(
    auth: &mut AuthClient<Channel>,
    client_id: &str,
    users: &[tokio::sync::Mutex<String>],
    start: usize,
    outbox: &OutboxTail,
    steps: &Mutex<StepTimes>,
) -> Result<(), Failure> {
    let mut waited = false;
    let user = loop {
        let free = (0..users.len()).find_map(|i| users[(start + i) % users.len()].try_lock().ok());
        match free {
            Some(u) => break u,
            None => {
                waited = true;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let username = user.clone();
    let before = outbox.newest(&username).map_or(0, |(id, _)| id);
    let t0 = Instant::now();
    let r = auth
        .initiate_auth(InitiateAuthRequest {
            auth_flow: "USER_AUTH".into(),
            auth_parameters: [
                ("USERNAME".to_string(), username.clone()),
                ("PREFERRED_CHALLENGE".to_string(), "EMAIL_OTP".to_string()),
            ]
            .into_iter()
            .collect(),
            client_id: client_id.to_string(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let t1 = Instant::now();
    if r.challenge_name != "EMAIL_OTP" {
        return Err(Failure::new(
            "NoChallenge",
            format!("expected EMAIL_OTP, got {:?}", r.challenge_name),
        ));
    }
    let code = outbox.code_after(&username, before).await?;
    let t2 = Instant::now();
    let answer = auth
        .respond_to_auth_challenge(RespondToAuthChallengeRequest {
            client_id: client_id.to_string(),
            challenge_name: r.challenge_name,
            session: r.session,
            challenge_responses: [
                ("USERNAME".to_string(), username.clone()),
                ("EMAIL_OTP_CODE".to_string(), code),
            ]
            .into_iter()
            .collect(),
        })
        .await?
        .into_inner();
    let t3 = Instant::now();
    drop(user);
    tokens(InitiateAuthResponse {
        authentication_result: answer.authentication_result,
        ..Default::default()
    })?;
    let mut s = lock_steps(steps);
    s.record(t1 - t0, Some(t2 - t1), t3 - t2);
    if waited {
        s.waits += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_round_trips_the_products_encoding() {
        let secret = [7u8; 20];
        let b32 = crate::auth::totp::secret_base32(&secret);
        assert_eq!(base32_decode(&b32).unwrap(), secret);
    }

    #[test]
    fn a_user_uses_the_current_and_the_next_step_once_each() {
        let now = crate::auth::totp::step_of(unix_secs());
        let u = TotpUser {
            username: "u".into(),
            secret: vec![1; 20],
            last_step: Mutex::new(now.saturating_sub(5)),
        };
        let a = reserve_step(&u).unwrap();
        let b = reserve_step(&u).unwrap();
        assert!(a >= now && b == a + 1);
        // Within the same 30 s step, a third is refused (a step boundary
        // in between would allow it, which is correct too).
        if crate::auth::totp::step_of(unix_secs()) == now {
            assert_eq!(reserve_step(&u), None);
        }
    }
}

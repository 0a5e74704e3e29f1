//! The bounded-staleness check (issue 16, section 7): during a partition, a
//! refresh token revoked through the majority is refused on the minority
//! side once `max_staleness` has passed, and after healing the minority
//! node serves again and refuses the revoked token.
//!
//! [`probe`] makes the partition itself, after the seeded faulty phase (so
//! it knows exactly when the cut happened): it signs a user in on a
//! follower, cuts that follower off, revokes the refresh token through the
//! majority, and keeps trying the revoked token on the cut-off node until
//! well past the bound. [`check`] is pure: it judges the recorded
//! [`Probe`], so it is unit-tested on hand-written observations.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use tonic::Code;

use super::checkers::CheckResult;
use super::workload::{Fixture, PASSWORD};
use super::Backend;
use crate::client::Client;
use crate::proto::*;

/// An upper bound of the nodes' `raft.max_staleness_ms`. The process
/// backend writes it into every node's config; the compose cluster runs the
/// default (3 × its 800 ms election timeout = 2400 ms), which is below it.
pub const MAX_STALENESS_MS: u64 = 3000;
/// Time past the bound before a refusal is required: the cut is requested
/// by the harness a moment before the network acts on it.
pub const SLACK_MS: u64 = 1000;
/// How long past `MAX_STALENESS_MS + SLACK_MS` the probe keeps trying.
const EXTRA_MS: u64 = 1500;
/// How long a healed node may take to serve again.
const HEAL: Duration = Duration::from_secs(30);
/// Per-call timeout of the probe's requests.
const CALL: Duration = Duration::from_secs(3);

/// How one attempt went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "message", rename_all = "snake_case")]
pub enum Outcome {
    /// The node answered with tokens.
    Tokens,
    /// `Unavailable`: the node refused (stale, or unreachable).
    Unavailable(String),
    /// Any other error (`NotAuthorizedException`, a time-out, ...).
    Refused(String),
}

/// One refresh attempt with the revoked token, `at_ms` after the cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// When the attempt was made (ms after the cut).
    pub at_ms: u64,
    /// What the node answered.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What [`probe`] observed.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// The node cut off from the others.
    pub minority: u64,
    /// The staleness bound the nodes were run with ([`MAX_STALENESS_MS`]).
    pub max_staleness_ms: u64,
    /// Time past the bound before a refusal is required ([`SLACK_MS`]).
    pub slack_ms: u64,
    /// When the majority acknowledged the revocation, after the cut.
    pub revoked_at_ms: u64,
    /// Refresh attempts with the revoked token on the minority node while
    /// it was cut off.
    pub during: Vec<Attempt>,
    /// Whether the minority node signed a user in again after healing.
    pub served_after_heal: bool,
    /// The revoked token on the healed node.
    pub after_heal: Option<Outcome>,
}

/// The verdict on a probe: no revoked token honoured on the minority side
/// past `max_staleness + slack`, at least one attempt made past it (else
/// nothing was shown), and after healing the node serves and refuses the
/// revoked token.
pub fn check(p: &Probe) -> CheckResult {
    let bound = p.max_staleness_ms + p.slack_ms;
    let mut problems = Vec::new();
    let late: Vec<&Attempt> = p.during.iter().filter(|a| a.at_ms > bound).collect();
    if late.is_empty() {
        problems.push(format!(
            "no attempt on node {} later than {bound} ms after the cut, so nothing was checked",
            p.minority
        ));
    }
    let honoured: Vec<u64> = late
        .iter()
        .filter(|a| a.outcome == Outcome::Tokens)
        .map(|a| a.at_ms)
        .collect();
    if !honoured.is_empty() {
        problems.push(format!(
            "node {} honoured a refresh token revoked through the majority {} time(s) past max_staleness \
             ({} ms + {} ms slack), at {:?} ms after the cut",
            p.minority,
            honoured.len(),
            p.max_staleness_ms,
            p.slack_ms,
            honoured.iter().take(10).collect::<Vec<_>>()
        ));
    }
    if !p.served_after_heal {
        problems.push(format!(
            "node {} did not sign anyone in within {HEAL:?} of healing",
            p.minority
        ));
    }
    match &p.after_heal {
        Some(Outcome::Refused(m)) if m.contains("revoked") => {}
        other => problems.push(format!(
            "after healing, node {} should refuse the revoked refresh token as revoked; got {other:?}",
            p.minority
        )),
    }
    let early_tokens = p
        .during
        .iter()
        .filter(|a| a.at_ms <= bound && a.outcome == Outcome::Tokens)
        .count();
    let refused_late = late.len() - honoured.len();
    let evidence = if problems.is_empty() {
        format!(
            "node {} cut off; token revoked through the majority {} ms after the cut; {} of {} attempts within \
             {bound} ms of the cut still answered (the allowed window), all {refused_late} later ones refused; \
             after healing the node served again and refused the revoked token",
            p.minority,
            p.revoked_at_ms,
            early_tokens,
            p.during.len() - late.len(),
        )
    } else {
        problems.join("; ")
    };
    CheckResult::new("bounded-staleness", problems.is_empty(), evidence)
}

fn outcome<T>(r: std::result::Result<std::result::Result<T, tonic::Status>, tokio::time::error::Elapsed>) -> Outcome
where
    T: HasTokens,
{
    match r {
        Err(_) => Outcome::Refused(format!("no answer within {CALL:?}")),
        Ok(Ok(v)) if v.has_tokens() => Outcome::Tokens,
        Ok(Ok(_)) => Outcome::Refused("answered without tokens".into()),
        Ok(Err(s)) if s.code() == Code::Unavailable => Outcome::Unavailable(s.message().to_string()),
        Ok(Err(s)) => Outcome::Refused(s.message().to_string()),
    }
}

trait HasTokens {
    fn has_tokens(&self) -> bool;
}

impl HasTokens for tonic::Response<InitiateAuthResponse> {
    fn has_tokens(&self) -> bool {
        self.get_ref().authentication_result.is_some()
    }
}

fn initiate(fx: &Fixture, flow: &str, params: &[(&str, &str)]) -> InitiateAuthRequest {
    InitiateAuthRequest {
        auth_flow: flow.into(),
        auth_parameters: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        client_id: fx.client_id.clone(),
        client_metadata: Default::default(),
    }
}

/// Runs the probe on `backend` (at least three nodes, all up and healed).
pub async fn probe(backend: &mut dyn Backend, fx: &Fixture) -> Result<Probe> {
    let ids = backend.node_ids();
    if ids.len() < 3 {
        bail!("the staleness probe needs at least 3 nodes");
    }
    let leader = super::leader_of(&*backend).await;
    let minority = ids
        .iter()
        .copied()
        .find(|id| Some(*id) != leader && backend.is_up(*id))
        .ok_or_else(|| anyhow!("no follower to cut off"))?;
    let majority: Vec<u64> = ids.iter().copied().filter(|id| *id != minority).collect();
    let token = backend.token();
    let x = Client::connect_lazy(&backend.url(minority), Some(token.clone()))?;
    let y = Client::connect_lazy(&backend.url(majority[0]), Some(token))?;
    let user = fx
        .sign_in_users
        .first()
        .ok_or_else(|| anyhow!("the fixture has no sign-in user"))?
        .clone();

    let signed_in = super::process::retry(Duration::from_secs(30), || {
        let mut a = x.auth();
        let req = initiate(
            fx,
            "USER_PASSWORD_AUTH",
            &[("USERNAME", user.as_str()), ("PASSWORD", PASSWORD)],
        );
        async move { a.initiate_auth(req).await }
    })
    .await
    .context("signing in on the node to be cut off")?;
    let refresh = signed_in
        .into_inner()
        .authentication_result
        .map(|t| t.refresh_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| anyhow!("the sign-in returned no refresh token"))?;

    let cut = crate::clock::instant();
    backend.partition(&[minority], &majority).await?;
    let ms = || cut.elapsed().as_millis() as u64;

    super::process::retry(Duration::from_secs(20), || {
        let mut a = y.auth();
        let req = RevokeTokenRequest {
            token: refresh.clone(),
            client_id: fx.client_id.clone(),
            client_secret: String::new(),
        };
        async move { a.revoke_token(req).await }
    })
    .await
    .context("revoking the refresh token through the majority")?;
    let revoked_at_ms = ms();

    let mut during = Vec::new();
    let until = MAX_STALENESS_MS + SLACK_MS + EXTRA_MS;
    while ms() < until {
        let at_ms = ms();
        let mut a = x.auth();
        let r = tokio::time::timeout(
            CALL,
            a.initiate_auth(initiate(
                fx,
                "REFRESH_TOKEN_AUTH",
                &[("REFRESH_TOKEN", refresh.as_str())],
            )),
        )
        .await;
        during.push(Attempt {
            at_ms,
            outcome: outcome(r),
        });
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    backend.heal_network().await?;
    let healed = crate::clock::instant();
    let mut served_after_heal = false;
    while healed.elapsed() < HEAL {
        let mut a = x.auth();
        let req = initiate(
            fx,
            "USER_PASSWORD_AUTH",
            &[("USERNAME", user.as_str()), ("PASSWORD", PASSWORD)],
        );
        if outcome(tokio::time::timeout(CALL, a.initiate_auth(req)).await) == Outcome::Tokens {
            served_after_heal = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after_heal = if served_after_heal {
        let mut a = x.auth();
        let req = initiate(fx, "REFRESH_TOKEN_AUTH", &[("REFRESH_TOKEN", refresh.as_str())]);
        Some(outcome(tokio::time::timeout(CALL, a.initiate_auth(req)).await))
    } else {
        None
    };
    Ok(Probe {
        minority,
        max_staleness_ms: MAX_STALENESS_MS,
        slack_ms: SLACK_MS,
        revoked_at_ms,
        during,
        served_after_heal,
        after_heal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(at_ms: u64, outcome: Outcome) -> Attempt {
        Attempt { at_ms, outcome }
    }

    fn stale() -> Outcome {
        Outcome::Unavailable("ServiceUnavailableException: node 2 has not heard from a quorum".into())
    }

    fn probe_with(during: Vec<Attempt>, after_heal: Option<Outcome>) -> Probe {
        Probe {
            minority: 2,
            max_staleness_ms: 3000,
            slack_ms: 1000,
            revoked_at_ms: 40,
            during,
            served_after_heal: after_heal.is_some(),
            after_heal,
        }
    }

    fn revoked() -> Option<Outcome> {
        Some(Outcome::Refused(
            "NotAuthorizedException: Refresh Token has been revoked".into(),
        ))
    }

    #[test]
    fn passes_when_the_minority_refuses_past_the_bound_and_recovers() {
        let p = probe_with(
            vec![
                attempt(100, Outcome::Tokens),
                attempt(2500, stale()),
                attempt(4200, stale()),
                attempt(5000, stale()),
            ],
            revoked(),
        );
        let r = check(&p);
        assert!(r.passed, "{}", r.evidence);
        assert!(r.evidence.contains("1 of 2 attempts"), "{}", r.evidence);
    }

    #[test]
    fn fails_when_a_revoked_token_is_honoured_past_the_bound() {
        // What today's code (no staleness bound) does.
        let p = probe_with(
            vec![
                attempt(100, Outcome::Tokens),
                attempt(4200, Outcome::Tokens),
                attempt(5000, stale()),
            ],
            revoked(),
        );
        let r = check(&p);
        assert!(!r.passed);
        assert!(
            r.evidence.contains("honoured a refresh token revoked"),
            "{}",
            r.evidence
        );
        assert!(r.evidence.contains("[4200]"), "{}", r.evidence);
    }

    #[test]
    fn fails_without_a_late_attempt_or_without_recovery() {
        let r = check(&probe_with(vec![attempt(100, stale())], revoked()));
        assert!(
            !r.passed && r.evidence.contains("nothing was checked"),
            "{}",
            r.evidence
        );
        let r = check(&probe_with(vec![attempt(4500, stale())], None));
        assert!(
            !r.passed && r.evidence.contains("did not sign anyone in"),
            "{}",
            r.evidence
        );
        let r = check(&probe_with(vec![attempt(4500, stale())], Some(Outcome::Tokens)));
        assert!(
            !r.passed && r.evidence.contains("should refuse the revoked"),
            "{}",
            r.evidence
        );
    }
}

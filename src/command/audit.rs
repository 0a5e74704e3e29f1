//! Apply logic of the audit log and of lockout counters.

use super::{Apply, ApplyError, Rejection};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::{Command, Outcome};
use crate::auth::lockout::{LockoutState, THRESHOLD};
use crate::model::auth_event::{
    AuthEvent, AuthEventType, AGGREGATE_WINDOW_MS, AUTH_EVENTS_PER_POOL, MAX_AGGREGATED_SOURCES,
};
use crate::store::directory::{event_key, user_event_key, EventBounds};
use crate::store::keys::{pool_key, Table};
use crate::store::{codec, SmBatch, Store, StoreError};

/// Whether `e` is a failure naming no user, which is aggregated.
fn aggregated(e: &AuthEvent) -> bool {
    !e.pass && e.sub.is_empty()
}

/// `pool | 0 | window | type | source`.
fn aggregate_key(pool_id: &str, window: i64, e: &AuthEvent, source: &str) -> Vec<u8> {
    let mut rest = window.to_be_bytes().to_vec();
    rest.push(e.event_type.as_byte());
    rest.extend_from_slice(source.as_bytes());
    pool_key(pool_id, &rest)
}

/// The aggregates of one `record` call, since the batch's own writes are
/// not visible to reads of the store.
#[derive(Default)]
struct Aggregates {
    /// Aggregate key -> the event, created or updated in this call.
    events: BTreeMap<Vec<u8>, AuthEvent>,
    /// (pool, window, type) -> distinct sources, as counted in this call.
    sources: BTreeMap<(String, i64, u8), usize>,
}

/// Folds an unknown-user failure into its source's aggregate for the
/// window; returns `None` when it was counted into an existing event, or
/// the new aggregate event (with its id still to assign).
fn fold(
    store: &Store,
    batch: &mut SmBatch<'_>,
    aggs: &mut Aggregates,
    e: &AuthEvent,
) -> Result<Option<(Vec<u8>, AuthEvent)>, StoreError> {
    let window = e.at.div_euclid(AGGREGATE_WINDOW_MS);
    let mut source = crate::auth::rate_limit::address_key(&e.ip);
    let key = aggregate_key(&e.pool_id, window, e, &source);
    let bump = |ev: &mut AuthEvent, e: &AuthEvent| {
        ev.count = ev.count.saturating_add(1);
        ev.at = ev.at.max(e.at);
        ev.username = e.username.clone();
    };
    if let Some(ev) = aggs.events.get_mut(&key) {
        bump(ev, e);
        return Ok(None);
    }
    let existing = |key: &[u8]| -> Result<Option<AuthEvent>, StoreError> {
        match store.sm_get(Table::AuthEventAggregates, key)? {
            Some(v) => {
                let id: u64 = codec::decode(&v)?;
                store.auth_event(&e.pool_id, id)
            }
            None => Ok(None),
        }
    };
    if let Some(mut ev) = existing(&key)? {
        bump(&mut ev, e);
        aggs.events.insert(key, ev);
        return Ok(None);
    }
    // A new source in this window: count the window's sources first.
    let slot = (e.pool_id.clone(), window, e.event_type.as_byte());
    let prefix = {
        let mut p = window.to_be_bytes().to_vec();
        p.push(e.event_type.as_byte());
        pool_key(&e.pool_id, &p)
    };
    let counted = match aggs.sources.get(&slot) {
        Some(n) => *n,
        None => {
            // Entering a new window: drop the keys of older ones (at most a
            // few dozen per kind), so the table stays bounded.
            let pool_prefix = pool_key(&e.pool_id, &[]);
            for (k, _) in store.sm_scan_prefix(Table::AuthEventAggregates, &pool_prefix, None, 1024)? {
                let w = k
                    .get(pool_prefix.len()..pool_prefix.len() + 8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(i64::from_be_bytes);
                if w.is_some_and(|w| w < window) {
                    batch.delete(Table::AuthEventAggregates, &k[..])?;
                }
            }
            store
                .sm_scan_prefix(Table::AuthEventAggregates, &prefix, None, MAX_AGGREGATED_SOURCES + 1)?
                .len()
        }
    };
    let key = if counted >= MAX_AGGREGATED_SOURCES {
        source = "*".into();
        let other = aggregate_key(&e.pool_id, window, e, &source);
        if let Some(ev) = aggs.events.get_mut(&other) {
            bump(ev, e);
            return Ok(None);
        }
        if let Some(mut ev) = existing(&other)? {
            bump(&mut ev, e);
            aggs.events.insert(other, ev);
            return Ok(None);
        }
        other
    } else {
        key
    };
    aggs.sources.insert(slot, counted + 1);
    let mut ev = e.clone();
    ev.count = 1;
    ev.ip = source;
    Ok(Some((key, ev)))
}

/// Appends events to their pools' logs, giving each the next sequence
/// number and dropping the oldest beyond the bound. Failures that name no
/// user are aggregated per source and window (see [`AGGREGATE_WINDOW_MS`]).
/// Bounds are read once per pool and carried, since the batch's own writes
/// are not visible to reads of the store.
pub(super) fn record(store: &Store, batch: &mut SmBatch<'_>, events: &[AuthEvent]) -> Result<(), StoreError> {
    let mut bounds: BTreeMap<String, EventBounds> = BTreeMap::new();
    let mut aggs = Aggregates::default();
    for e in events {
        if store.pool(&e.pool_id)?.is_none() {
            continue;
        }
        let mut event = e.clone();
        let mut new_aggregate = None;
        if aggregated(e) {
            match fold(store, batch, &mut aggs, e)? {
                None => continue,
                Some((key, ev)) => {
                    new_aggregate = Some(key);
                    event = ev;
                }
            }
        }
        let b = match bounds.get_mut(&e.pool_id) {
            Some(b) => b,
            None => bounds
                .entry(e.pool_id.clone())
                .or_insert(store.event_bounds(&e.pool_id)?),
        };
        event.id = b.next;
        if let Some(key) = new_aggregate {
            batch.put(Table::AuthEventAggregates, &key, &codec::encode(&event.id)?)?;
            aggs.events.insert(key, event.clone());
        } else {
            batch.put(
                Table::AuthEvents,
                &event_key(&e.pool_id, b.next),
                &codec::encode(&event)?,
            )?;
        }
        if !event.sub.is_empty() {
            batch.put(
                Table::UserAuthEvents,
                &user_event_key(&e.pool_id, &event.sub, b.next),
                &[],
            )?;
        }
        b.next += 1;
        while b.next - b.first > AUTH_EVENTS_PER_POOL {
            if let Some(old) = store.auth_event(&e.pool_id, b.first)? {
                if !old.sub.is_empty() {
                    batch.delete(Table::UserAuthEvents, &user_event_key(&e.pool_id, &old.sub, b.first))?;
                }
            }
            batch.delete(Table::AuthEvents, &event_key(&e.pool_id, b.first))?;
            b.first += 1;
        }
    }
    // Aggregates last, so each is written once with its final count; one
    // already evicted from the log is not brought back.
    for mut ev in aggs.events.into_values() {
        if ev.count > 1 {
            let base = ev.detail.split(" [aggregated: ").next().unwrap_or("").to_string();
            ev.detail = format!("{base} [aggregated: {} from {} in this minute]", ev.count, ev.ip)
                .chars()
                .take(crate::model::auth_event::MAX_DETAIL_CHARS)
                .collect();
        }
        let first = match bounds.get(&ev.pool_id) {
            Some(b) => b.first,
            None => store.event_bounds(&ev.pool_id)?.first,
        };
        if ev.id >= first {
            batch.put(Table::AuthEvents, &event_key(&ev.pool_id, ev.id), &codec::encode(&ev)?)?;
        }
    }
    for (pool_id, b) in bounds {
        batch.put(Table::AuthEventBounds, pool_id.as_bytes(), &codec::encode(&b)?)?;
    }
    Ok(())
}

/// Applies `inner`, then records `event` with its outcome: a rejection is
/// a failure, and the user the command touched fills in who it was.
pub(super) fn audited(
    store: &Store,
    batch: &mut SmBatch<'_>,
    inner: &Command,
    event: &AuthEvent,
) -> Result<Outcome, ApplyError> {
    let out = inner.apply(store, batch)?;
    let mut event = event.clone();
    match &out {
        Outcome::Rejected(r) => {
            event.pass = false;
            if event.detail.is_empty() {
                event.detail = r.to_string();
            }
        }
        Outcome::User(u) => {
            if event.sub.is_empty() {
                event.sub = u.sub.clone();
            }
            if event.username.is_empty() {
                event.username = u.username.clone();
            }
        }
        _ => {}
    }
    record(store, batch, &[event])?;
    Ok(out)
}

/// Counts a failed sign-in against the user's lockout state and records
/// it, plus a `Lockout` event when the failure locks the user.
pub(super) fn sign_in_failure(
    store: &Store,
    batch: &mut SmBatch<'_>,
    pool_id: &str,
    sub: &str,
    event: &AuthEvent,
) -> Result<Outcome, StoreError> {
    if store.user(pool_id, sub)?.is_none() {
        record(store, batch, &[event.clone().failed()])?;
        return Ok(Outcome::Lockout(LockoutState::default()));
    }
    let mut state = store.lockout(pool_id, sub)?.unwrap_or_default();
    let locked = state.record_failure(event.at);
    batch.put(
        Table::SignInFailures,
        &pool_key(pool_id, sub.as_bytes()),
        &codec::encode(&state)?,
    )?;
    let mut events = vec![event.clone().failed()];
    if locked {
        let secs = state.locked_until.saturating_sub(event.at) / 1000;
        let mut lock = event.clone().failed();
        lock.event_type = AuthEventType::Lockout;
        lock.detail = format!(
            "{} failed sign-ins; locked for {secs} s (threshold {THRESHOLD})",
            state.failures
        );
        events.push(lock);
    }
    record(store, batch, &events)?;
    Ok(Outcome::Lockout(state))
}

/// Counts a failed sign-in (lockout) and records it in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSignInFailure {
    /// The pool of the user.
    pub pool_id: String,
    /// The user whose lockout state counts the failure.
    pub sub: String,
    /// The failed `SignIn` event to record; its `at` is the failure's time.
    pub event: AuthEvent,
}

impl Apply for RecordSignInFailure {
    type Output = LockoutState;

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        Ok(sign_in_failure(store, batch, &self.pool_id, &self.sub, &self.event)?)
    }
}
/// Forgets a user's failed sign-ins (after a success).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClearSignInFailures {
    /// The pool of the user.
    pub pool_id: String,
    /// The user whose failures are forgotten.
    pub sub: String,
}

impl Apply for ClearSignInFailures {
    type Output = ();

    fn apply(&self, _store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        batch.delete(Table::SignInFailures, &pool_key(&self.pool_id, self.sub.as_bytes()))?;
        Ok(Outcome::Done)
    }
}
/// Appends events to the audit log (successful sign-ins, batched by the
/// node that served them; failures that name no user).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordAuthEvents(pub Vec<AuthEvent>);

impl Apply for RecordAuthEvents {
    type Output = ();

    fn validate(&self) -> Result<(), Rejection> {
        if self.0.len() > MAX_EVENTS_PER_COMMAND {
            return Err(Rejection::Invalid(format!(
                "{} audit events in one entry; at most {MAX_EVENTS_PER_COMMAND}",
                self.0.len()
            )));
        }
        Ok(())
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        record(store, batch, &self.0)?;
        Ok(Outcome::Done)
    }
}
/// Applies `inner` and records `event` with its outcome, atomically.
/// Proposers use `service::submit_audited`, which types the result by the
/// wrapped command; this type's own output is never read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audited {
    /// The command to apply.
    #[serde(deserialize_with = "crate::store::codec::bounded_box")]
    pub inner: Box<Command>,
    /// The event recording it; `pass` is set from the outcome.
    pub event: AuthEvent,
}

impl Apply for Audited {
    type Output = ();

    fn validate(&self) -> Result<(), Rejection> {
        match self.inner.as_ref() {
            Command::Audited(_) => Err(Rejection::Invalid("an audited command inside another".into())),
            _ => Ok(()),
        }
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        audited(store, batch, &self.inner, &self.event)
    }

    fn label(&self) -> Option<&'static str> {
        Some(self.inner.name())
    }
}
/// Most events one `RecordAuthEvents` entry appends (nodes batch at most
/// 500), so one entry's apply stays short.
pub const MAX_EVENTS_PER_COMMAND: usize = 1000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::testkit::store_with_pool;
    use crate::command::*;

    fn run(store: &Store, cmd: impl Into<Command>) {
        crate::command::testkit::run(store, cmd);
    }

    fn setup() -> (tempfile::TempDir, Store) {
        store_with_pool(&[])
    }

    fn unknown(ip: &str, at: i64) -> AuthEvent {
        AuthEvent::draft("local_p", AuthEventType::SignIn, at)
            .user("nobody", "")
            .origin("c1", ip)
            .detail("no such user")
            .failed()
    }

    /// The flood that used to flush a pool's log: before aggregation,
    /// 60,000 unknown-user failures pushed the real event out (the log
    /// keeps 50,000). Now one source adds one event per minute, and many
    /// sources at most `MAX_AGGREGATED_SOURCES + 1`.
    #[test]
    fn unknown_user_floods_cannot_flush_the_log() {
        let (_d, store) = setup();
        let real = AuthEvent::draft("local_p", AuthEventType::SignUp, 0).user("ann", "s1");
        run(&store, RecordAuthEvents(vec![real]));
        // One source, 60,000 failures within a minute, in batches as the
        // audit task and sign-in failures send them.
        for chunk in 0..120 {
            let batch: Vec<_> = (0..500).map(|i| unknown("203.0.113.9", chunk * 100 + i)).collect();
            run(&store, RecordAuthEvents(batch));
        }
        let events = store.auth_events_page("local_p", None, None, 100).unwrap();
        assert_eq!(events.len(), 2, "{events:?}");
        let agg = events.iter().find(|e| e.event_type == AuthEventType::SignIn).unwrap();
        assert_eq!(agg.count, 60_000);
        assert!(agg.detail.contains("60000"), "{}", agg.detail);
        // 1,000 sources (an IPv6 /48 rotating /64s), one failure each.
        let batch: Vec<_> = (0..1000)
            .map(|i| unknown(&format!("2001:db8:0:{i:x}::1"), 1_000))
            .collect();
        run(&store, RecordAuthEvents(batch));
        let events = store.auth_events_page("local_p", None, None, 10_000).unwrap();
        // The real event, one per source (the IPv4 one and 31 /64s), and
        // one for every further source.
        assert_eq!(events.len(), 1 + MAX_AGGREGATED_SOURCES + 1);
        let other = events.iter().find(|e| e.ip == "*").unwrap();
        assert_eq!(other.count as usize, 1000 - (MAX_AGGREGATED_SOURCES - 1));
        // Rotating hosts inside one /64 stays one source.
        let batch: Vec<_> = (0..100)
            .map(|i| unknown(&format!("2001:db8:0:0::{i:x}"), 2_000))
            .collect();
        run(&store, RecordAuthEvents(batch));
        assert_eq!(
            store.auth_events_page("local_p", None, None, 10_000).unwrap().len(),
            events.len()
        );
        // The next window starts new aggregates and sweeps the old keys.
        run(
            &store,
            RecordAuthEvents(vec![unknown("203.0.113.9", AGGREGATE_WINDOW_MS)]),
        );
        let keys = store.sm_scan(Table::AuthEventAggregates, None, 10_000).unwrap();
        assert_eq!(keys.len(), 1);
        assert!(
            store
                .auth_events_page("local_p", None, None, 10_000)
                .unwrap()
                .iter()
                .any(|e| e.username == "ann"),
            "the real event survives"
        );
    }
}

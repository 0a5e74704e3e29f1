//! Apply logic of the audit log and of lockout counters.

use std::collections::BTreeMap;

use super::{Command, Outcome};
use crate::auth::lockout::{LockoutState, THRESHOLD};
use crate::model::auth_event::{AuthEvent, AuthEventType, AUTH_EVENTS_PER_POOL};
use crate::store::directory::{event_key, user_event_key, EventBounds};
use crate::store::keys::{pool_key, Table};
use crate::store::{codec, SmBatch, Store, StoreError};

/// Appends events to their pools' logs, giving each the next sequence
/// number and dropping the oldest beyond the bound. Bounds are read once
/// per pool and carried, since the batch's own writes are not visible to
/// reads of the store.
pub(super) fn record(store: &Store, batch: &mut SmBatch<'_>, events: &[AuthEvent]) -> Result<(), StoreError> {
    let mut bounds: BTreeMap<String, EventBounds> = BTreeMap::new();
    for e in events {
        if store.pool(&e.pool_id)?.is_none() {
            continue;
        }
        let b = match bounds.get_mut(&e.pool_id) {
            Some(b) => b,
            None => bounds
                .entry(e.pool_id.clone())
                .or_insert(store.event_bounds(&e.pool_id)?),
        };
        let mut event = e.clone();
        event.id = b.next;
        batch.put(
            Table::AuthEvents,
            &event_key(&e.pool_id, b.next),
            &codec::encode(&event)?,
        )?;
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
) -> Result<Outcome, StoreError> {
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

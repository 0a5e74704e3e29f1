//! One session's protocol state, without I/O: what each `ServerFrame` does
//! to the local copy (docs/sync-protocol.md, "Session"), which queued
//! writes to send, and what their answers mean.
//!
//! The rules it enforces on the server:
//!
//! * Outside a reload, each change's `cursor.seq` is the copy's plus one,
//!   in the copy's epoch (for a one-dataset subscription, only *rises*).
//! * A change at or below the copy's cursor is a **duplicate**: counted,
//!   logged and not applied. Between a `SyncResync` and its `SyncCaughtUp`
//!   the server may re-send changes the device has, so those are skipped
//!   silently instead.
//! * A change past the next one is a **gap**: counted, logged, and the
//!   session ends, so that the client resumes from its cursor on a new one
//!   and loses nothing.
//! * A `SyncReload` fills a staging copy; it replaces the copy only at its
//!   `SyncCaughtUp`, so the copy (and its file) is never half reloaded.
//!
//! The I/O loop (`task`) feeds frames in under the client's lock and
//! carries out the [`Step`]s that come back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::replica::{Base, LocalDataset, Replica};
use super::resolve::{Conflict, Resolution, WriteId};
use super::{Ack, ChangeEvent, ChangeKind, CloseCode, Counters, Event, SyncClientError, WriteOutcome, MAX_RESOLUTIONS};
use crate::model::sync::{Cursor, Record};
use crate::proto::{
    self, server_frame, sync_write_result, DeviceWrite, RecordPatch, ServerFrame, SyncChange, SyncRecord,
};

/// What the I/O loop must do after a frame.
#[derive(Debug)]
pub(crate) enum Step {
    /// Tell the application.
    Emit(Event),
    /// A queued write is finished: answer whoever waits for it.
    Done(WriteId, Result<WriteOutcome, SyncClientError>),
    /// A write conflicted: run the resolver (with no lock held), then
    /// [`Session::resolved`].
    Resolve(Conflict),
    /// End the session (the client reconnects unless told otherwise).
    End(Ended),
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ended {
    /// The server's close code, if it sent one.
    pub code: Option<CloseCode>,
    /// What happened.
    pub reason: String,
}

impl Ended {
    /// An end the client decided on (no server code).
    pub fn local(reason: impl Into<String>) -> Self {
        Ended {
            code: None,
            reason: reason.into(),
        }
    }
}

enum Phase {
    /// Subscribed (or resyncing): changes after the cursor arrive, then
    /// `SyncCaughtUp`.
    CatchingUp,
    /// A reload: whole datasets into `staging` until `SyncCaughtUp`.
    Reloading {
        staging: BTreeMap<String, LocalDataset>,
        cursor: Option<Cursor>,
        reason: String,
    },
    /// Caught up: live changes.
    Live,
}

/// The state of one session.
pub(crate) struct Session {
    scope: Option<String>,
    phase: Phase,
    /// Between a `SyncResync` and its `SyncCaughtUp`.
    resyncing: bool,
    /// Caught up at least once: queued writes may be sent.
    live: bool,
    /// Sent writes by request id.
    in_flight: BTreeMap<u64, WriteId>,
    next_request: u64,
    /// No write is sent before this (after a transient refusal).
    hold_until: Option<Instant>,
    /// The next hold's length; doubles on each transient refusal in a row.
    hold: Duration,
}

/// The first pause after a transient refusal; doubles up to
/// [`MAX_HOLD`].
const FIRST_HOLD: Duration = Duration::from_millis(100);
/// The longest pause after transient refusals.
const MAX_HOLD: Duration = Duration::from_secs(2);

/// Refusals that say "not now" rather than "never": the write stays queued
/// and is sent again after a pause. Sending again is safe even when the
/// first attempt was applied after all (`OutcomeUnknownException`): the
/// write's sync counts are behind once it is applied, so the second
/// attempt conflicts with the device's own write, which the client
/// recognises as done.
fn transient(exception: &str) -> bool {
    matches!(
        exception,
        "OutcomeUnknownException"
            | "ServiceUnavailableException"
            | "TooManyRequestsException"
            | "InternalErrorException"
    )
}

impl Session {
    /// A session that has sent `DeviceSubscribe` for `scope`.
    pub fn new(scope: Option<String>) -> Self {
        Session {
            scope,
            phase: Phase::CatchingUp,
            resyncing: false,
            live: false,
            in_flight: BTreeMap::new(),
            next_request: 1,
            hold_until: None,
            hold: FIRST_HOLD,
        }
    }

    /// Whether changes arrive live now: caught up, and not reloading or
    /// resyncing since.
    pub fn caught_up(&self) -> bool {
        matches!(self.phase, Phase::Live)
    }

    /// When sending may resume after a transient refusal.
    pub fn hold_until(&self) -> Option<Instant> {
        self.hold_until
    }

    /// Whether the session caught up once, so writes may go out.
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// Writes sent and not answered.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Applies one frame (after `SyncWelcome`) to `r`.
    pub fn on_frame(&mut self, r: &mut Replica, c: &Counters, frame: ServerFrame, now: Instant) -> Vec<Step> {
        match frame.msg {
            Some(server_frame::Msg::Change(ch)) => self.on_change(r, c, ch, now),
            Some(server_frame::Msg::Reload(rl)) => {
                c.reloads.inc();
                tracing::info!(reason = %rl.reason, "sync: reloading the local copy");
                self.phase = Phase::Reloading {
                    staging: BTreeMap::new(),
                    cursor: rl.cursor.map(cursor_of),
                    reason: rl.reason,
                };
                Vec::new()
            }
            Some(server_frame::Msg::Resync(rs)) => self.on_resync(r, c, rs.from.map(cursor_of), rs.reason),
            Some(server_frame::Msg::CaughtUp(cu)) => self.on_caught_up(r, c, cu.cursor.map(cursor_of)),
            Some(server_frame::Msg::WriteResult(wr)) => self.on_write_result(r, c, wr, now),
            Some(server_frame::Msg::Pong(_)) => Vec::new(),
            Some(server_frame::Msg::Goodbye(g)) => vec![Step::End(Ended {
                code: Some(CloseCode::from_u32(g.code)),
                reason: g.reason,
            })],
            Some(server_frame::Msg::Welcome(_)) => violation("a second SyncWelcome"),
            None => violation("an empty ServerFrame"),
        }
    }

    fn on_change(&mut self, r: &mut Replica, c: &Counters, ch: SyncChange, now: Instant) -> Vec<Step> {
        let Some(cursor) = ch.cursor.map(cursor_of) else {
            return violation("a SyncChange without a cursor");
        };
        let Some(kind) = ChangeKind::parse(&ch.kind) else {
            return violation(&format!("a SyncChange of unknown kind {:?}", ch.kind));
        };
        let records: Vec<Record> = ch.records.into_iter().map(record_of).collect();
        let sync_count = u64::try_from(ch.dataset_sync_count).unwrap_or(0);
        let event = |records: Vec<Record>, reloading: bool| {
            Step::Emit(Event::Change(Arc::new(ChangeEvent {
                dataset: ch.dataset_name.clone(),
                kind,
                cursor,
                dataset_sync_count: sync_count,
                records,
                device_id: ch.device_id.clone(),
                at: ch.at,
                received: now,
                reloading,
            })))
        };
        if let Phase::Reloading { staging, .. } = &mut self.phase {
            apply(staging, &ch.dataset_name, kind, sync_count, records.clone());
            return vec![event(records, true)];
        }
        let Some(have) = r.cursor else {
            c.gaps.inc();
            tracing::warn!(?cursor, "sync: a change before any load or reload; resubscribing");
            return vec![Step::End(Ended::local("a change arrived before the copy was loaded"))];
        };
        // Epoch 0 is the history of an identity with no change yet: its
        // first change names the epoch (the server's rule too).
        if cursor.epoch != have.epoch && have.epoch != 0 {
            c.gaps.inc();
            tracing::warn!(
                ?have,
                ?cursor,
                "sync: a change of another epoch without a reload; resubscribing"
            );
            return vec![Step::End(Ended::local("a change of another epoch without a reload"))];
        }
        if cursor.epoch == have.epoch && cursor.seq <= have.seq {
            if self.resyncing {
                tracing::debug!(?have, ?cursor, "sync: skipping a change re-sent by a resync");
            } else {
                c.duplicates.inc();
                tracing::warn!(?have, ?cursor, "sync: duplicate change ignored (a server bug)");
            }
            return Vec::new();
        }
        if self.scope.is_none() && cursor.seq != have.seq + 1 {
            c.gaps.inc();
            tracing::warn!(
                ?have,
                ?cursor,
                "sync: gap in the change sequence (a server bug); resubscribing"
            );
            return vec![Step::End(Ended::local(format!(
                "gap: change {} after {}",
                cursor.seq, have.seq
            )))];
        }
        if self.scope.as_ref().is_some_and(|s| *s != ch.dataset_name) {
            // Another dataset's change on a one-dataset subscription: not
            // ours to apply, but it moves the cursor like SyncCaughtUp does.
            r.cursor = Some(cursor);
            return Vec::new();
        }
        apply(&mut r.datasets, &ch.dataset_name, kind, sync_count, records.clone());
        if kind != ChangeKind::Update {
            r.acked.retain(|(d, _), _| *d != ch.dataset_name);
        }
        r.cursor = Some(cursor);
        r.prune_acked();
        c.changes.inc();
        vec![event(records, false)]
    }

    fn on_resync(&mut self, r: &mut Replica, c: &Counters, from: Option<Cursor>, reason: String) -> Vec<Step> {
        c.resyncs.inc();
        if let (Some(from), Some(have)) = (from, r.cursor) {
            if from.epoch == have.epoch && from.seq > have.seq {
                c.gaps.inc();
                tracing::warn!(?have, ?from, "sync: resync from past the copy's cursor (a server bug)");
                return vec![Step::End(Ended::local("a resync would skip changes"))];
            }
        }
        tracing::info!(?from, reason = %reason, "sync: the server resyncs this device");
        self.phase = Phase::CatchingUp;
        self.resyncing = true;
        vec![Step::Emit(Event::Resynced { from, reason })]
    }

    fn on_caught_up(&mut self, r: &mut Replica, c: &Counters, at: Option<Cursor>) -> Vec<Step> {
        let mut steps = Vec::new();
        match std::mem::replace(&mut self.phase, Phase::Live) {
            Phase::Reloading {
                staging,
                cursor,
                reason,
            } => {
                let Some(at) = at.or(cursor) else {
                    return violation("a reload's SyncCaughtUp without a cursor");
                };
                if r.cursor.is_some_and(|old| old.epoch != at.epoch) {
                    r.acked.clear();
                }
                r.datasets = staging;
                r.cursor = Some(at);
                r.prune_acked();
                steps.push(Step::Emit(Event::Reloaded { cursor: at, reason }));
            }
            Phase::CatchingUp | Phase::Live => {
                let (Some(at), Some(have)) = (at, r.cursor) else {
                    return violation("SyncCaughtUp without a cursor, or before any load");
                };
                let same_history = at.epoch == have.epoch || have.epoch == 0;
                if !same_history || (self.scope.is_none() && at.seq > have.seq) {
                    c.gaps.inc();
                    tracing::warn!(?have, ?at, "sync: caught up past changes never sent (a server bug)");
                    return vec![Step::End(Ended::local("caught up past changes never sent"))];
                }
                if at.seq > have.seq || at.epoch != have.epoch {
                    // One-dataset subscription: other datasets' changes
                    // were skipped.
                    r.cursor = Some(at);
                }
            }
        }
        self.resyncing = false;
        let first = !self.live;
        self.live = true;
        let cursor = r.cursor.unwrap_or(Cursor { epoch: 0, seq: 0 });
        steps.push(Step::Emit(Event::CaughtUp { cursor }));
        if first {
            steps.extend(self.recognise_lost_answers(r, c));
        }
        steps
    }

    /// Writes sent on an earlier session whose answer never came: if the
    /// copy, now caught up, shows them, they are done.
    fn recognise_lost_answers(&mut self, r: &mut Replica, c: &Counters) -> Vec<Step> {
        let found: Vec<(WriteId, BTreeMap<String, u64>)> = r
            .pending
            .iter()
            .filter_map(|w| r.shows_applied(w).map(|written| (w.id, written)))
            .collect();
        found
            .into_iter()
            .filter_map(|(id, written)| finish_observed(r, c, id, &written, "found applied after reconnecting"))
            .collect()
    }

    fn on_write_result(
        &mut self,
        r: &mut Replica,
        c: &Counters,
        wr: proto::SyncWriteResult,
        now: Instant,
    ) -> Vec<Step> {
        let Some(id) = self.in_flight.remove(&wr.request_id) else {
            tracing::warn!(
                request_id = wr.request_id,
                "sync: an answer to no write of this session"
            );
            return Vec::new();
        };
        let Some(w) = r.pending_write(id).cloned() else {
            return Vec::new();
        };
        match wr.result {
            Some(sync_write_result::Result::Ok(ok)) => {
                let records: Vec<Record> = ok.records.into_iter().map(record_of).collect();
                let cursor = ok
                    .cursor
                    .map(cursor_of)
                    .or(r.cursor)
                    .unwrap_or(Cursor { epoch: 0, seq: 0 });
                let written: BTreeMap<String, u64> = records.iter().map(|x| (x.key.clone(), x.sync_count)).collect();
                r.finish(id, &written, Some(cursor.seq));
                c.writes_acked.inc();
                self.hold = FIRST_HOLD;
                vec![Step::Done(
                    id,
                    Ok(WriteOutcome::Written(Ack {
                        write_id: id,
                        dataset: w.dataset,
                        records,
                        dataset_sync_count: u64::try_from(ok.dataset_sync_count).unwrap_or(0),
                        cursor,
                        observed: false,
                    })),
                )]
            }
            Some(sync_write_result::Result::Conflict(conflict)) => {
                c.conflicts.inc();
                if conflict.omitted_records != 0 {
                    // Only the gRPC detail leaves records out; over QUIC the
                    // server sends them all.
                    tracing::warn!(
                        omitted = conflict.omitted_records,
                        "sync: a conflict without all its records"
                    );
                }
                let remote: Vec<Record> = conflict.records.into_iter().map(record_of).collect();
                if is_own_write(&w, &remote, &r.device_id) {
                    // The write (sent before a lost connection) is already
                    // there: the conflict is with itself.
                    let written = remote.iter().map(|x| (x.key.clone(), x.sync_count)).collect();
                    return finish_observed(r, c, id, &written, "conflicted with itself")
                        .into_iter()
                        .collect();
                }
                vec![Step::Resolve(Conflict {
                    write_id: id,
                    dataset: w.dataset.clone(),
                    local: w.patches(),
                    remote,
                    dataset_sync_count: u64::try_from(conflict.dataset_sync_count).unwrap_or(0),
                    attempt: w.resolutions,
                })]
            }
            Some(sync_write_result::Result::Error(e)) if transient(&e.exception) => {
                tracing::info!(
                    write = id,
                    exception = %e.exception,
                    message = %e.message,
                    pause = ?self.hold,
                    "sync: write refused for now; it stays queued"
                );
                self.hold_until = Some(now + self.hold);
                self.hold = (self.hold * 2).min(MAX_HOLD);
                Vec::new()
            }
            Some(sync_write_result::Result::Error(e)) => {
                tracing::warn!(write = id, exception = %e.exception, message = %e.message, "sync: write refused");
                r.finish(id, &BTreeMap::new(), None);
                vec![
                    Step::Emit(Event::WriteRejected {
                        write_id: id,
                        dataset: w.dataset,
                        exception: e.exception.clone(),
                        message: e.message.clone(),
                    }),
                    Step::Done(
                        id,
                        Err(SyncClientError::Rejected {
                            exception: e.exception,
                            message: e.message,
                        }),
                    ),
                ]
            }
            None => violation("a SyncWriteResult without a result"),
        }
    }

    /// Applies the resolver's answer to `conflict`.
    pub fn resolved(&mut self, r: &mut Replica, conflict: Conflict, resolution: Resolution) -> Vec<Step> {
        let id = conflict.write_id;
        let mut steps = vec![Step::Emit(Event::Conflict {
            conflict: Arc::new(conflict.clone()),
            resolution: resolution.clone(),
        })];
        let device_id = r.device_id.clone();
        let remote_base = |key: &str| conflict.remote(key).map(|x| x.sync_count);
        let Some(w) = r.pending_write(id).cloned() else {
            return steps;
        };
        if w.resolutions + 1 > MAX_RESOLUTIONS {
            r.finish(id, &BTreeMap::new(), None);
            steps.push(Step::Done(
                id,
                Err(SyncClientError::Unresolved {
                    write_id: id,
                    resolutions: w.resolutions,
                }),
            ));
            return steps;
        }
        let mut patches = w.patches.clone();
        match resolution {
            Resolution::KeepLocal => {
                for p in &mut patches {
                    if let Some(b) = remote_base(&p.key) {
                        p.base = Base::Known(b);
                    }
                }
            }
            Resolution::KeepRemote => patches.retain(|p| conflict.remote(&p.key).is_none()),
            Resolution::Replace(new) => {
                let device_time = patches.first().map_or(0, |p| p.device_time);
                patches = new
                    .into_iter()
                    .map(|p| {
                        let base = remote_base(&p.key)
                            .or_else(|| {
                                w.patches.iter().find(|q| q.key == p.key).and_then(|q| match q.base {
                                    Base::Known(b) => Some(b),
                                    Base::After(_) => None,
                                })
                            })
                            .unwrap_or_else(|| r.known_sync_count(&w.dataset, &p.key));
                        super::replica::PendingPatch {
                            key: p.key,
                            value: p.value,
                            base: Base::Known(base),
                            device_time,
                        }
                    })
                    .collect();
            }
        }
        if patches.is_empty() {
            r.finish(id, &BTreeMap::new(), None);
            tracing::info!(write = id, device = %device_id, "sync: write dropped by its resolver");
            steps.push(Step::Done(
                id,
                Ok(WriteOutcome::Discarded {
                    write_id: id,
                    remote: conflict.remote,
                }),
            ));
            return steps;
        }
        if let Some(w) = r.pending_write_mut(id) {
            w.patches = patches;
            w.resolutions += 1;
        }
        steps
    }

    /// The queued writes to send now, oldest first: each whose bases are
    /// all known, until one is not (a later write may depend on it) or the
    /// window is full. A write too large for a frame ends with an error.
    pub fn next_writes(
        &mut self,
        r: &mut Replica,
        window: usize,
        max_frame: u32,
        now: Instant,
    ) -> (Vec<DeviceWrite>, Vec<Step>) {
        let mut out = Vec::new();
        let mut steps = Vec::new();
        if !self.live || self.hold_until.is_some_and(|t| now < t) {
            return (out, steps);
        }
        self.hold_until = None;
        let sent: Vec<WriteId> = self.in_flight.values().copied().collect();
        let mut ready = Vec::new();
        for w in &r.pending {
            if self.in_flight.len() + ready.len() >= window {
                break;
            }
            if sent.contains(&w.id) {
                continue;
            }
            if !w.sendable() {
                break;
            }
            ready.push(w.id);
        }
        for id in ready {
            let Some(w) = r.pending_write_mut(id) else { continue };
            if w.first_bases.is_empty() {
                w.first_bases = w
                    .patches
                    .iter()
                    .filter_map(|p| match p.base {
                        Base::Known(b) => Some((p.key.clone(), b)),
                        Base::After(_) => None,
                    })
                    .collect();
            }
            let request_id = self.next_request;
            self.next_request += 1;
            let frame = DeviceWrite {
                request_id,
                dataset_name: w.dataset.clone(),
                patches: w
                    .patches
                    .iter()
                    .map(|p| RecordPatch {
                        op: if p.value.is_some() { "replace" } else { "remove" }.into(),
                        key: p.key.clone(),
                        value: p.value.clone(),
                        sync_count: match p.base {
                            Base::Known(b) => i64::try_from(b).unwrap_or(i64::MAX),
                            Base::After(_) => 0,
                        },
                        device_last_modified_date: p.device_time,
                    })
                    .collect(),
            };
            // The frame is `DeviceFrame { write }`: a few bytes of framing
            // on top of the write itself.
            let len = prost::Message::encoded_len(&frame) + 16;
            if len > max_frame as usize {
                let dataset = w.dataset.clone();
                r.finish(id, &BTreeMap::new(), None);
                let message = format!("the write is {len} bytes, more than a frame may be ({max_frame})");
                steps.push(Step::Emit(Event::WriteRejected {
                    write_id: id,
                    dataset,
                    exception: "LimitExceededException".into(),
                    message: message.clone(),
                }));
                steps.push(Step::Done(id, Err(SyncClientError::TooLarge(message))));
                continue;
            }
            self.in_flight.insert(request_id, id);
            out.push(frame);
        }
        (out, steps)
    }
}

/// Whether a conflict's remote records are exactly the write's own patches,
/// written by this device: the write was applied before.
fn is_own_write(w: &super::replica::PendingWrite, remote: &[Record], device_id: &str) -> bool {
    remote.len() == w.patches.len()
        && w.patches.iter().all(|p| {
            remote
                .iter()
                .any(|x| x.key == p.key && x.value == p.value && x.last_modified_by == device_id)
        })
}

fn finish_observed(
    r: &mut Replica,
    c: &Counters,
    id: WriteId,
    written: &BTreeMap<String, u64>,
    how: &str,
) -> Option<Step> {
    let cursor = r.cursor.unwrap_or(Cursor { epoch: 0, seq: 0 });
    let w = r.finish(id, written, None)?;
    tracing::info!(write = id, "sync: write {how}");
    c.writes_acked.inc();
    c.writes_observed.inc();
    let records = w
        .patches
        .iter()
        .filter_map(|p| r.record(&w.dataset, &p.key).cloned())
        .collect();
    let dataset_sync_count = r.datasets.get(&w.dataset).map_or(0, |d| d.sync_count);
    Some(Step::Done(
        id,
        Ok(WriteOutcome::Written(Ack {
            write_id: id,
            dataset: w.dataset,
            records,
            dataset_sync_count,
            cursor,
            observed: true,
        })),
    ))
}

fn violation(what: &str) -> Vec<Step> {
    tracing::warn!("sync: protocol violation by the server: {what}");
    vec![Step::End(Ended::local(format!(
        "protocol violation by the server: {what}"
    )))]
}

/// Applies one change to a set of datasets.
fn apply(
    datasets: &mut BTreeMap<String, LocalDataset>,
    name: &str,
    kind: ChangeKind,
    sync_count: u64,
    records: Vec<Record>,
) {
    match kind {
        ChangeKind::Update => {
            let d = datasets.entry(name.to_string()).or_default();
            d.sync_count = sync_count;
            for x in records {
                d.records.insert(x.key.clone(), x);
            }
        }
        ChangeKind::DatasetDeleted => {
            datasets.remove(name);
        }
        ChangeKind::Dataset => {
            datasets.insert(
                name.to_string(),
                LocalDataset {
                    sync_count,
                    records: records.into_iter().map(|x| (x.key.clone(), x)).collect(),
                },
            );
        }
    }
}

/// A wire cursor.
pub(crate) fn cursor_of(c: proto::SyncCursor) -> Cursor {
    Cursor {
        epoch: c.epoch,
        seq: c.seq,
    }
}

/// A wire record.
pub(crate) fn record_of(x: SyncRecord) -> Record {
    Record {
        key: x.key,
        value: x.value,
        sync_count: u64::try_from(x.sync_count).unwrap_or(0),
        last_modified_date: x.last_modified_date,
        last_modified_by: x.last_modified_by,
        device_last_modified_date: x.device_last_modified_date,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{
        SyncCaughtUp, SyncConflict, SyncCursor, SyncError, SyncReload, SyncResync, SyncWriteResult,
        UpdateRecordsResponse,
    };
    use crate::sync::client::Patch;

    type Rec<'a> = (&'a str, Option<&'a str>, u64, &'a str);

    fn wire(c: Cursor) -> Option<SyncCursor> {
        Some(SyncCursor {
            epoch: c.epoch,
            seq: c.seq,
        })
    }

    fn cur(seq: u64) -> Cursor {
        Cursor { epoch: 7, seq }
    }

    fn recs(r: &[Rec<'_>]) -> Vec<SyncRecord> {
        r.iter()
            .map(|(k, v, s, by)| SyncRecord {
                key: k.to_string(),
                value: v.map(Into::into),
                sync_count: *s as i64,
                last_modified_date: 1,
                last_modified_by: by.to_string(),
                device_last_modified_date: 0,
            })
            .collect()
    }

    fn frame(m: server_frame::Msg) -> ServerFrame {
        ServerFrame { msg: Some(m) }
    }

    fn change(seq: u64, ds: &str, kind: &str, sync_count: i64, r: &[Rec<'_>]) -> ServerFrame {
        frame(server_frame::Msg::Change(SyncChange {
            cursor: wire(cur(seq)),
            dataset_name: ds.into(),
            kind: kind.into(),
            dataset_sync_count: sync_count,
            records: recs(r),
            device_id: "other".into(),
            at: 1,
        }))
    }

    fn caught_up(seq: u64) -> ServerFrame {
        frame(server_frame::Msg::CaughtUp(SyncCaughtUp { cursor: wire(cur(seq)) }))
    }

    fn result(request_id: u64, r: sync_write_result::Result) -> ServerFrame {
        frame(server_frame::Msg::WriteResult(SyncWriteResult {
            request_id,
            result: Some(r),
        }))
    }

    fn ok(request_id: u64, seq: u64, r: &[Rec<'_>]) -> ServerFrame {
        result(
            request_id,
            sync_write_result::Result::Ok(UpdateRecordsResponse {
                records: recs(r),
                dataset_sync_count: r.iter().map(|x| x.2 as i64).max().unwrap_or(0),
                cursor: wire(cur(seq)),
            }),
        )
    }

    fn conflict(request_id: u64, r: &[Rec<'_>]) -> ServerFrame {
        result(
            request_id,
            sync_write_result::Result::Conflict(SyncConflict {
                records: recs(r),
                dataset_sync_count: 9,
                omitted_records: 0,
            }),
        )
    }

    struct World {
        r: Replica,
        c: Counters,
        s: Session,
        now: Instant,
    }

    impl World {
        fn new() -> Self {
            World {
                r: Replica::new("pool", "dev"),
                c: Counters::default(),
                s: Session::new(None),
                now: Instant::now(),
            }
        }

        /// A device at cursor `seq` with dataset `ds` holding `r`, caught up.
        fn at(seq: u64, ds: &str, r: &[Rec<'_>]) -> Self {
            let mut w = World::new();
            w.r.cursor = Some(cur(seq));
            let d = w.r.datasets.entry(ds.into()).or_default();
            for x in recs(r) {
                let x = record_of(x);
                d.sync_count = d.sync_count.max(x.sync_count);
                d.records.insert(x.key.clone(), x);
            }
            w.feed(caught_up(seq));
            w
        }

        fn feed(&mut self, f: ServerFrame) -> Vec<Step> {
            self.s.on_frame(&mut self.r, &self.c, f, self.now)
        }

        fn send(&mut self) -> Vec<DeviceWrite> {
            let (w, steps) = self.s.next_writes(&mut self.r, 8, 1 << 20, self.now);
            assert!(steps.is_empty(), "{steps:?}");
            w
        }

        fn value(&self, ds: &str, key: &str) -> Option<String> {
            self.r.record(ds, key).and_then(|x| x.value.clone())
        }
    }

    fn ends(steps: &[Step]) -> bool {
        steps.iter().any(|s| matches!(s, Step::End(_)))
    }

    #[test]
    fn a_fresh_device_reloads_then_follows_changes_in_order() {
        let mut w = World::new();
        w.s = Session::new(None);
        w.feed(frame(server_frame::Msg::Reload(SyncReload {
            cursor: wire(cur(3)),
            reason: "no cursor".into(),
        })));
        let steps = w.feed(change(
            3,
            "a",
            "DATASET",
            2,
            &[("k", Some("1"), 1, "x"), ("gone", None, 2, "x")],
        ));
        assert!(matches!(&steps[..], [Step::Emit(Event::Change(c))] if c.reloading));
        assert!(w.r.datasets.is_empty(), "a reload is staged until it is caught up");
        let steps = w.feed(caught_up(3));
        assert!(steps
            .iter()
            .any(|s| matches!(s, Step::Emit(Event::Reloaded { cursor, .. }) if *cursor == cur(3))));
        assert_eq!(w.r.cursor, Some(cur(3)));
        assert_eq!(w.value("a", "k").as_deref(), Some("1"));
        assert!(
            w.r.record("a", "gone").is_some_and(|r| r.value.is_none()),
            "tombstones are kept"
        );

        w.feed(change(4, "a", "UPDATE", 3, &[("k", Some("2"), 3, "x")]));
        assert_eq!(w.value("a", "k").as_deref(), Some("2"));
        assert_eq!(w.r.datasets["a"].sync_count, 3);

        // The same change again: a duplicate, counted and not applied.
        let steps = w.feed(change(4, "a", "UPDATE", 3, &[("k", Some("stale"), 3, "x")]));
        assert!(steps.is_empty());
        assert_eq!(w.value("a", "k").as_deref(), Some("2"));
        assert_eq!(w.c.duplicates.get(), 1);

        // A change skipped: a gap, counted, and the session ends to resume.
        let steps = w.feed(change(6, "a", "UPDATE", 5, &[("k", Some("6"), 5, "x")]));
        assert!(ends(&steps));
        assert_eq!(w.c.gaps.get(), 1);
        assert_eq!(w.r.cursor, Some(cur(4)), "nothing past the gap is applied");

        w.feed(change(5, "a", "DATASET_DELETED", 3, &[]));
        assert!(w.r.datasets.is_empty());
    }

    #[test]
    fn the_first_change_of_an_empty_history_names_its_epoch() {
        let mut w = World::new();
        w.feed(frame(server_frame::Msg::Reload(SyncReload {
            cursor: Some(SyncCursor { epoch: 0, seq: 0 }),
            reason: "no cursor".into(),
        })));
        w.feed(frame(server_frame::Msg::CaughtUp(SyncCaughtUp {
            cursor: Some(SyncCursor { epoch: 0, seq: 0 }),
        })));
        assert_eq!(w.r.cursor, Some(Cursor { epoch: 0, seq: 0 }));
        w.feed(change(1, "a", "UPDATE", 1, &[("k", Some("1"), 1, "x")]));
        assert_eq!(w.r.cursor, Some(cur(1)));
        assert_eq!((w.c.gaps.get(), w.c.duplicates.get()), (0, 0));
    }

    #[test]
    fn changes_of_another_epoch_or_before_a_load_end_the_session() {
        let mut w = World::new();
        assert!(
            ends(&w.feed(change(1, "a", "UPDATE", 1, &[]))),
            "no copy yet, no reload"
        );
        assert_eq!(w.c.gaps.get(), 1);
        let mut w = World::at(5, "a", &[]);
        let mut other = change(6, "a", "UPDATE", 1, &[]);
        if let Some(server_frame::Msg::Change(c)) = &mut other.msg {
            c.cursor = wire(Cursor { epoch: 8, seq: 6 });
        }
        assert!(ends(&w.feed(other)));
        assert!(ends(&w.feed(change(6, "a", "SOMETHING", 1, &[]))), "unknown kind");
        assert!(ends(&w.feed(caught_up(9))), "caught up past changes never sent");
        assert_eq!(
            w.c.gaps.get(),
            2,
            "another epoch and a skipped catch-up; a bad kind is a violation"
        );
    }

    #[test]
    fn a_resync_re_sends_without_counting_duplicates() {
        let mut w = World::at(5, "a", &[("k", Some("5"), 5, "x")]);
        let steps = w.feed(frame(server_frame::Msg::Resync(SyncResync {
            from: wire(cur(4)),
            reason: "slow".into(),
        })));
        assert!(matches!(&steps[..], [Step::Emit(Event::Resynced { .. })]));
        assert!(w
            .feed(change(5, "a", "UPDATE", 5, &[("k", Some("5"), 5, "x")]))
            .is_empty());
        w.feed(change(6, "a", "UPDATE", 6, &[("k", Some("6"), 6, "x")]));
        w.feed(caught_up(6));
        assert_eq!((w.c.duplicates.get(), w.c.gaps.get(), w.c.resyncs.get()), (0, 0, 1));
        assert_eq!(w.value("a", "k").as_deref(), Some("6"));
        // After the resync, a repeat is a duplicate again.
        w.feed(change(6, "a", "UPDATE", 6, &[("k", Some("6"), 6, "x")]));
        assert_eq!(w.c.duplicates.get(), 1);
        // A resync from past the copy would skip changes.
        let steps = w.feed(frame(server_frame::Msg::Resync(SyncResync {
            from: wire(cur(9)),
            reason: "bug".into(),
        })));
        assert!(ends(&steps));
    }

    #[test]
    fn a_one_dataset_subscription_accepts_rising_cursors() {
        let mut w = World::new();
        w.r.cursor = Some(cur(2));
        w.s = Session::new(Some("a".into()));
        w.feed(change(5, "a", "UPDATE", 1, &[("k", Some("1"), 1, "x")]));
        w.feed(caught_up(9));
        assert_eq!(w.r.cursor, Some(cur(9)));
        assert_eq!(w.c.gaps.get(), 0);
    }

    #[test]
    fn writes_go_out_once_caught_up_and_wait_for_earlier_writes_of_their_keys() {
        let mut w = World::new();
        w.r.cursor = Some(cur(1));
        let w1 = w.r.enqueue("a", vec![Patch::replace("k", "1")], 0);
        let w2 = w.r.enqueue("a", vec![Patch::replace("k", "2")], 0);
        let _w3 = w.r.enqueue("a", vec![Patch::replace("j", "3")], 0);
        assert!(w.send().is_empty(), "nothing is sent before the session is caught up");
        w.feed(caught_up(1));
        let sent = w.send();
        assert_eq!(
            sent.len(),
            1,
            "the second write of k waits, and the queue keeps its order"
        );
        assert_eq!(
            (sent[0].patches[0].key.as_str(), sent[0].patches[0].sync_count),
            ("k", 0)
        );
        assert!(w.send().is_empty(), "not sent twice");

        let steps = w.feed(ok(sent[0].request_id, 2, &[("k", Some("1"), 1, "dev")]));
        assert!(
            matches!(&steps[..], [Step::Done(id, Ok(WriteOutcome::Written(a)))] if *id == w1 && a.cursor == cur(2))
        );
        let sent = w.send();
        assert_eq!(sent.len(), 2);
        assert_eq!(
            (sent[0].patches[0].value.as_deref(), sent[0].patches[0].sync_count),
            (Some("2"), 1),
            "the chained write takes its base from the acknowledged one"
        );
        assert_eq!(sent[0].patches[0].op, "replace");
        assert!(w.r.pending_write(w2).is_some());
        assert_eq!(w.s.in_flight(), 2);
    }

    #[test]
    fn a_conflict_goes_to_the_resolver_and_last_writer_wins_resends_over_the_remote_count() {
        let mut w = World::at(4, "a", &[("k", Some("old"), 3, "x")]);
        let id = w.r.enqueue("a", vec![Patch::replace("k", "mine")], 0);
        let sent = w.send();
        assert_eq!(sent[0].patches[0].sync_count, 3);
        let steps = w.feed(conflict(sent[0].request_id, &[("k", Some("theirs"), 4, "x")]));
        let [Step::Resolve(c)] = &steps[..] else {
            panic!("{steps:?}")
        };
        assert_eq!((c.write_id, c.local.clone()), (id, vec![Patch::replace("k", "mine")]));
        assert_eq!(c.remote("k").unwrap().value.as_deref(), Some("theirs"));
        assert_eq!((c.dataset_sync_count, c.attempt), (9, 0));
        let steps = w.s.resolved(&mut w.r, c.clone(), Resolution::KeepLocal);
        assert!(matches!(&steps[..], [Step::Emit(Event::Conflict { .. })]));
        let sent = w.send();
        assert_eq!(
            (sent[0].patches[0].value.as_deref(), sent[0].patches[0].sync_count),
            (Some("mine"), 4)
        );
        assert_eq!(w.c.conflicts.get(), 1);
    }

    #[test]
    fn keep_remote_drops_the_conflicting_patches() {
        let mut w = World::at(4, "a", &[("k", Some("old"), 3, "x")]);
        let id = w.r.enqueue("a", vec![Patch::replace("k", "mine")], 0);
        let sent = w.send();
        let steps = w.feed(conflict(sent[0].request_id, &[("k", Some("theirs"), 4, "x")]));
        let [Step::Resolve(c)] = &steps[..] else {
            panic!("{steps:?}")
        };
        let steps = w.s.resolved(&mut w.r, c.clone(), Resolution::KeepRemote);
        assert!(
            matches!(&steps[..], [Step::Emit(_), Step::Done(d, Ok(WriteOutcome::Discarded { remote, .. }))]
                if *d == id && remote[0].value.as_deref() == Some("theirs"))
        );
        assert_eq!(w.r.pending.len(), 0);

        // Replace: the resolver's own value, over the remote count.
        let _ = w.r.enqueue("a", vec![Patch::replace("k", "mine")], 0);
        let sent = w.send();
        let steps = w.feed(conflict(sent[0].request_id, &[("k", Some("theirs"), 5, "x")]));
        let [Step::Resolve(c)] = &steps[..] else {
            panic!("{steps:?}")
        };
        w.s.resolved(
            &mut w.r,
            c.clone(),
            Resolution::Replace(vec![Patch::replace("k", "both")]),
        );
        let sent = w.send();
        assert_eq!(
            (sent[0].patches[0].value.as_deref(), sent[0].patches[0].sync_count),
            (Some("both"), 5)
        );
    }

    #[test]
    fn a_write_whose_answer_was_lost_is_recognised_not_repeated() {
        // Sent on an earlier session; the copy, caught up, shows it.
        let mut w = World::new();
        w.r.cursor = Some(cur(1));
        let id = w.r.enqueue("a", vec![Patch::replace("k", "mine")], 0);
        w.feed(change(2, "a", "UPDATE", 1, &[("k", Some("mine"), 1, "dev")]));
        let steps = w.feed(caught_up(2));
        assert!(
            steps
                .iter()
                .any(|s| matches!(s, Step::Done(d, Ok(WriteOutcome::Written(a))) if *d == id && a.observed)),
            "{steps:?}"
        );
        assert!(w.r.pending.is_empty());

        // Or the resend conflicts with itself.
        let id = w.r.enqueue("a", vec![Patch::replace("k", "again")], 0);
        let sent = w.send();
        let steps = w.feed(conflict(sent[0].request_id, &[("k", Some("again"), 2, "dev")]));
        assert!(matches!(&steps[..], [Step::Done(d, Ok(WriteOutcome::Written(a)))] if *d == id && a.observed));
        assert_eq!(w.c.writes_observed.get(), 2);
    }

    #[test]
    fn a_refused_write_is_dropped_and_reported() {
        let mut w = World::at(1, "a", &[]);
        let id = w.r.enqueue("a", vec![Patch::replace("k", "v")], 0);
        let sent = w.send();
        let steps = w.feed(result(
            sent[0].request_id,
            sync_write_result::Result::Error(SyncError {
                exception: "LimitExceededException".into(),
                message: "too many datasets".into(),
            }),
        ));
        assert!(
            matches!(&steps[..], [Step::Emit(Event::WriteRejected { .. }), Step::Done(d, Err(SyncClientError::Rejected { .. }))] if *d == id)
        );
        assert!(w.r.pending.is_empty());
        // A write too large for a frame is refused before it is sent.
        w.r.enqueue("a", vec![Patch::replace("k", "v".repeat(100))], 0);
        let (sent, steps) = w.s.next_writes(&mut w.r, 8, 64, w.now);
        assert!(sent.is_empty());
        assert!(matches!(
            &steps[..],
            [Step::Emit(_), Step::Done(_, Err(SyncClientError::TooLarge(_)))]
        ));
    }

    #[test]
    fn a_write_refused_for_now_stays_queued_and_goes_again_after_a_pause() {
        let mut w = World::at(1, "a", &[]);
        let id = w.r.enqueue("a", vec![Patch::replace("k", "v")], 0);
        let sent = w.send();
        let steps = w.feed(result(
            sent[0].request_id,
            sync_write_result::Result::Error(SyncError {
                exception: "OutcomeUnknownException".into(),
                message: "the leader went away".into(),
            }),
        ));
        assert!(steps.is_empty(), "{steps:?}");
        assert!(w.r.pending_write(id).is_some());
        assert!(w.send().is_empty(), "held");
        w.now += Duration::from_millis(150);
        let again = w.send();
        assert_eq!(again.len(), 1);
        assert_eq!(
            again[0].patches, sent[0].patches,
            "the same write, on the same sync counts"
        );
        // It was applied the first time after all: the second attempt
        // conflicts with the device's own write, which ends it.
        let steps = w.feed(conflict(again[0].request_id, &[("k", Some("v"), 1, "dev")]));
        assert!(matches!(&steps[..], [Step::Done(d, Ok(WriteOutcome::Written(a)))] if *d == id && a.observed));
    }

    #[test]
    fn a_goodbye_ends_the_session_with_its_code() {
        let mut w = World::at(1, "a", &[]);
        let steps = w.feed(frame(server_frame::Msg::Goodbye(proto::SyncGoodbye {
            code: 4,
            reason: "expired".into(),
        })));
        assert!(matches!(
            &steps[..],
            [Step::End(Ended {
                code: Some(CloseCode::CredentialsExpired),
                ..
            })]
        ));
    }
}

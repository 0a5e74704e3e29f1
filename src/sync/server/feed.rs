//! One session's feed of changes: what the device gets after a Subscribe,
//! merged from three places so that it sees every change of its identity
//! once and in order.
//!
//! * **Catch-up** reads the change log in the store after the device's
//!   cursor, a page at a time, up to the identity's sequence when it
//!   started, then announces `SyncCaughtUp`.
//! * **Reload** sends the identity's whole data at one cursor when the
//!   cursor cannot resume (none, another epoch, history trimmed past it).
//! * **Live** events come from the hub. The session subscribed to the hub
//!   before it read the store, so every change after what the store showed
//!   is queued there; events at or below the last cursor sent are the ones
//!   the store already gave, and are skipped.
//!
//! When the hub drops events (the device read too slowly, or the node
//! installed a snapshot), the feed announces `SyncResync { from }` and
//! catches up from the store again. The feed never waits and never talks
//! to the network: the session asks it for the next frame when the
//! device's writer has room, which is what keeps a slow device's cost
//! bounded by the hub's queue.

use std::collections::VecDeque;

use super::convert;
use crate::model::sync::{Change, Cursor, Dataset, Record, SyncState};
use crate::proto::server_frame::Msg;
use crate::proto::{SyncCaughtUp, SyncReload, SyncResync};
use crate::service::sync::{SyncService, SyncSnapshot};
use crate::service::ServiceError;

/// Changes read from the log at once while catching up. The log of one
/// identity is bounded (`command::sync::LOG_MAX_BYTES`), so a page is too.
pub const PAGE: usize = 64;

/// Where a feed reads an identity's history.
pub trait Source {
    /// The identity's sync state now (`None`: no change ever, or gone).
    fn state(&self) -> Result<Option<SyncState>, ServiceError>;
    /// Up to `limit` logged changes after `after_seq`, in order.
    fn changes_after(&self, after_seq: u64, limit: usize) -> Result<Vec<Change>, ServiceError>;
    /// The identity's whole data at one cursor.
    fn snapshot(&self) -> Result<SyncSnapshot, ServiceError>;
}

/// One identity's history in this node's store.
pub struct StoreSource<'a> {
    /// The node's sync service.
    pub service: &'a SyncService,
    /// The identity pool.
    pub identity_pool_id: &'a str,
    /// The identity.
    pub identity_id: &'a str,
}

impl Source for StoreSource<'_> {
    fn state(&self) -> Result<Option<SyncState>, ServiceError> {
        self.service.state(self.identity_pool_id, self.identity_id)
    }

    fn changes_after(&self, after_seq: u64, limit: usize) -> Result<Vec<Change>, ServiceError> {
        self.service
            .changes_after(self.identity_pool_id, self.identity_id, after_seq, limit)
    }

    fn snapshot(&self) -> Result<SyncSnapshot, ServiceError> {
        self.service.snapshot(self.identity_pool_id, self.identity_id)
    }
}

/// How a cursor continues on this node.
enum Resume {
    /// Catch up from the log to this sequence number.
    To(u64),
    /// It cannot: reload, for this reason.
    Reload(&'static str),
}

/// Whether a feed that sent up to `last` can go on from the log, and up to
/// where. A cursor ahead of the node's state (a device that last talked to
/// a node further along) resumes with nothing to read: the node applies
/// the missing changes soon and the hub brings them.
fn resume(state: Option<&SyncState>, last: Cursor) -> Resume {
    match state {
        None if last.epoch == 0 => Resume::To(last.seq),
        None => Resume::Reload("this node has no history for the identity at that cursor"),
        Some(s) if last.epoch == 0 && last.seq == 0 => {
            if s.floor <= 1 {
                Resume::To(s.seq)
            } else {
                Resume::Reload("the identity's early history was trimmed")
            }
        }
        Some(s) if last.epoch != s.epoch => Resume::Reload("the cursor is of another history (epoch)"),
        Some(s) if last.seq >= s.seq => Resume::To(last.seq),
        Some(s) if s.can_resume(last) => Resume::To(s.seq),
        Some(_) => Resume::Reload("the history after the cursor was trimmed"),
    }
}

/// Whether `c` is the change right after `last`.
fn follows(last: Cursor, c: &Change) -> bool {
    c.seq == last.seq + 1 && (last.epoch == 0 || last.epoch == c.epoch)
}

enum Stage {
    /// Sending the log after `last` up to `target`; `header` (a Resync)
    /// goes first.
    CatchUp {
        /// Boxed, as in `Reload`: a session keeps its feed for its whole
        /// life, mostly `Live`, and should not carry a message's room.
        header: Option<Box<Msg>>,
        target: u64,
        page: VecDeque<Change>,
    },
    /// Sending the whole data at `cursor`: `header` (the Reload), then
    /// each dataset.
    Reload {
        header: Option<Box<Msg>>,
        cursor: Cursor,
        datasets: VecDeque<(Dataset, Vec<Record>)>,
    },
    /// Caught up: live events from the hub.
    Live,
}

/// What a session sends after a Subscribe.
pub struct Feed {
    dataset: Option<String>,
    last: Cursor,
    stage: Stage,
}

impl Feed {
    /// Starts the feed of a `DeviceSubscribe` for `dataset` (`None`: all)
    /// from the device's `cursor`. The session subscribed to the hub
    /// before this reads the store.
    pub fn subscribe(dataset: Option<String>, cursor: Option<Cursor>, src: &dyn Source) -> Result<Self, ServiceError> {
        let mut feed = Feed {
            dataset,
            last: Cursor { epoch: 0, seq: 0 },
            stage: Stage::Live,
        };
        match cursor.filter(|c| c.epoch != 0) {
            None => feed.start_reload(src, "no cursor: the device starts from the whole data")?,
            Some(c) => match resume(src.state()?.as_ref(), c) {
                Resume::To(target) => {
                    feed.last = c;
                    feed.stage = Stage::CatchUp {
                        header: None,
                        target,
                        page: VecDeque::new(),
                    };
                }
                Resume::Reload(why) => feed.start_reload(src, why)?,
            },
        }
        Ok(feed)
    }

    /// The cursor of the last change sent (or skipped by the dataset
    /// filter).
    pub fn last(&self) -> Cursor {
        self.last
    }

    /// Whether frames from the store are waiting (catch-up, reload or
    /// resync); live events are taken only once they are all sent.
    pub fn has_backlog(&self) -> bool {
        !matches!(self.stage, Stage::Live)
    }

    fn wants(&self, c: &Change) -> bool {
        self.dataset.as_deref().is_none_or(|d| d == c.dataset)
    }

    fn start_reload(&mut self, src: &dyn Source, reason: &str) -> Result<(), ServiceError> {
        let snap = src.snapshot()?;
        let datasets = snap
            .datasets
            .into_iter()
            .filter(|(d, _)| self.dataset.as_deref().is_none_or(|n| n == d.name))
            .collect();
        self.stage = Stage::Reload {
            header: Some(Box::new(Msg::Reload(SyncReload {
                cursor: Some(convert::cursor(snap.cursor)),
                reason: reason.to_string(),
            }))),
            cursor: snap.cursor,
            datasets,
        };
        Ok(())
    }

    /// The hub dropped events: announce a resync from the last cursor
    /// sent and catch up from the store (or reload, if the log no longer
    /// reaches back that far).
    pub fn resync(&mut self, src: &dyn Source, reason: &str) -> Result<(), ServiceError> {
        match resume(src.state()?.as_ref(), self.last) {
            Resume::To(target) => {
                self.stage = Stage::CatchUp {
                    header: Some(Box::new(Msg::Resync(SyncResync {
                        from: Some(convert::cursor(self.last)),
                        reason: reason.to_string(),
                    }))),
                    target,
                    page: VecDeque::new(),
                };
                Ok(())
            }
            Resume::Reload(why) => self.start_reload(src, why),
        }
    }

    /// A live change from the hub: the frame to send, if any. Changes
    /// already sent are skipped; a gap or another history means events
    /// were lost, and the feed resyncs (its next frames come from
    /// [`Feed::next_backlog`]).
    pub fn on_change(&mut self, c: &Change, src: &dyn Source) -> Result<Option<Msg>, ServiceError> {
        if self.has_backlog() {
            // The session takes live events only when caught up; one that
            // arrives otherwise is in the store and will be read from it.
            return Ok(None);
        }
        if c.epoch == self.last.epoch && c.seq <= self.last.seq {
            return Ok(None);
        }
        if follows(self.last, c) {
            self.last = c.cursor();
            return Ok(self.wants(c).then(|| Msg::Change(convert::change(c))));
        }
        self.resync(
            src,
            "a change did not reach this session in order; reading it from the store",
        )?;
        Ok(None)
    }

    /// The next frame from the store, or `None` once live. `overflowed`
    /// says (and clears) whether the hub dropped events meanwhile: then
    /// the catch-up goes on to the new end of the log before announcing
    /// `SyncCaughtUp`, with no resync to announce since nothing was
    /// skipped.
    pub fn next_backlog(
        &mut self,
        src: &dyn Source,
        overflowed: &mut dyn FnMut() -> bool,
    ) -> Result<Option<Msg>, ServiceError> {
        // Each turn either returns a frame or moves the feed on; the log
        // and the snapshot are finite, so this ends.
        loop {
            match &mut self.stage {
                Stage::Live => return Ok(None),
                Stage::Reload {
                    header,
                    cursor,
                    datasets,
                } => {
                    if let Some(h) = header.take() {
                        return Ok(Some(*h));
                    }
                    if let Some((d, records)) = datasets.pop_front() {
                        return Ok(Some(Msg::Change(convert::whole_dataset(*cursor, &d, &records))));
                    }
                    let at = *cursor;
                    self.last = at;
                    self.stage = Stage::CatchUp {
                        header: None,
                        target: at.seq,
                        page: VecDeque::new(),
                    };
                }
                Stage::CatchUp { header, target, page } => {
                    if let Some(h) = header.take() {
                        return Ok(Some(*h));
                    }
                    if let Some(c) = page.pop_front() {
                        if !follows(self.last, &c) {
                            self.start_reload(src, "the history was trimmed while the device caught up")?;
                            continue;
                        }
                        self.last = c.cursor();
                        if self.wants(&c) {
                            return Ok(Some(Msg::Change(convert::change(&c))));
                        }
                        continue;
                    }
                    if self.last.seq >= *target {
                        if overflowed() {
                            match resume(src.state()?.as_ref(), self.last) {
                                Resume::To(t) => *target = t,
                                Resume::Reload(why) => self.start_reload(src, why)?,
                            }
                            continue;
                        }
                        let at = self.last;
                        self.stage = Stage::Live;
                        return Ok(Some(Msg::CaughtUp(SyncCaughtUp {
                            cursor: Some(convert::cursor(at)),
                        })));
                    }
                    let more = src.changes_after(self.last.seq, PAGE)?;
                    if more.is_empty() {
                        // The log ends before the target: it was trimmed or
                        // the history replaced under the catch-up.
                        match resume(src.state()?.as_ref(), self.last) {
                            Resume::To(t) if t <= self.last.seq => *target = self.last.seq,
                            Resume::To(_) => {
                                self.start_reload(src, "the history changed while the device caught up")?
                            }
                            Resume::Reload(why) => self.start_reload(src, why)?,
                        }
                        continue;
                    }
                    page.extend(more);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sync::ChangeKind;
    use std::cell::RefCell;

    /// An identity's history in memory: a log from `floor`, and datasets.
    struct Fake {
        epoch: u64,
        floor: u64,
        log: RefCell<Vec<Change>>,
    }

    fn change(epoch: u64, seq: u64, dataset: &str) -> Change {
        Change {
            identity_pool_id: "local:p".into(),
            identity_id: "local:i".into(),
            epoch,
            seq,
            dataset: dataset.into(),
            kind: ChangeKind::Update,
            dataset_sync_count: seq,
            records: vec![Record {
                key: format!("k{seq}"),
                value: Some(format!("v{seq}")),
                sync_count: seq,
                last_modified_date: 0,
                last_modified_by: "d".into(),
                device_last_modified_date: 0,
            }],
            device_id: "d".into(),
            at: 0,
        }
    }

    impl Fake {
        fn new(epoch: u64, n: u64, datasets: &[&str]) -> Self {
            let log = (1..=n)
                .map(|s| change(epoch, s, datasets[(s as usize - 1) % datasets.len()]))
                .collect();
            Fake {
                epoch,
                floor: 1,
                log: RefCell::new(log),
            }
        }
        fn push(&self, dataset: &str) -> Change {
            let seq = self.log.borrow().last().map_or(0, |c| c.seq) + 1;
            let c = change(self.epoch, seq, dataset);
            self.log.borrow_mut().push(c.clone());
            c
        }
        fn seq(&self) -> u64 {
            self.log.borrow().last().map_or(0, |c| c.seq)
        }
    }

    impl Source for Fake {
        fn state(&self) -> Result<Option<SyncState>, ServiceError> {
            if self.log.borrow().is_empty() {
                return Ok(None);
            }
            let mut s = SyncState::new(self.epoch);
            s.seq = self.seq();
            s.floor = self.floor;
            Ok(Some(s))
        }
        fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<Change>, ServiceError> {
            Ok(self
                .log
                .borrow()
                .iter()
                .filter(|c| c.seq > after && c.seq >= self.floor)
                .take(limit)
                .cloned()
                .collect())
        }
        fn snapshot(&self) -> Result<SyncSnapshot, ServiceError> {
            let mut names: Vec<String> = self.log.borrow().iter().map(|c| c.dataset.clone()).collect();
            names.sort();
            names.dedup();
            let datasets = names
                .into_iter()
                .map(|n| {
                    let d = Dataset {
                        name: n.clone(),
                        creation_date: 0,
                        last_modified_date: 0,
                        last_modified_by: "d".into(),
                        sync_count: 1,
                        num_records: 0,
                        data_bytes: 0,
                        merged_from: None,
                        base_sync_count: 0,
                    };
                    (d, vec![])
                })
                .collect();
            let cursor = Cursor {
                epoch: if self.log.borrow().is_empty() { 0 } else { self.epoch },
                seq: self.seq(),
            };
            Ok(SyncSnapshot { cursor, datasets })
        }
    }

    /// A frame, shortly: `c<seq>`, `caught<seq>`, `resync<seq>`,
    /// `reload<seq>`, `ds:<name>`.
    fn short(m: &Msg) -> String {
        match m {
            Msg::Change(c) if c.kind == "DATASET" => format!("ds:{}", c.dataset_name),
            Msg::Change(c) => format!("c{}", c.cursor.as_ref().unwrap().seq),
            Msg::CaughtUp(c) => format!("caught{}", c.cursor.as_ref().unwrap().seq),
            Msg::Resync(r) => format!("resync{}", r.from.as_ref().unwrap().seq),
            Msg::Reload(r) => format!("reload{}", r.cursor.as_ref().unwrap().seq),
            other => format!("{other:?}"),
        }
    }

    fn drain(feed: &mut Feed, src: &dyn Source, mut overflows: Vec<bool>) -> Vec<String> {
        let mut out = vec![];
        let mut over = move || {
            if overflows.is_empty() {
                false
            } else {
                overflows.remove(0)
            }
        };
        while let Some(m) = feed.next_backlog(src, &mut over).unwrap() {
            out.push(short(&m));
        }
        out
    }

    fn at(epoch: u64, seq: u64) -> Option<Cursor> {
        Some(Cursor { epoch, seq })
    }

    #[test]
    fn a_resumable_cursor_gets_what_follows_then_live_changes_once() {
        let src = Fake::new(7, 150, &["a"]);
        let mut f = Feed::subscribe(None, at(7, 10), &src).unwrap();
        let frames = drain(&mut f, &src, vec![]);
        let want: Vec<String> = (11..=150)
            .map(|s| format!("c{s}"))
            .chain(["caught150".into()])
            .collect();
        assert_eq!(frames, want, "pages of {PAGE} are stitched without gap");
        // The hub still holds changes the store already gave: skipped.
        let old = src.log.borrow()[149].clone();
        assert_eq!(f.on_change(&old, &src).unwrap(), None);
        let next = src.push("a");
        assert_eq!(short(&f.on_change(&next, &src).unwrap().unwrap()), "c151");
        assert_eq!(f.on_change(&next, &src).unwrap(), None, "never twice");
    }

    #[test]
    fn no_cursor_another_epoch_or_a_trimmed_history_reload() {
        let mut src = Fake::new(7, 5, &["a", "b"]);
        let mut f = Feed::subscribe(None, None, &src).unwrap();
        assert_eq!(drain(&mut f, &src, vec![]), ["reload5", "ds:a", "ds:b", "caught5"]);
        let mut f = Feed::subscribe(None, at(8, 3), &src).unwrap();
        assert_eq!(drain(&mut f, &src, vec![]), ["reload5", "ds:a", "ds:b", "caught5"]);
        src.floor = 4;
        let mut f = Feed::subscribe(None, at(7, 2), &src).unwrap();
        assert_eq!(drain(&mut f, &src, vec![]), ["reload5", "ds:a", "ds:b", "caught5"]);
        let mut f = Feed::subscribe(None, at(7, 3), &src).unwrap();
        assert_eq!(
            drain(&mut f, &src, vec![]),
            ["c4", "c5", "caught5"],
            "change 4 is still kept"
        );
        // An identity with no history yet reloads to nothing, then goes live
        // from its first change.
        let empty = Fake::new(9, 0, &["a"]);
        let mut f = Feed::subscribe(None, None, &empty).unwrap();
        assert_eq!(drain(&mut f, &empty, vec![]), ["reload0", "caught0"]);
        let first = empty.push("a");
        assert_eq!(short(&f.on_change(&first, &empty).unwrap().unwrap()), "c1");
    }

    #[test]
    fn an_overflow_resyncs_from_the_last_cursor_sent() {
        let src = Fake::new(7, 3, &["a"]);
        let mut f = Feed::subscribe(None, at(7, 3), &src).unwrap();
        assert_eq!(drain(&mut f, &src, vec![]), ["caught3"]);
        for _ in 0..5 {
            src.push("a");
        }
        f.resync(&src, "slow").unwrap();
        assert_eq!(
            drain(&mut f, &src, vec![]),
            ["resync3", "c4", "c5", "c6", "c7", "c8", "caught8"]
        );
        // An overflow while catching up extends the catch-up silently.
        let mut f = Feed::subscribe(None, at(7, 6), &src).unwrap();
        let mut frames = vec![];
        let mut first = true;
        let mut over = || {
            if first {
                first = false;
                src.push("a");
                true
            } else {
                false
            }
        };
        while let Some(m) = f.next_backlog(&src, &mut over).unwrap() {
            frames.push(short(&m));
        }
        assert_eq!(frames, ["c7", "c8", "c9", "caught9"]);
    }

    #[test]
    fn a_gap_in_live_events_is_read_from_the_store() {
        let src = Fake::new(7, 2, &["a"]);
        let mut f = Feed::subscribe(None, at(7, 2), &src).unwrap();
        drain(&mut f, &src, vec![]);
        src.push("a");
        let fourth = src.push("a");
        assert_eq!(f.on_change(&fourth, &src).unwrap(), None, "change 3 never came live");
        assert_eq!(drain(&mut f, &src, vec![]), ["resync2", "c3", "c4", "caught4"]);
        // The identity's history was replaced (another epoch): reload.
        let replaced = Fake::new(99, 5, &["a"]);
        let c5 = replaced.log.borrow()[4].clone();
        assert_eq!(f.on_change(&c5, &replaced).unwrap(), None);
        assert_eq!(drain(&mut f, &replaced, vec![]), ["reload5", "ds:a", "caught5"]);
    }

    #[test]
    fn one_dataset_skips_the_others_but_moves_the_cursor() {
        let src = Fake::new(7, 6, &["a", "b"]);
        let mut f = Feed::subscribe(Some("b".into()), at(7, 1), &src).unwrap();
        assert_eq!(drain(&mut f, &src, vec![]), ["c2", "c4", "c6", "caught6"]);
        let a = src.push("a");
        assert_eq!(f.on_change(&a, &src).unwrap(), None);
        assert_eq!(f.last().seq, 7);
        let b = src.push("b");
        assert_eq!(short(&f.on_change(&b, &src).unwrap().unwrap()), "c8");
        let mut f = Feed::subscribe(Some("b".into()), None, &src).unwrap();
        assert_eq!(drain(&mut f, &src, vec![]), ["reload8", "ds:b", "caught8"]);
    }

    #[test]
    fn a_cursor_ahead_of_a_lagging_node_waits_for_the_hub() {
        let src = Fake::new(7, 5, &["a"]);
        let mut f = Feed::subscribe(None, at(7, 8), &src).unwrap();
        assert_eq!(drain(&mut f, &src, vec![]), ["caught8"]);
        for _ in 6..=8 {
            let c = src.push("a");
            assert_eq!(f.on_change(&c, &src).unwrap(), None, "the device has {}", c.seq);
        }
        let c = src.push("a");
        assert_eq!(short(&f.on_change(&c, &src).unwrap().unwrap()), "c9");
    }
}

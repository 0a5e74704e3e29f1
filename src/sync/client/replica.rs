//! The device's local copy of its identity's data: datasets of records as
//! the server sent them, the cursor of the last change applied, and the
//! queue of the device's own writes not yet acknowledged.
//!
//! The copy holds only what the server confirmed, so it always equals the
//! server's state at `cursor`; the device's unacknowledged writes live
//! beside it in `pending`, and [`Replica::local_value`] overlays them for
//! the application's reads.
//!
//! Each queued patch remembers the record's sync count the device's edit was
//! based on (its *base*), captured when the application made the edit, not
//! when the write is sent: a device that edits a key while offline, after
//! another device changed it, must get the conflict. A patch of a key that
//! an earlier queued write also touches is *chained* to that write: it is
//! sent only once the earlier one is answered, and takes its base from that
//! answer, so a device never conflicts with its own writes.
//!
//! The whole of it encodes to bytes with a version byte
//! ([`Replica::encode`]), so a file written by this version still loads
//! after an upgrade. This module does no I/O.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::resolve::{Patch, WriteId};
use crate::model::sync::{Cursor, Record};

/// The local copy of one dataset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LocalDataset {
    /// The dataset's sync count, as of the last change applied.
    pub sync_count: u64,
    /// Records by key, deleted ones (no value) included, as the server
    /// keeps them.
    pub records: BTreeMap<String, Record>,
}

/// What a queued patch's edit was based on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Base {
    /// The record's sync count the device saw (0: it saw no record).
    Known(u64),
    /// An earlier queued write of the same key; known once it is answered.
    After(WriteId),
}

/// One patch of a queued write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingPatch {
    pub key: String,
    pub value: Option<String>,
    pub base: Base,
    /// The device's clock when the application made the edit (Unix ms).
    pub device_time: i64,
}

/// A write the server has not acknowledged yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingWrite {
    pub id: WriteId,
    pub dataset: String,
    pub patches: Vec<PendingPatch>,
    /// The patches' bases when the write first became sendable: what the
    /// writes chained after it inherit for a key it does not end up
    /// writing (dropped, refused, or resolved away).
    pub first_bases: BTreeMap<String, u64>,
    /// Conflict resolutions so far.
    pub resolutions: u32,
}

impl PendingWrite {
    /// Whether every patch's base is known, so the write can be sent.
    pub fn sendable(&self) -> bool {
        self.patches.iter().all(|p| matches!(p.base, Base::Known(_)))
    }

    /// The patches as the application sees them.
    pub fn patches(&self) -> Vec<Patch> {
        self.patches
            .iter()
            .map(|p| Patch {
                key: p.key.clone(),
                value: p.value.clone(),
            })
            .collect()
    }
}

/// The local copy, the cursor and the write queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Replica {
    /// The identity pool this copy belongs to.
    pub identity_pool_id: String,
    /// The device it belongs to.
    pub device_id: String,
    /// The identity whose data it holds, once a server said so.
    pub identity_id: Option<String>,
    /// The last change applied; `None` until the first load.
    pub cursor: Option<Cursor>,
    /// Datasets by name.
    pub datasets: BTreeMap<String, LocalDataset>,
    /// The device's writes, oldest first.
    pub pending: VecDeque<PendingWrite>,
    /// The id the next queued write gets.
    pub next_write_id: WriteId,
    /// Sync counts of acknowledged writes whose change has not been applied
    /// yet: `(dataset, key) -> (sync_count, seq of the change)`. Gives the
    /// next edit of that key its base before the change arrives.
    pub acked: BTreeMap<(String, String), (u64, u64)>,
}

impl Replica {
    /// An empty copy for one device of one identity pool.
    pub fn new(identity_pool_id: &str, device_id: &str) -> Self {
        Replica {
            identity_pool_id: identity_pool_id.to_string(),
            device_id: device_id.to_string(),
            identity_id: None,
            cursor: None,
            datasets: BTreeMap::new(),
            pending: VecDeque::new(),
            next_write_id: 1,
            acked: BTreeMap::new(),
        }
    }

    /// Forgets the data (not the queued writes): the copy now belongs to
    /// `identity_id`, and the next subscription reloads it.
    pub fn reset_to(&mut self, identity_id: &str) {
        self.identity_id = Some(identity_id.to_string());
        self.cursor = None;
        self.datasets.clear();
        self.acked.clear();
    }

    /// The record of `key`, as confirmed by the server.
    pub fn record(&self, dataset: &str, key: &str) -> Option<&Record> {
        self.datasets.get(dataset).and_then(|d| d.records.get(key))
    }

    /// The value the application sees: its own latest queued edit of the
    /// key, else the confirmed value. `None`: no value (never set, or
    /// removed).
    pub fn local_value(&self, dataset: &str, key: &str) -> Option<String> {
        let queued = self
            .pending
            .iter()
            .rev()
            .filter(|w| w.dataset == dataset)
            .find_map(|w| w.patches.iter().find(|p| p.key == key));
        match queued {
            Some(p) => p.value.clone(),
            None => self.record(dataset, key).and_then(|r| r.value.clone()),
        }
    }

    /// The sync count the device last knew for a record: the confirmed
    /// record's, or a later acknowledged write's.
    pub fn known_sync_count(&self, dataset: &str, key: &str) -> u64 {
        let confirmed = self.record(dataset, key).map_or(0, |r| r.sync_count);
        let acked = self
            .acked
            .get(&(dataset.to_string(), key.to_string()))
            .map_or(0, |(s, _)| *s);
        confirmed.max(acked)
    }

    /// Queues a write of `patches` (keys already checked unique), giving
    /// each patch its base; returns its id.
    pub fn enqueue(&mut self, dataset: &str, patches: Vec<Patch>, device_time: i64) -> WriteId {
        let id = self.next_write_id;
        self.next_write_id += 1;
        let patches = patches
            .into_iter()
            .map(|p| {
                let earlier = self
                    .pending
                    .iter()
                    .rev()
                    .find(|w| w.dataset == dataset && w.patches.iter().any(|q| q.key == p.key))
                    .map(|w| w.id);
                let base = match earlier {
                    Some(w) => Base::After(w),
                    None => Base::Known(self.known_sync_count(dataset, &p.key)),
                };
                PendingPatch {
                    key: p.key,
                    value: p.value,
                    base,
                    device_time,
                }
            })
            .collect();
        self.pending.push_back(PendingWrite {
            id,
            dataset: dataset.to_string(),
            patches,
            first_bases: BTreeMap::new(),
            resolutions: 0,
        });
        id
    }

    /// The queued write `id`.
    pub fn pending_write(&self, id: WriteId) -> Option<&PendingWrite> {
        self.pending.iter().find(|w| w.id == id)
    }

    /// The queued write `id`, to change.
    pub fn pending_write_mut(&mut self, id: WriteId) -> Option<&mut PendingWrite> {
        self.pending.iter_mut().find(|w| w.id == id)
    }

    /// Removes write `id` after the server answered it. `written` maps each
    /// key it wrote to the record's new sync count (empty when nothing was
    /// written); `seq` is the change's number. The writes chained after it
    /// get their bases: the new sync count of a key it wrote, else the base
    /// it had itself.
    pub fn finish(&mut self, id: WriteId, written: &BTreeMap<String, u64>, seq: Option<u64>) -> Option<PendingWrite> {
        let at = self.pending.iter().position(|w| w.id == id)?;
        let done = self.pending.remove(at)?;
        let applied_seq = self.cursor.map_or(0, |c| c.seq);
        if let Some(seq) = seq.filter(|s| *s > applied_seq) {
            for (key, sync_count) in written {
                let slot = self.acked.entry((done.dataset.clone(), key.clone())).or_insert((0, 0));
                if *sync_count >= slot.0 {
                    *slot = (*sync_count, seq);
                }
            }
        }
        for w in self.pending.iter_mut().filter(|w| w.dataset == done.dataset) {
            for p in &mut w.patches {
                if p.base == Base::After(id) {
                    let inherited = written
                        .get(&p.key)
                        .or_else(|| done.first_bases.get(&p.key))
                        .copied()
                        .unwrap_or_else(|| {
                            done.patches
                                .iter()
                                .find(|q| q.key == p.key)
                                .and_then(|q| match q.base {
                                    Base::Known(b) => Some(b),
                                    Base::After(_) => None,
                                })
                                .unwrap_or(0)
                        });
                    p.base = Base::Known(inherited);
                }
            }
        }
        Some(done)
    }

    /// Whether the confirmed copy already shows write `id` as done: every
    /// key holds the write's value, written by this device, past the
    /// patch's base. A write whose answer was lost with its connection is
    /// recognised this way instead of being written twice.
    pub fn shows_applied(&self, w: &PendingWrite) -> Option<BTreeMap<String, u64>> {
        let mut written = BTreeMap::new();
        for p in &w.patches {
            let r = self.record(&w.dataset, &p.key)?;
            let past_base = match p.base {
                Base::Known(b) => r.sync_count > b,
                Base::After(_) => false,
            };
            if !(past_base && r.value == p.value && r.last_modified_by == self.device_id) {
                return None;
            }
            written.insert(p.key.clone(), r.sync_count);
        }
        Some(written)
    }

    /// Forgets acknowledged sync counts that the copy has caught up with.
    pub fn prune_acked(&mut self) {
        let seq = self.cursor.map_or(0, |c| c.seq);
        self.acked.retain(|_, (_, at)| *at > seq);
    }

    /// Encodes the whole copy: a magic, a version byte, then the version's
    /// body.
    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        let file = FileV1::from(self);
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(MAGIC);
        out.push(VERSION_1);
        out.extend_from_slice(&postcard::to_stdvec(&file)?);
        Ok(out)
    }

    /// Decodes bytes of [`Replica::encode`], of this or an older version.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let rest = bytes.strip_prefix(MAGIC).ok_or(DecodeError::NotAReplica)?;
        let (&version, body) = rest.split_first().ok_or(DecodeError::NotAReplica)?;
        match version {
            VERSION_1 => {
                let (file, extra): (FileV1, &[u8]) = postcard::take_from_bytes(body)?;
                if !extra.is_empty() {
                    return Err(DecodeError::Trailing(extra.len()));
                }
                Ok(file.into())
            }
            v => Err(DecodeError::Version(v)),
        }
    }
}

/// Why stored bytes are not a local copy.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The file does not start with the magic.
    #[error("not a tessera sync replica file")]
    NotAReplica,
    /// A version this build does not know (written by a newer one).
    #[error("replica file version {0} is newer than this build understands")]
    Version(u8),
    /// The body does not decode.
    #[error("corrupt replica file: {0}")]
    Body(#[from] postcard::Error),
    /// Bytes after the body.
    #[error("corrupt replica file: {0} bytes after the end")]
    Trailing(usize),
}

/// First bytes of a replica file.
const MAGIC: &[u8; 8] = b"TSSYNCR\0";
/// The first (current) encoding.
const VERSION_1: u8 = 1;

// The stored form, version 1. Its own types, so that a change to the
// model's types cannot silently change the file format: a new layout is a
// new version with a conversion from this one.

#[derive(Serialize, Deserialize)]
struct FileV1 {
    identity_pool_id: String,
    device_id: String,
    identity_id: Option<String>,
    cursor: Option<(u64, u64)>,
    datasets: Vec<DatasetV1>,
    pending: Vec<PendingV1>,
    next_write_id: u64,
    acked: Vec<(String, String, u64, u64)>,
}

#[derive(Serialize, Deserialize)]
struct DatasetV1 {
    name: String,
    sync_count: u64,
    records: Vec<RecordV1>,
}

#[derive(Serialize, Deserialize)]
struct RecordV1 {
    key: String,
    value: Option<String>,
    sync_count: u64,
    last_modified_date: i64,
    last_modified_by: String,
    device_last_modified_date: i64,
}

#[derive(Serialize, Deserialize)]
struct PendingV1 {
    id: u64,
    dataset: String,
    patches: Vec<PatchV1>,
    first_bases: Vec<(String, u64)>,
    resolutions: u32,
}

#[derive(Serialize, Deserialize)]
struct PatchV1 {
    key: String,
    value: Option<String>,
    /// `(false, n)`: known sync count n; `(true, w)`: after write w.
    after: bool,
    base: u64,
    device_time: i64,
}

impl From<&Replica> for FileV1 {
    fn from(r: &Replica) -> Self {
        FileV1 {
            identity_pool_id: r.identity_pool_id.clone(),
            device_id: r.device_id.clone(),
            identity_id: r.identity_id.clone(),
            cursor: r.cursor.map(|c| (c.epoch, c.seq)),
            datasets: r
                .datasets
                .iter()
                .map(|(name, d)| DatasetV1 {
                    name: name.clone(),
                    sync_count: d.sync_count,
                    records: d
                        .records
                        .values()
                        .map(|x| RecordV1 {
                            key: x.key.clone(),
                            value: x.value.clone(),
                            sync_count: x.sync_count,
                            last_modified_date: x.last_modified_date,
                            last_modified_by: x.last_modified_by.clone(),
                            device_last_modified_date: x.device_last_modified_date,
                        })
                        .collect(),
                })
                .collect(),
            pending: r
                .pending
                .iter()
                .map(|w| PendingV1 {
                    id: w.id,
                    dataset: w.dataset.clone(),
                    patches: w
                        .patches
                        .iter()
                        .map(|p| {
                            let (after, base) = match p.base {
                                Base::Known(n) => (false, n),
                                Base::After(w) => (true, w),
                            };
                            PatchV1 {
                                key: p.key.clone(),
                                value: p.value.clone(),
                                after,
                                base,
                                device_time: p.device_time,
                            }
                        })
                        .collect(),
                    first_bases: w.first_bases.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                    resolutions: w.resolutions,
                })
                .collect(),
            next_write_id: r.next_write_id,
            acked: r
                .acked
                .iter()
                .map(|((d, k), (s, q))| (d.clone(), k.clone(), *s, *q))
                .collect(),
        }
    }
}

impl From<FileV1> for Replica {
    fn from(f: FileV1) -> Self {
        Replica {
            identity_pool_id: f.identity_pool_id,
            device_id: f.device_id,
            identity_id: f.identity_id,
            cursor: f.cursor.map(|(epoch, seq)| Cursor { epoch, seq }),
            datasets: f
                .datasets
                .into_iter()
                .map(|d| {
                    let records = d
                        .records
                        .into_iter()
                        .map(|x| {
                            let r = Record {
                                key: x.key,
                                value: x.value,
                                sync_count: x.sync_count,
                                last_modified_date: x.last_modified_date,
                                last_modified_by: x.last_modified_by,
                                device_last_modified_date: x.device_last_modified_date,
                            };
                            (r.key.clone(), r)
                        })
                        .collect();
                    (
                        d.name,
                        LocalDataset {
                            sync_count: d.sync_count,
                            records,
                        },
                    )
                })
                .collect(),
            pending: f
                .pending
                .into_iter()
                .map(|w| PendingWrite {
                    id: w.id,
                    dataset: w.dataset,
                    patches: w
                        .patches
                        .into_iter()
                        .map(|p| PendingPatch {
                            key: p.key,
                            value: p.value,
                            base: if p.after {
                                Base::After(p.base)
                            } else {
                                Base::Known(p.base)
                            },
                            device_time: p.device_time,
                        })
                        .collect(),
                    first_bases: w.first_bases.into_iter().collect(),
                    resolutions: w.resolutions,
                })
                .collect(),
            next_write_id: f.next_write_id,
            acked: f.acked.into_iter().map(|(d, k, s, q)| ((d, k), (s, q))).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn record(key: &str, value: Option<&str>, sync_count: u64, by: &str) -> Record {
        Record {
            key: key.into(),
            value: value.map(Into::into),
            sync_count,
            last_modified_date: 1,
            last_modified_by: by.into(),
            device_last_modified_date: 0,
        }
    }

    fn with_record(r: &mut Replica, ds: &str, rec: Record) {
        let d = r.datasets.entry(ds.into()).or_default();
        d.sync_count = d.sync_count.max(rec.sync_count);
        d.records.insert(rec.key.clone(), rec);
    }

    #[test]
    fn bases_come_from_the_copy_or_chain_to_earlier_writes() {
        let mut r = Replica::new("pool", "dev");
        r.cursor = Some(Cursor { epoch: 1, seq: 5 });
        with_record(&mut r, "ds", record("a", Some("1"), 4, "other"));
        let w1 = r.enqueue("ds", vec![Patch::replace("a", "2"), Patch::replace("b", "x")], 0);
        let w2 = r.enqueue("ds", vec![Patch::replace("a", "3")], 0);
        let w3 = r.enqueue("other", vec![Patch::replace("a", "9")], 0);
        let bases =
            |r: &Replica, id| -> Vec<Base> { r.pending_write(id).unwrap().patches.iter().map(|p| p.base).collect() };
        assert_eq!(bases(&r, w1), vec![Base::Known(4), Base::Known(0)]);
        assert_eq!(
            bases(&r, w2),
            vec![Base::After(w1)],
            "a second edit of a waits for the first"
        );
        assert_eq!(
            bases(&r, w3),
            vec![Base::Known(0)],
            "another dataset's key is another record"
        );
        assert_eq!(
            r.local_value("ds", "a").as_deref(),
            Some("3"),
            "reads see the latest queued edit"
        );
        assert!(!r.pending_write(w2).unwrap().sendable());

        // w1 is acknowledged: a at 6, b at 6, change 6. w2 takes a's new count.
        let written = BTreeMap::from([("a".to_string(), 6), ("b".to_string(), 6)]);
        r.finish(w1, &written, Some(6)).unwrap();
        assert_eq!(bases(&r, w2), vec![Base::Known(6)]);
        assert_eq!(
            r.known_sync_count("ds", "b"),
            6,
            "the ack is known before its change arrives"
        );
        // The change arrives: the ack's memory is no longer needed.
        r.cursor = Some(Cursor { epoch: 1, seq: 6 });
        r.prune_acked();
        assert!(r.acked.is_empty());
    }

    #[test]
    fn a_write_that_ends_without_writing_passes_its_own_base_on() {
        let mut r = Replica::new("pool", "dev");
        with_record(&mut r, "ds", record("a", Some("1"), 3, "other"));
        let w1 = r.enqueue("ds", vec![Patch::replace("a", "2")], 0);
        let w2 = r.enqueue("ds", vec![Patch::remove("a")], 0);
        r.pending_write_mut(w1).unwrap().first_bases.insert("a".into(), 3);
        r.finish(w1, &BTreeMap::new(), None).unwrap();
        assert_eq!(r.pending_write(w2).unwrap().patches[0].base, Base::Known(3));
        assert_eq!(r.local_value("ds", "a"), None, "the queued removal shows");
    }

    #[test]
    fn a_lost_answer_is_recognised_in_the_copy() {
        let mut r = Replica::new("pool", "dev");
        with_record(&mut r, "ds", record("a", Some("1"), 3, "other"));
        let w = r.enqueue("ds", vec![Patch::replace("a", "2")], 0);
        let pending = r.pending_write(w).unwrap().clone();
        assert!(r.shows_applied(&pending).is_none());
        with_record(&mut r, "ds", record("a", Some("2"), 4, "other"));
        assert!(
            r.shows_applied(&pending).is_none(),
            "another device's equal value is not ours"
        );
        with_record(&mut r, "ds", record("a", Some("2"), 4, "dev"));
        assert_eq!(r.shows_applied(&pending), Some(BTreeMap::from([("a".to_string(), 4)])));
    }

    #[test]
    fn the_encoding_round_trips_and_refuses_what_it_does_not_know() {
        let mut r = Replica::new("pool", "dev");
        r.identity_id = Some("local:abc".into());
        r.cursor = Some(Cursor { epoch: 9, seq: 2 });
        with_record(&mut r, "ds", record("a", Some("1"), 1, "dev"));
        with_record(&mut r, "ds", record("gone", None, 2, "dev"));
        let w1 = r.enqueue("ds", vec![Patch::replace("a", "2")], 77);
        r.enqueue("ds", vec![Patch::remove("a")], 78);
        r.pending_write_mut(w1).unwrap().first_bases.insert("a".into(), 1);
        r.acked.insert(("ds".into(), "z".into()), (5, 3));
        let bytes = r.encode().unwrap();
        assert_eq!(Replica::decode(&bytes).unwrap(), r);

        let mut newer = bytes.clone();
        newer[MAGIC.len()] = 2;
        assert!(matches!(Replica::decode(&newer), Err(DecodeError::Version(2))));
        assert!(matches!(
            Replica::decode(b"something else"),
            Err(DecodeError::NotAReplica)
        ));
        let truncated = &bytes[..bytes.len() - 3];
        assert!(Replica::decode(truncated).is_err());
        let mut longer = bytes;
        longer.push(0);
        assert!(matches!(Replica::decode(&longer), Err(DecodeError::Trailing(1))));
    }
}

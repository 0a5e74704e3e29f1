//! Apply logic of per-identity sync data: record updates with Cognito
//! Sync's conflict rule, dataset deletion, and what identity merges and
//! deletions do to the data.
//!
//! Every change gets the next number of its identity's sequence and goes
//! into the identity's change log in the same batch as its effects, so a
//! device that resumes from a cursor on any node reads exactly the changes
//! it missed. The log is trimmed from its oldest end (by count and bytes);
//! a cursor older than what is kept must reload. Each change is also handed
//! to the batch as an event, which the state machine publishes on the
//! node's hub after the batch is written.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{not_found, Apply, ApplyError, Outcome, Rejection};
use crate::model::identity::Identity;
use crate::model::sync::{
    validate_dataset_name, validate_device_id, validate_existing_dataset_name, validate_patches, Change, ChangeKind,
    Dataset, PatchOp, Record, RecordPatch, SyncEvent, SyncLimits, SyncState, MAX_MERGED_NAME_CHARS,
};
use crate::store::keys::Table;
use crate::store::sync::{dataset_key, identity_prefix, log_key, record_key, records_prefix, state_key};
use crate::store::{codec, SmBatch, Store, StoreError};

/// Most changes an identity's log keeps. A device offline for longer
/// reloads the identity's data instead of replaying.
pub const LOG_MAX_CHANGES: u64 = 4096;
/// Most bytes of changes an identity's log keeps.
pub const LOG_MAX_BYTES: u64 = 8 << 20;

/// The epoch of an identity's history, from what its first change
/// carries: deterministic, and distinct per identity.
fn epoch_of(identity_id: &str, now: i64) -> u64 {
    let mut h = Sha256::new();
    h.update(identity_id.as_bytes());
    h.update(now.to_be_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    // Never 0: a zero epoch on the wire means "no cursor".
    u64::from_be_bytes(b).max(1)
}

/// Appends changes to one identity's log within one batch, keeping its
/// state in hand (reads do not see the batch's own writes).
struct SyncWriter {
    pool_id: String,
    identity_id: String,
    state: SyncState,
    /// Sizes of changes appended in this batch, for trimming.
    staged: BTreeMap<u64, u64>,
}

impl SyncWriter {
    fn open(store: &Store, pool_id: &str, identity_id: &str, now: i64) -> Result<Self, StoreError> {
        let state = store
            .sync_state(pool_id, identity_id)?
            .unwrap_or_else(|| SyncState::new(epoch_of(identity_id, now)));
        Ok(SyncWriter {
            pool_id: pool_id.into(),
            identity_id: identity_id.into(),
            state,
            staged: BTreeMap::new(),
        })
    }

    /// Numbers `change`, logs it, trims the log, and emits the event.
    fn append(&mut self, store: &Store, batch: &mut SmBatch<'_>, mut change: Change) -> Result<Change, ApplyError> {
        self.state.seq += 1;
        change.epoch = self.state.epoch;
        change.seq = self.state.seq;
        self.state.last_modified_date = self.state.last_modified_date.max(change.at);
        let size = change.bytes();
        batch.put(
            Table::SyncLog,
            &log_key(&self.pool_id, &self.identity_id, change.seq),
            &codec::encode(&change)?,
        )?;
        self.staged.insert(change.seq, size);
        self.state.log_bytes += size;
        while self.state.floor < self.state.seq
            && (self.state.seq - self.state.floor + 1 > LOG_MAX_CHANGES || self.state.log_bytes > LOG_MAX_BYTES)
        {
            let old = self.state.floor;
            let old_size = match self.staged.get(&old) {
                Some(s) => *s,
                None => store
                    .sync_change(&self.pool_id, &self.identity_id, old)?
                    .map_or(0, |c| c.bytes()),
            };
            batch.delete(Table::SyncLog, &log_key(&self.pool_id, &self.identity_id, old))?;
            self.state.log_bytes = self.state.log_bytes.saturating_sub(old_size);
            self.state.floor += 1;
        }
        batch.emit(SyncEvent::Change(Arc::new(change.clone())));
        Ok(change)
    }

    fn finish(self, batch: &mut SmBatch<'_>) -> Result<(), ApplyError> {
        batch.put(
            Table::SyncStates,
            &state_key(&self.pool_id, &self.identity_id),
            &codec::encode(&self.state)?,
        )?;
        Ok(())
    }
}

/// The identity, if it exists in `pool_id` and was not merged away; else
/// the rejection to answer with.
fn live_identity(store: &Store, pool_id: &str, identity_id: &str) -> Result<Result<Identity, Outcome>, StoreError> {
    match store.identity_by_id(identity_id)? {
        Some(i) if i.pool_id == pool_id => match &i.merged_into {
            Some(survivor) => Ok(Err(Outcome::Rejected(Rejection::ResourceConflict(format!(
                "identity {identity_id} was merged into {survivor}; its data moved there"
            ))))),
            None => Ok(Ok(i)),
        },
        _ => Ok(Err(not_found("identity", identity_id))),
    }
}

/// `UpdateRecords`: applies patches to one dataset, all or nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateRecords {
    /// The identity pool.
    pub identity_pool_id: String,
    /// The identity.
    pub identity_id: String,
    /// The dataset (created by its first update).
    pub dataset: String,
    /// Who writes (the device id, or `admin`).
    pub device_id: String,
    /// The patches, each key at most once.
    pub patches: Vec<RecordPatch>,
    /// The bounds in force at the proposer.
    pub limits: SyncLimits,
    /// When the proposer prepared it (Unix milliseconds).
    pub now: i64,
}

impl Apply for UpdateRecords {
    type Output = Change;

    fn validate(&self) -> Result<(), Rejection> {
        let invalid = |e: crate::model::ValidationError| Rejection::Invalid(e.to_string());
        validate_existing_dataset_name(&self.dataset).map_err(invalid)?;
        validate_device_id(&self.device_id).map_err(invalid)?;
        validate_patches(&self.patches, &self.limits).map_err(invalid)?;
        if self.patches.is_empty() {
            return Err(Rejection::Invalid("an update needs at least one patch".into()));
        }
        Ok(())
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let (pool_id, identity_id) = (self.identity_pool_id.as_str(), self.identity_id.as_str());
        if let Err(rejected) = live_identity(store, pool_id, identity_id)? {
            return Ok(rejected);
        }
        let mut writer = SyncWriter::open(store, pool_id, identity_id, self.now)?;
        let existing = store.dataset(pool_id, identity_id, &self.dataset)?;
        let mut dataset = match existing {
            Some(d) => d,
            None => {
                if let Err(e) = validate_dataset_name(&self.dataset) {
                    return Ok(Outcome::Rejected(Rejection::Invalid(e.to_string())));
                }
                if writer.state.dataset_count >= self.limits.max_datasets {
                    return Ok(Outcome::Rejected(Rejection::LimitExceeded(format!(
                        "identity {identity_id} already has {} datasets, the most allowed",
                        self.limits.max_datasets
                    ))));
                }
                writer.state.dataset_count += 1;
                // Counts continue from the identity's change number, past
                // any count an earlier dataset of this name reached, so
                // that a device of that one is told to start over.
                Dataset {
                    name: self.dataset.clone(),
                    creation_date: self.now,
                    last_modified_date: self.now,
                    last_modified_by: self.device_id.clone(),
                    sync_count: writer.state.seq,
                    num_records: 0,
                    data_bytes: 0,
                    merged_from: None,
                    base_sync_count: writer.state.seq,
                }
            }
        };
        let keys: Vec<&str> = self.patches.iter().map(|p| p.key.as_str()).collect();
        let current = store.records_by_key(pool_id, identity_id, &self.dataset, &keys)?;
        let conflicts: Vec<Record> = self
            .patches
            .iter()
            .zip(&current)
            .filter_map(|(p, cur)| cur.as_ref().filter(|r| p.sync_count < r.sync_count).cloned())
            .collect();
        if !conflicts.is_empty() {
            return Ok(Outcome::Rejected(Rejection::SyncConflict {
                records: conflicts,
                dataset_sync_count: dataset.sync_count,
            }));
        }
        dataset.sync_count += 1;
        let mut written = Vec::with_capacity(self.patches.len());
        let (mut records, mut bytes) = (u64::from(dataset.num_records), dataset.data_bytes);
        for (p, cur) in self.patches.iter().zip(&current) {
            let record = Record {
                key: p.key.clone(),
                value: match p.op {
                    PatchOp::Replace => p.value.clone(),
                    PatchOp::Remove => None,
                },
                sync_count: dataset.sync_count,
                last_modified_date: self.now,
                last_modified_by: self.device_id.clone(),
                device_last_modified_date: p.device_last_modified_date,
            };
            match cur {
                Some(old) => bytes = bytes.saturating_sub(old.bytes()),
                None => records += 1,
            }
            bytes += record.bytes();
            written.push(record);
        }
        if records > u64::from(self.limits.max_records) {
            return Ok(Outcome::Rejected(Rejection::LimitExceeded(format!(
                "dataset {} would hold {records} records; at most {} are allowed, deleted ones included until the dataset is deleted",
                self.dataset, self.limits.max_records
            ))));
        }
        if bytes > self.limits.max_dataset_bytes {
            return Ok(Outcome::Rejected(Rejection::LimitExceeded(format!(
                "dataset {} would hold {bytes} bytes; at most {} are allowed",
                self.dataset, self.limits.max_dataset_bytes
            ))));
        }
        writer.state.data_bytes = writer.state.data_bytes.saturating_sub(dataset.data_bytes) + bytes;
        dataset.num_records = records as u32;
        dataset.data_bytes = bytes;
        dataset.last_modified_date = self.now;
        dataset.last_modified_by = self.device_id.clone();
        for r in &written {
            batch.put(
                Table::Records,
                &record_key(pool_id, identity_id, &self.dataset, &r.key),
                &codec::encode(r)?,
            )?;
        }
        batch.put(
            Table::Datasets,
            &dataset_key(pool_id, identity_id, &self.dataset),
            &codec::encode(&dataset)?,
        )?;
        let change = writer.append(
            store,
            batch,
            Change {
                identity_pool_id: pool_id.into(),
                identity_id: identity_id.into(),
                epoch: 0,
                seq: 0,
                dataset: self.dataset.clone(),
                kind: ChangeKind::Update,
                dataset_sync_count: dataset.sync_count,
                records: written,
                device_id: self.device_id.clone(),
                at: self.now,
            },
        )?;
        writer.finish(batch)?;
        Ok(Outcome::SyncChange(Box::new(change)))
    }
}

/// `DeleteDataset`: removes a dataset and its records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteDataset {
    /// The identity pool.
    pub identity_pool_id: String,
    /// The identity.
    pub identity_id: String,
    /// The dataset.
    pub dataset: String,
    /// Who deletes (the device id, or `admin`).
    pub device_id: String,
    /// When the proposer prepared it (Unix milliseconds).
    pub now: i64,
}

impl Apply for DeleteDataset {
    type Output = Change;

    fn validate(&self) -> Result<(), Rejection> {
        let invalid = |e: crate::model::ValidationError| Rejection::Invalid(e.to_string());
        validate_existing_dataset_name(&self.dataset).map_err(invalid)?;
        validate_device_id(&self.device_id).map_err(invalid)
    }

    fn apply(&self, store: &Store, batch: &mut SmBatch<'_>) -> Result<Outcome, ApplyError> {
        let (pool_id, identity_id) = (self.identity_pool_id.as_str(), self.identity_id.as_str());
        if let Err(rejected) = live_identity(store, pool_id, identity_id)? {
            return Ok(rejected);
        }
        let Some(dataset) = store.dataset(pool_id, identity_id, &self.dataset)? else {
            return Ok(not_found("dataset", &self.dataset));
        };
        let mut writer = SyncWriter::open(store, pool_id, identity_id, self.now)?;
        batch.delete_prefix(Table::Records, &records_prefix(pool_id, identity_id, &self.dataset))?;
        batch.delete(Table::Datasets, &dataset_key(pool_id, identity_id, &self.dataset))?;
        writer.state.dataset_count = writer.state.dataset_count.saturating_sub(1);
        writer.state.data_bytes = writer.state.data_bytes.saturating_sub(dataset.data_bytes);
        let change = writer.append(
            store,
            batch,
            Change {
                identity_pool_id: pool_id.into(),
                identity_id: identity_id.into(),
                epoch: 0,
                seq: 0,
                dataset: self.dataset.clone(),
                kind: ChangeKind::DatasetDeleted,
                dataset_sync_count: dataset.sync_count,
                records: Vec::new(),
                device_id: self.device_id.clone(),
                at: self.now,
            },
        )?;
        writer.finish(batch)?;
        Ok(Outcome::SyncChange(Box::new(change)))
    }
}

/// The name a dataset takes in the survivor of a merge:
/// `<dataset>.<merged identity id>`, its head shortened if the whole would
/// be longer than a merged name may be.
fn merged_name(dataset: &str, from: &str, attempt: u32) -> String {
    let tail = match attempt {
        0 => format!(".{from}"),
        n => format!(".{from}.{n}"),
    };
    let room = MAX_MERGED_NAME_CHARS.saturating_sub(tail.len());
    let head: String = dataset.chars().take(room).collect();
    format!("{head}{tail}")
}

/// The first merged name for `dataset` of `from` that the survivor does
/// not hold yet: a device may have made a dataset of that very name, and
/// merged data must never be dropped for it.
fn free_merged_name(
    store: &Store,
    pool_id: &str,
    survivor: &str,
    dataset: &str,
    from: &str,
) -> Result<String, StoreError> {
    let mut attempt = 0;
    loop {
        let name = merged_name(dataset, from, attempt);
        if store.dataset(pool_id, survivor, &name)?.is_none() {
            return Ok(name);
        }
        attempt += 1;
    }
}

/// Moves the sync data of identities merged into `survivor`, as Cognito
/// Sync does: each dataset `d` of a merged identity `m` becomes
/// `d.<m>` in the survivor, listed as merged until a device deletes it
/// (beyond the dataset limit: nothing is dropped). The merged identity's
/// own data and history are deleted, and its sessions are told where the
/// data went.
pub(crate) fn merge_sync_data(
    store: &Store,
    batch: &mut SmBatch<'_>,
    pool_id: &str,
    merged: &[&str],
    survivor: &str,
    now: i64,
) -> Result<(), ApplyError> {
    let mut writer: Option<SyncWriter> = None;
    for from in merged {
        if store.sync_state(pool_id, from)?.is_some() {
            let w = match writer.as_mut() {
                Some(w) => w,
                None => writer.insert(SyncWriter::open(store, pool_id, survivor, now)?),
            };
            for mut ds in store.datasets_page(pool_id, from, None, usize::MAX)? {
                let name = free_merged_name(store, pool_id, survivor, &ds.name, from)?;
                let records = store.records_page(pool_id, from, &ds.name, None, usize::MAX)?;
                ds.name = name.clone();
                ds.sync_count = 1;
                ds.base_sync_count = 0;
                ds.merged_from = Some((*from).to_string());
                ds.last_modified_date = now;
                let records: Vec<Record> = records
                    .into_iter()
                    .map(|mut r| {
                        r.sync_count = 1;
                        r
                    })
                    .collect();
                for r in &records {
                    batch.put(
                        Table::Records,
                        &record_key(pool_id, survivor, &name, &r.key),
                        &codec::encode(r)?,
                    )?;
                }
                batch.put(
                    Table::Datasets,
                    &dataset_key(pool_id, survivor, &name),
                    &codec::encode(&ds)?,
                )?;
                w.state.dataset_count += 1;
                w.state.data_bytes += ds.data_bytes;
                w.append(
                    store,
                    batch,
                    Change {
                        identity_pool_id: pool_id.into(),
                        identity_id: survivor.into(),
                        epoch: 0,
                        seq: 0,
                        dataset: name,
                        kind: ChangeKind::DatasetMerged,
                        dataset_sync_count: 1,
                        records,
                        device_id: String::new(),
                        at: now,
                    },
                )?;
            }
        }
        delete_sync_rows(batch, pool_id, from)?;
        batch.emit(SyncEvent::IdentityGone {
            identity_id: (*from).to_string(),
            merged_into: Some(survivor.to_string()),
        });
    }
    if let Some(w) = writer {
        w.finish(batch)?;
    }
    Ok(())
}

/// Deletes an identity's sync data and history, and ends its sessions.
pub(crate) fn delete_sync_data(batch: &mut SmBatch<'_>, pool_id: &str, identity_id: &str) -> Result<(), ApplyError> {
    delete_sync_rows(batch, pool_id, identity_id)?;
    batch.emit(SyncEvent::IdentityGone {
        identity_id: identity_id.to_string(),
        merged_into: None,
    });
    Ok(())
}

fn delete_sync_rows(batch: &mut SmBatch<'_>, pool_id: &str, identity_id: &str) -> Result<(), StoreError> {
    let prefix = identity_prefix(pool_id, identity_id);
    batch.delete_prefix(Table::Datasets, &prefix)?;
    batch.delete_prefix(Table::Records, &prefix)?;
    batch.delete_prefix(Table::SyncLog, &prefix)?;
    batch.delete(Table::SyncStates, &state_key(pool_id, identity_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::testkit::{identity_pool, run, store_with_pool};
    use crate::command::{DeleteIdentities, MergeDeveloperIdentities, ResolveIdentity};
    use crate::model::identity::Login;
    use crate::model::identity_pool::identity_id_from_random;

    fn new_identity(store: &Store, pool: &str, subject: &str, n: u8) -> String {
        let out = run(
            store,
            ResolveIdentity {
                pool_id: pool.into(),
                logins: vec![Login {
                    provider: "dev.example".into(),
                    subject: subject.into(),
                }],
                identity_id: None,
                new_id: identity_id_from_random(crate::model::identity_pool::IDENTITY_ID_PREFIX, [n; 16]),
                now: 1,
            },
        );
        match out {
            Outcome::Identity(i) => i.id,
            other => panic!("{other:?}"),
        }
    }

    fn patch(key: &str, value: Option<&str>, sync_count: u64) -> RecordPatch {
        RecordPatch {
            op: if value.is_some() {
                PatchOp::Replace
            } else {
                PatchOp::Remove
            },
            key: key.into(),
            value: value.map(Into::into),
            sync_count,
            device_last_modified_date: 0,
        }
    }

    fn update(pool: &str, id: &str, ds: &str, patches: Vec<RecordPatch>) -> UpdateRecords {
        UpdateRecords {
            identity_pool_id: pool.into(),
            identity_id: id.into(),
            dataset: ds.into(),
            device_id: "phone".into(),
            patches,
            limits: SyncLimits::default(),
            now: 100,
        }
    }

    fn change(out: Outcome) -> Change {
        match out {
            Outcome::SyncChange(c) => *c,
            other => panic!("expected a change, got {other:?}"),
        }
    }

    /// Applies like the state machine and returns the events it would
    /// publish.
    fn run_events(store: &Store, cmd: impl Into<crate::command::Command>) -> (Outcome, Vec<SyncEvent>) {
        let cmd: crate::command::Command = cmd.into();
        let mut b = store.sm_batch();
        let out = cmd.apply(store, &mut b).unwrap();
        let events = b.take_events();
        b.commit().unwrap();
        (out, events)
    }

    #[test]
    fn updates_count_conflict_and_write_all_or_nothing() {
        let (_d, store) = store_with_pool(&[]);
        let pool = identity_pool(&store, false);
        let id = new_identity(&store, &pool, "alice", 2);
        let (out, events) = run_events(&store, update(&pool, &id, "prefs", vec![patch("a", Some("1"), 0)]));
        let c1 = change(out);
        assert_eq!((c1.seq, c1.dataset_sync_count, c1.records[0].sync_count), (1, 1, 1));
        assert_eq!(events.len(), 1, "one event per change");
        let c2 = change(run(
            &store,
            update(
                &pool,
                &id,
                "prefs",
                vec![patch("a", Some("2"), 1), patch("b", Some("x"), 0)],
            ),
        ));
        assert_eq!((c2.seq, c2.dataset_sync_count), (2, 2));
        // A device that last saw "a" at sync count 1 is behind (it is at 2
        // now): the whole update is refused, "c" is not written either.
        let (out, events) = run_events(
            &store,
            update(
                &pool,
                &id,
                "prefs",
                vec![patch("c", Some("new"), 0), patch("a", Some("3"), 1)],
            ),
        );
        match out {
            Outcome::Rejected(Rejection::SyncConflict {
                records,
                dataset_sync_count,
            }) => {
                assert_eq!(records.len(), 1);
                assert_eq!((records[0].key.as_str(), records[0].value.as_deref()), ("a", Some("2")));
                assert_eq!(dataset_sync_count, 2);
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert!(events.is_empty(), "a refused update publishes nothing");
        assert_eq!(store.record(&pool, &id, "prefs", "c").unwrap(), None);
        let state = store.sync_state(&pool, &id).unwrap().unwrap();
        assert_eq!((state.seq, state.dataset_count), (2, 1));
        // A remove leaves a tombstone that still counts as a record.
        let c3 = change(run(&store, update(&pool, &id, "prefs", vec![patch("b", None, 2)])));
        assert_eq!(c3.records[0].value, None);
        let ds = store.dataset(&pool, &id, "prefs").unwrap().unwrap();
        assert_eq!((ds.num_records, ds.data_bytes, ds.sync_count), (2, 3, 3));
        let log = store.sync_changes_after(&pool, &id, 1, 10).unwrap();
        assert_eq!(log.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![2, 3]);
    }

    #[test]
    fn limits_refuse_and_write_nothing() {
        let (_d, store) = store_with_pool(&[]);
        let pool = identity_pool(&store, false);
        let id = new_identity(&store, &pool, "alice", 2);
        let limits = SyncLimits {
            max_datasets: 2,
            max_records: 3,
            max_dataset_bytes: 10,
        };
        let u = |ds: &str, patches| {
            let mut c = update(&pool, &id, ds, patches);
            c.limits = limits;
            run(&store, c)
        };
        assert!(matches!(u("a", vec![patch("k", Some("v"), 0)]), Outcome::SyncChange(_)));
        assert!(matches!(u("b", vec![patch("k", Some("v"), 0)]), Outcome::SyncChange(_)));
        assert!(matches!(
            u("c", vec![patch("k", Some("v"), 0)]),
            Outcome::Rejected(Rejection::LimitExceeded(_))
        ));
        assert!(matches!(
            u(
                "a",
                vec![
                    patch("x", Some("1"), 0),
                    patch("y", Some("1"), 0),
                    patch("z", Some("1"), 0)
                ]
            ),
            Outcome::Rejected(Rejection::LimitExceeded(_))
        ));
        assert!(matches!(
            u("a", vec![patch("k", Some("0123456789"), 1)]),
            Outcome::Rejected(Rejection::LimitExceeded(_))
        ));
        assert!(matches!(
            u("bad name", vec![patch("k", Some("v"), 0)]),
            Outcome::Rejected(Rejection::Invalid(_))
        ));
        let state = store.sync_state(&pool, &id).unwrap().unwrap();
        assert_eq!((state.seq, state.dataset_count, state.data_bytes), (2, 2, 4));
    }

    #[test]
    fn the_log_is_trimmed_from_its_oldest_end() {
        let (_d, store) = store_with_pool(&[]);
        let pool = identity_pool(&store, false);
        let id = new_identity(&store, &pool, "alice", 2);
        for i in 0..(LOG_MAX_CHANGES + 10) {
            change(run(&store, update(&pool, &id, "d", vec![patch("k", Some("v"), i)])));
        }
        let state = store.sync_state(&pool, &id).unwrap().unwrap();
        assert_eq!(state.seq, LOG_MAX_CHANGES + 10);
        assert_eq!(state.floor, 11);
        assert_eq!(store.sync_change(&pool, &id, 10).unwrap(), None);
        assert!(store.sync_change(&pool, &id, 11).unwrap().is_some());
        assert!(!state.can_resume(state.cursor().with_seq(9)));
        assert!(state.can_resume(state.cursor().with_seq(10)));
    }

    #[test]
    fn merges_move_datasets_and_deletion_erases_them() {
        let (_d, store) = store_with_pool(&[]);
        let pool = identity_pool(&store, false);
        let a = new_identity(&store, &pool, "a", 2);
        let b = new_identity(&store, &pool, "b", 3);
        change(run(
            &store,
            update(&pool, &b, "game", vec![patch("level", Some("7"), 0)]),
        ));
        change(run(&store, update(&pool, &a, "prefs", vec![patch("x", Some("1"), 0)])));
        // A device of `a` already made a dataset of the very name the merge
        // would use: the merged data must take another, not be dropped.
        let taken = format!("game.{b}");
        change(run(
            &store,
            update(&pool, &a, &taken, vec![patch("mine", Some("1"), 0)]),
        ));
        let (out, events) = run_events(
            &store,
            MergeDeveloperIdentities {
                pool_id: pool.clone(),
                source: Login {
                    provider: "dev.example".into(),
                    subject: "b".into(),
                },
                destination: Login {
                    provider: "dev.example".into(),
                    subject: "a".into(),
                },
                now: 5,
            },
        );
        assert!(matches!(out, Outcome::Identity(_)));
        let merged_name = format!("game.{b}.1");
        let ds = store.dataset(&pool, &a, &merged_name).unwrap().unwrap();
        let own = store.record(&pool, &a, &taken, "mine").unwrap().unwrap();
        assert_eq!(own.value.as_deref(), Some("1"), "the device's own dataset is untouched");
        assert_eq!(ds.merged_from.as_deref(), Some(b.as_str()));
        assert_eq!(
            store
                .record(&pool, &a, &merged_name, "level")
                .unwrap()
                .unwrap()
                .value
                .as_deref(),
            Some("7")
        );
        assert_eq!(
            store.sync_state(&pool, &b).unwrap(),
            None,
            "the merged identity's data moved"
        );
        assert!(events.iter().any(|e| matches!(e, SyncEvent::IdentityGone { identity_id, merged_into: Some(s) } if *identity_id == b && *s == a)));
        let state = store.sync_state(&pool, &a).unwrap().unwrap();
        assert_eq!((state.seq, state.dataset_count), (3, 3));
        // Deleting the survivor erases everything it had.
        run(
            &store,
            DeleteIdentities {
                identity_ids: vec![a.clone()],
            },
        );
        assert_eq!(store.sync_state(&pool, &a).unwrap(), None);
        assert!(store.datasets_page(&pool, &a, None, 10).unwrap().is_empty());
        assert!(store.sync_changes_after(&pool, &a, 0, 10).unwrap().is_empty());
        assert_eq!(store.record(&pool, &a, "prefs", "x").unwrap(), None);
    }

    #[test]
    fn deleting_a_dataset_is_a_change_and_a_recreated_one_starts_over() {
        let (_d, store) = store_with_pool(&[]);
        let pool = identity_pool(&store, false);
        let id = new_identity(&store, &pool, "alice", 2);
        change(run(&store, update(&pool, &id, "d", vec![patch("k", Some("v"), 0)])));
        let del = DeleteDataset {
            identity_pool_id: pool.clone(),
            identity_id: id.clone(),
            dataset: "d".into(),
            device_id: "phone".into(),
            now: 3,
        };
        let c = change(run(&store, del.clone()));
        assert_eq!((c.seq, c.kind), (2, ChangeKind::DatasetDeleted));
        assert!(matches!(
            run(&store, del),
            Outcome::Rejected(Rejection::NotFound { .. })
        ));
        // The new dataset counts on from the identity's changes (2), past
        // the deleted one's 1: a device still at 1 is told it was deleted.
        let c = change(run(&store, update(&pool, &id, "d", vec![patch("k", Some("w"), 0)])));
        assert_eq!((c.seq, c.dataset_sync_count), (3, 3));
        let ds = store.dataset(&pool, &id, "d").unwrap();
        assert!(Dataset::deleted_after(ds.as_ref(), 1));
        assert!(!Dataset::deleted_after(ds.as_ref(), 3));
        let state = store.sync_state(&pool, &id).unwrap().unwrap();
        assert_eq!((state.dataset_count, state.data_bytes), (1, 2));
    }
}

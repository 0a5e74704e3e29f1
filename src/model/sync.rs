//! Per-identity sync data (Cognito Sync's model): datasets of key-value
//! records, each with a sync count, and the identity's change history that
//! devices follow with a cursor.
//!
//! Every change of an identity's data (an update, a dataset deletion, a
//! dataset merged in) gets the next number of the identity's sequence,
//! decided in `apply`, so every node numbers it the same and a device can
//! resume on any node. `epoch` names that history: a cursor of another
//! epoch cannot resume (see `SyncState`).

use serde::{Deserialize, Serialize};

use super::ValidationError;

/// Longest dataset name a device may create (Cognito's bound).
pub const MAX_DATASET_NAME_CHARS: usize = 128;
/// Longest record key (Cognito's bound).
pub const MAX_KEY_CHARS: usize = 1024;
/// Longest device id.
pub const MAX_DEVICE_ID_CHARS: usize = 256;
/// Most patches in one update: no more than a dataset's records.
pub const MAX_PATCHES: usize = 1024;
/// Longest name of a merged dataset: the name, a dot and an identity id.
pub const MAX_MERGED_NAME_CHARS: usize = MAX_DATASET_NAME_CHARS + 1 + 55;

/// The per-identity bounds (Cognito's defaults), carried inside each
/// command so that `apply` decides with the proposer's configuration and
/// every node decides alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncLimits {
    /// Datasets per identity (merged datasets are kept beyond it).
    pub max_datasets: u32,
    /// Records per dataset, deleted ones included (they are records
    /// with no value until the dataset is deleted).
    pub max_records: u32,
    /// Bytes of keys and values per dataset.
    pub max_dataset_bytes: u64,
}

impl Default for SyncLimits {
    fn default() -> Self {
        SyncLimits {
            max_datasets: 20,
            max_records: 1024,
            max_dataset_bytes: 1 << 20,
        }
    }
}

/// A dataset's metadata (its records are stored apart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dataset {
    /// The dataset's name.
    pub name: String,
    /// Unix milliseconds.
    pub creation_date: i64,
    /// Unix milliseconds of the latest change.
    pub last_modified_date: i64,
    /// The device of the latest change.
    pub last_modified_by: String,
    /// Rises by one on every change.
    pub sync_count: u64,
    /// Records, tombstones included.
    pub num_records: u32,
    /// Bytes of keys and values.
    pub data_bytes: u64,
    /// For a dataset merged in from another identity: that identity.
    pub merged_from: Option<String>,
    /// The sync count this incarnation of the dataset started from: its
    /// first change is `base_sync_count + 1`. A dataset created by an
    /// update starts from its identity's change number, which is beyond
    /// any sync count an earlier, deleted dataset of the same name reached
    /// (each change of a dataset is one change of its identity), so a
    /// device whose last sync count is at or below it saw an earlier
    /// incarnation and must start over (`Dataset::deleted_after`).
    pub base_sync_count: u64,
}

impl Dataset {
    /// Whether a device that last saw this dataset at `last_sync_count`
    /// saw another incarnation of it (deleted since, maybe recreated), or
    /// claims a count the dataset never reached: Cognito's
    /// `DatasetDeletedAfterRequestedSyncCount`. A device with no copy
    /// (`0`) is never told so.
    pub fn deleted_after(this: Option<&Dataset>, last_sync_count: u64) -> bool {
        last_sync_count > 0
            && this.is_none_or(|d| last_sync_count <= d.base_sync_count || last_sync_count > d.sync_count)
    }
}

/// One record of a dataset; `value: None` is a deleted record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The key.
    pub key: String,
    /// The value, or `None` once removed.
    pub value: Option<String>,
    /// The dataset's sync count when this record was last written.
    pub sync_count: u64,
    /// Unix milliseconds, server time.
    pub last_modified_date: i64,
    /// The device that wrote it.
    pub last_modified_by: String,
    /// Unix milliseconds, the device's clock (0 if it sent none).
    pub device_last_modified_date: i64,
}

impl Record {
    /// Bytes this record counts toward its dataset's size.
    pub fn bytes(&self) -> u64 {
        (self.key.len() + self.value.as_ref().map_or(0, String::len)) as u64
    }
}

/// What a patch does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PatchOp {
    /// Sets the value.
    Replace,
    /// Deletes the record (leaves a tombstone).
    Remove,
}

impl PatchOp {
    /// Cognito's `Operation` string, case-insensitive.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        match s.to_ascii_lowercase().as_str() {
            "replace" => Ok(PatchOp::Replace),
            "remove" => Ok(PatchOp::Remove),
            _ => Err(ValidationError::new(
                "record_patches.op",
                format!("{s:?} is not an operation: use \"replace\" or \"remove\""),
            )),
        }
    }
}

/// One change a device asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordPatch {
    /// Replace or remove.
    pub op: PatchOp,
    /// The record's key.
    pub key: String,
    /// The new value (replace only).
    pub value: Option<String>,
    /// The record's sync count the device last saw.
    pub sync_count: u64,
    /// The device's clock, Unix milliseconds (0 if none).
    pub device_last_modified_date: i64,
}

/// The sync bookkeeping of one identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    /// Names this history; drawn by the proposer of the identity's first
    /// change. A cursor of another epoch cannot resume.
    pub epoch: u64,
    /// The number of the latest change (0: none yet).
    pub seq: u64,
    /// The oldest change still kept in the log; older ones were trimmed,
    /// and a cursor before `floor - 1` must reload.
    pub floor: u64,
    /// Bytes of the changes kept in the log.
    pub log_bytes: u64,
    /// Live datasets (merged ones included).
    pub dataset_count: u32,
    /// Bytes of every dataset together.
    pub data_bytes: u64,
    /// Unix milliseconds of the latest change.
    pub last_modified_date: i64,
}

impl SyncState {
    /// The state of an identity with no change yet.
    pub fn new(epoch: u64) -> Self {
        SyncState {
            epoch,
            seq: 0,
            floor: 1,
            log_bytes: 0,
            dataset_count: 0,
            data_bytes: 0,
            last_modified_date: 0,
        }
    }

    /// The cursor after the latest change.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            epoch: self.epoch,
            seq: self.seq,
        }
    }

    /// Whether a device at `cursor` can resume from the log: same epoch,
    /// not ahead, and no change after it trimmed.
    pub fn can_resume(&self, cursor: Cursor) -> bool {
        cursor.epoch == self.epoch && cursor.seq <= self.seq && cursor.seq + 1 >= self.floor
    }
}

/// A position in an identity's change history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Cursor {
    /// The history.
    pub epoch: u64,
    /// The latest change seen.
    pub seq: u64,
}

impl Cursor {
    /// The same history at another position.
    pub fn with_seq(self, seq: u64) -> Cursor {
        Cursor { seq, ..self }
    }
}

/// What a change did to its dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    /// `records` were written.
    Update,
    /// The dataset and its records are gone.
    DatasetDeleted,
    /// The dataset arrived whole (merged in from another identity);
    /// `records` are all of it.
    DatasetMerged,
}

impl ChangeKind {
    /// The wire name (`SyncChange.kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Update => "UPDATE",
            ChangeKind::DatasetDeleted => "DATASET_DELETED",
            // A device handles a merged dataset like any whole dataset.
            ChangeKind::DatasetMerged => "DATASET",
        }
    }
}

/// One change of an identity's data, as the log keeps it and the hub
/// pushes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The identity pool.
    pub identity_pool_id: String,
    /// The identity.
    pub identity_id: String,
    /// The identity's history.
    pub epoch: u64,
    /// This change's number in it.
    pub seq: u64,
    /// The dataset.
    pub dataset: String,
    /// What happened.
    pub kind: ChangeKind,
    /// The dataset's sync count after the change (before, for a deletion).
    pub dataset_sync_count: u64,
    /// The records as written.
    pub records: Vec<Record>,
    /// The device that made it ("" for a server-side change).
    pub device_id: String,
    /// Unix milliseconds.
    pub at: i64,
}

impl Change {
    /// The cursor after this change.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            epoch: self.epoch,
            seq: self.seq,
        }
    }

    /// Approximate bytes it holds (log accounting, queue bounds).
    pub fn bytes(&self) -> u64 {
        64 + self.dataset.len() as u64
            + self.device_id.len() as u64
            + self.records.iter().map(|r| r.bytes() + 48).sum::<u64>()
    }
}

/// What the hub tells sessions (published after the entry is written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncEvent {
    /// An identity's data changed.
    Change(std::sync::Arc<Change>),
    /// An identity's history ended: deleted, or merged into `merged_into`.
    IdentityGone {
        /// The identity.
        identity_id: String,
        /// The survivor, for a merge.
        merged_into: Option<String>,
    },
}

fn chars_between(field: &'static str, s: &str, max: usize, what: &str) -> Result<(), ValidationError> {
    let n = s.chars().count();
    if n == 0 || n > max {
        return Err(ValidationError::new(field, format!("{what} of 1 to {max} characters")));
    }
    Ok(())
}

/// A dataset name a device may create: 1–128 of `[A-Za-z0-9_.:-]`.
pub fn validate_dataset_name(name: &str) -> Result<(), ValidationError> {
    validate_name_up_to(name, MAX_DATASET_NAME_CHARS)
}

/// A dataset name that may also be a merged one (longer: it ends with
/// the merged identity's id).
pub fn validate_existing_dataset_name(name: &str) -> Result<(), ValidationError> {
    validate_name_up_to(name, MAX_MERGED_NAME_CHARS)
}

fn validate_name_up_to(name: &str, max: usize) -> Result<(), ValidationError> {
    let ok =
        !name.is_empty() && name.len() <= max && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c));
    if ok {
        Ok(())
    } else {
        // Name the bound a device creates names under; the longer one is
        // only for merged datasets, which the server names.
        let merged = if max > MAX_DATASET_NAME_CHARS {
            format!(" (a merged dataset's name, <name>.<identity id>, up to {max})")
        } else {
            String::new()
        };
        Err(ValidationError::new(
            "dataset_name",
            format!(
                "{name:?} is not a dataset name: 1 to {MAX_DATASET_NAME_CHARS} characters of A-Z, a-z, 0-9, '_', '.', ':' and '-'{merged}"
            ),
        ))
    }
}

/// A device id: 1–256 characters, no NUL.
pub fn validate_device_id(device_id: &str) -> Result<(), ValidationError> {
    chars_between("device_id", device_id, MAX_DEVICE_ID_CHARS, "a device id")?;
    if device_id.contains('\0') {
        return Err(ValidationError::new("device_id", "a device id without NUL"));
    }
    Ok(())
}

/// The bounds of one update's patches: count, keys, values, no key twice.
pub fn validate_patches(patches: &[RecordPatch], limits: &SyncLimits) -> Result<(), ValidationError> {
    if patches.len() > MAX_PATCHES {
        return Err(ValidationError::new(
            "record_patches",
            format!("at most {MAX_PATCHES} patches per update"),
        ));
    }
    let mut keys = std::collections::BTreeSet::new();
    for p in patches {
        chars_between("record_patches.key", &p.key, MAX_KEY_CHARS, "a key")?;
        if p.key.contains('\0') {
            return Err(ValidationError::new("record_patches.key", "a key without NUL"));
        }
        if !keys.insert(p.key.as_str()) {
            return Err(ValidationError::new(
                "record_patches",
                format!("key {:?} is patched twice in one update", p.key),
            ));
        }
        match (p.op, &p.value) {
            (PatchOp::Replace, None) => {
                return Err(ValidationError::new(
                    "record_patches.value",
                    format!("\"replace\" of key {:?} needs a value", p.key),
                ))
            }
            (PatchOp::Replace, Some(v)) if v.len() as u64 > limits.max_dataset_bytes => {
                return Err(ValidationError::new(
                    "record_patches.value",
                    format!(
                        "the value of key {:?} is larger than a dataset may be ({} bytes)",
                        p.key, limits.max_dataset_bytes
                    ),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_names_follow_cognito() {
        assert!(validate_dataset_name("profile_v2.settings:a-b").is_ok());
        assert!(validate_dataset_name("").is_err());
        assert!(validate_dataset_name("has space").is_err());
        assert!(validate_dataset_name("slash/no").is_err());
        assert!(validate_dataset_name(&"a".repeat(128)).is_ok());
        assert!(validate_dataset_name(&"a".repeat(129)).is_err());
        let merged = format!("{}.local:0b7c1e2a-0000-4000-8000-000000000000", "a".repeat(128));
        assert!(validate_dataset_name(&merged).is_err());
        assert!(validate_existing_dataset_name(&merged).is_ok());
    }

    #[test]
    fn patches_are_bounded_and_unique() {
        let l = SyncLimits::default();
        let p = |key: &str, op, value: Option<&str>| RecordPatch {
            op,
            key: key.into(),
            value: value.map(Into::into),
            sync_count: 0,
            device_last_modified_date: 0,
        };
        assert!(validate_patches(&[p("a", PatchOp::Replace, Some("1"))], &l).is_ok());
        assert!(validate_patches(&[p("a", PatchOp::Replace, None)], &l).is_err());
        assert!(validate_patches(&[p("a", PatchOp::Remove, None), p("a", PatchOp::Remove, None)], &l).is_err());
        assert!(validate_patches(&[p("", PatchOp::Remove, None)], &l).is_err());
        assert!(validate_patches(&[p(&"k".repeat(1025), PatchOp::Remove, None)], &l).is_err());
        assert!(validate_device_id(&"d".repeat(256)).is_ok());
        assert!(validate_device_id(&"d".repeat(257)).is_err());
        assert!(PatchOp::parse("REPLACE").is_ok());
        assert!(PatchOp::parse("upsert").is_err());
    }

    #[test]
    fn a_device_of_an_earlier_incarnation_starts_over() {
        let d = Dataset {
            name: "d".into(),
            creation_date: 0,
            last_modified_date: 0,
            last_modified_by: "phone".into(),
            sync_count: 12,
            num_records: 1,
            data_bytes: 2,
            merged_from: None,
            base_sync_count: 7,
        };
        assert!(!Dataset::deleted_after(Some(&d), 0), "no copy: nothing to drop");
        assert!(!Dataset::deleted_after(None, 0));
        assert!(Dataset::deleted_after(None, 3), "deleted");
        assert!(
            Dataset::deleted_after(Some(&d), 7),
            "the earlier incarnation reached at most 7"
        );
        assert!(Dataset::deleted_after(Some(&d), 2));
        assert!(!Dataset::deleted_after(Some(&d), 8));
        assert!(!Dataset::deleted_after(Some(&d), 12));
        assert!(Dataset::deleted_after(Some(&d), 13), "ahead of the dataset");
    }

    #[test]
    fn a_cursor_resumes_only_within_kept_history() {
        let mut s = SyncState::new(7);
        s.seq = 100;
        s.floor = 40;
        assert!(s.can_resume(Cursor { epoch: 7, seq: 39 }));
        assert!(s.can_resume(Cursor { epoch: 7, seq: 100 }));
        assert!(!s.can_resume(Cursor { epoch: 7, seq: 38 }), "change 39 was trimmed");
        assert!(!s.can_resume(Cursor { epoch: 7, seq: 101 }), "ahead of the history");
        assert!(!s.can_resume(Cursor { epoch: 8, seq: 50 }), "another history");
    }
}

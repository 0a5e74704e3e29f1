//! Conversions between the device frames (`proto`) and the sync model, at
//! the edge of the QUIC server: nothing below `sync/` sees a prost type.

use crate::model::sync::{Change, Cursor, Dataset, PatchOp, Record, RecordPatch};
use crate::proto;
use crate::service::ServiceError;

/// A cursor on the wire.
pub fn cursor(c: Cursor) -> proto::SyncCursor {
    proto::SyncCursor {
        epoch: c.epoch,
        seq: c.seq,
    }
}

/// A cursor from the wire.
pub fn cursor_from(c: &proto::SyncCursor) -> Cursor {
    Cursor {
        epoch: c.epoch,
        seq: c.seq,
    }
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A record on the wire.
pub fn record(r: &Record) -> proto::SyncRecord {
    proto::SyncRecord {
        key: r.key.clone(),
        value: r.value.clone(),
        sync_count: count(r.sync_count),
        last_modified_date: r.last_modified_date,
        last_modified_by: r.last_modified_by.clone(),
        device_last_modified_date: r.device_last_modified_date,
    }
}

/// A logged change as a `SyncChange`.
pub fn change(c: &Change) -> proto::SyncChange {
    proto::SyncChange {
        cursor: Some(cursor(c.cursor())),
        dataset_name: c.dataset.clone(),
        kind: c.kind.as_str().to_string(),
        dataset_sync_count: count(c.dataset_sync_count),
        records: c.records.iter().map(record).collect(),
        device_id: c.device_id.clone(),
        at: c.at,
    }
}

/// A whole dataset, as a reload sends it: kind `DATASET` at the reload's
/// cursor.
pub fn whole_dataset(at: Cursor, d: &Dataset, records: &[Record]) -> proto::SyncChange {
    proto::SyncChange {
        cursor: Some(cursor(at)),
        dataset_name: d.name.clone(),
        kind: "DATASET".to_string(),
        dataset_sync_count: count(d.sync_count),
        records: records.iter().map(record).collect(),
        device_id: d.last_modified_by.clone(),
        at: d.last_modified_date,
    }
}

/// A device's patches, checked for what the wire allows (the service
/// checks the rest).
pub fn patches(ps: &[proto::RecordPatch]) -> Result<Vec<RecordPatch>, ServiceError> {
    ps.iter()
        .map(|p| {
            let op = PatchOp::parse(&p.op)?;
            let sync_count = u64::try_from(p.sync_count).map_err(|_| {
                ServiceError::invalid(format!("record_patches.sync_count of key {:?}: 0 or more", p.key))
            })?;
            Ok(RecordPatch {
                op,
                key: p.key.clone(),
                value: match op {
                    PatchOp::Replace => p.value.clone(),
                    PatchOp::Remove => None,
                },
                sync_count,
                device_last_modified_date: p.device_last_modified_date,
            })
        })
        .collect()
}

/// A written change as the answer to its write.
pub fn written(c: &Change) -> proto::UpdateRecordsResponse {
    proto::UpdateRecordsResponse {
        records: c.records.iter().map(record).collect(),
        dataset_sync_count: count(c.dataset_sync_count),
        cursor: Some(cursor(c.cursor())),
    }
}

/// A refused write's error.
pub fn error(e: &ServiceError) -> proto::SyncError {
    proto::SyncError {
        exception: e.exception.to_string(),
        message: e.message.clone(),
    }
}

/// One `ServerFrame`.
pub fn frame(msg: proto::server_frame::Msg) -> proto::ServerFrame {
    proto::ServerFrame { msg: Some(msg) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_are_read_as_cognito_sends_them() {
        let p = |op: &str, value: Option<&str>, sync_count| proto::RecordPatch {
            op: op.into(),
            key: "k".into(),
            value: value.map(Into::into),
            sync_count,
            device_last_modified_date: 5,
        };
        let ok = patches(&[p("REPLACE", Some("v"), 3), p("remove", Some("ignored"), 0)]).unwrap();
        assert_eq!(ok[0].op, PatchOp::Replace);
        assert_eq!(ok[0].value.as_deref(), Some("v"));
        assert_eq!(ok[0].sync_count, 3);
        assert_eq!(ok[1].value, None, "a remove carries no value");
        assert!(patches(&[p("upsert", Some("v"), 0)]).is_err());
        let e = patches(&[p("replace", Some("v"), -1)]).unwrap_err();
        assert_eq!(e.exception, "InvalidParameterException");
    }
}

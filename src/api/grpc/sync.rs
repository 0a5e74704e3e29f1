//! `tessera.v1.Sync`: per-identity datasets over gRPC, for servers and
//! tools (devices use the QUIC protocol, `sync::server`).
//!
//! Not behind `AdminAuthLayer`: an identity calls it with its own token.
//! Every call reads `authorization: Bearer <token>` and has
//! `SyncService::authenticate` prove who calls (the admin token, an
//! identity's credentials, or a user-pool access token mapped to its
//! identity) before anything else is looked at, so a caller without a
//! valid token learns nothing from the shape of its request; the service
//! then refuses any identity but the caller's own.
//!
//! Reads are consistent for every caller (a ReadIndex barrier before the
//! local read): this surface is for servers and tools that may write
//! through one node and read through another, and one barrier per call is
//! cheap next to a request over the network. Devices, which read a lot,
//! follow the change feed over QUIC instead.
//!
//! A conflict is not an error of the service but an outcome: it becomes
//! ABORTED `ResourceConflictException`, with the conflicting records in an
//! encoded `SyncConflict` in the status details, kept small enough for the
//! HTTP/2 trailer that carries it (see [`conflict_status`]).

use bytes::Bytes;
use prost::Message;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status};

use super::{bearer, EXCEPTION_HEADER};
use crate::model::sync as m;
use crate::proto::sync_server::Sync as SyncRpc;
use crate::proto::*;
use crate::service::sync::{Caller, SyncService, WriteOutcome};
use crate::service::ServiceError;

/// The largest request the Sync service decodes: an `UpdateRecords` that
/// fills a whole 1 MiB dataset (the default `SyncLimits`), plus the
/// framing of up to 1,024 patches, fits with room to spare. The api
/// port's general bound (`api::MAX_API_REQUEST_BYTES`, 1 MiB) would refuse
/// it at the transport, before the service could say which limit it
/// breaks. The service refuses an update whose keys and values alone
/// exceed the dataset bound, so a replicated command stays near 1 MiB.
pub const MAX_SYNC_REQUEST_BYTES: usize = 2 << 20;

/// Longest `sync_session_token` and `client_context` accepted. Tessera
/// needs neither (Cognito clients send them); they are bounded because a
/// session token is echoed back.
pub const MAX_OPAQUE_CHARS: usize = 8 * 1024;

/// Budget of the encoded `SyncConflict` in a conflict's status details.
/// gRPC peers bound the trailers a status travels in (16 KiB in tonic and
/// grpc-go, 8 KiB in grpc-java); base64 makes this about 5.5 KiB.
pub const CONFLICT_DETAIL_BYTES: usize = 4 * 1024;

/// Budget of a conflict's message (the `grpc-message` trailer).
const CONFLICT_MESSAGE_BYTES: usize = 1024;

/// Most characters of one key quoted in a conflict's message.
const QUOTED_KEY_CHARS: usize = 64;

/// The Sync service adapter.
pub struct SyncApi {
    /// Where every call goes.
    pub sync: SyncService,
}

/// The full paths of the Sync service's methods, none of which takes the
/// admin layer (each authenticates its caller itself).
pub const METHODS: &[&str] = &[
    "/tessera.v1.Sync/ListDatasets",
    "/tessera.v1.Sync/DescribeDataset",
    "/tessera.v1.Sync/ListRecords",
    "/tessera.v1.Sync/UpdateRecords",
    "/tessera.v1.Sync/DeleteDataset",
    "/tessera.v1.Sync/DescribeIdentityUsage",
];

/// Every Sync read asks for a barrier first (see the module doc).
const CONSISTENT: bool = true;

/// Counts and sizes are `u64` inside, `int64` on the wire: saturate
/// rather than wrap (a real figure never comes near).
fn wire(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The proto shape of a record.
pub fn record_out(r: m::Record) -> SyncRecord {
    SyncRecord {
        key: r.key,
        value: r.value,
        sync_count: wire(r.sync_count),
        last_modified_date: r.last_modified_date,
        last_modified_by: r.last_modified_by,
        device_last_modified_date: r.device_last_modified_date,
    }
}

/// The proto shape of a dataset of `identity_id`.
pub fn dataset_out(identity_id: &str, d: m::Dataset) -> SyncDataset {
    SyncDataset {
        identity_id: identity_id.to_string(),
        dataset_name: d.name,
        creation_date: d.creation_date,
        last_modified_date: d.last_modified_date,
        last_modified_by: d.last_modified_by,
        data_storage: wire(d.data_bytes),
        num_records: i64::from(d.num_records),
        sync_count: wire(d.sync_count),
        merged_from: d.merged_from.unwrap_or_default(),
    }
}

/// The proto shape of a cursor.
pub fn cursor_out(c: m::Cursor) -> SyncCursor {
    SyncCursor {
        epoch: c.epoch,
        seq: c.seq,
    }
}

/// A patch from the wire: the op parsed (`replace`/`remove`, any case),
/// the sync count checked, and a remove's stray value dropped. Keys,
/// values and the patch count are the service's to bound
/// (`model::sync::validate_patches`), for gRPC and QUIC alike.
pub fn patch_in(i: usize, p: RecordPatch) -> Result<m::RecordPatch, ServiceError> {
    let op = m::PatchOp::parse(&p.op)
        .map_err(|e| ServiceError::invalid(format!("record_patches[{i}] (key {:?}): {e}", short(&p.key))))?;
    let sync_count = u64::try_from(p.sync_count).map_err(|_| {
        ServiceError::invalid(format!(
            "record_patches[{i}].sync_count: {} is negative; send the record's sync count last seen, or 0",
            p.sync_count
        ))
    })?;
    Ok(m::RecordPatch {
        op,
        value: match op {
            m::PatchOp::Replace => p.value,
            m::PatchOp::Remove => None,
        },
        key: p.key,
        sync_count,
        device_last_modified_date: p.device_last_modified_date,
    })
}

/// A key as a message quotes it: at most [`QUOTED_KEY_CHARS`] characters.
fn short(key: &str) -> String {
    if key.chars().count() <= QUOTED_KEY_CHARS {
        key.to_string()
    } else {
        let head: String = key.chars().take(QUOTED_KEY_CHARS).collect();
        format!("{head}…")
    }
}

/// The status of a conflicting update: ABORTED, a message naming the
/// conflicting keys and where each stands now, the exception header, and
/// an encoded [`SyncConflict`] in the details.
///
/// Both travel in HTTP/2 trailers, which a client bounds (a status too
/// large for it would reach the client as a broken stream, not as a
/// conflict). So the message names keys until [`CONFLICT_MESSAGE_BYTES`]
/// and then says how many more there are, and the detail holds the
/// records that fit in [`CONFLICT_DETAIL_BYTES`] (a key with a large value
/// is skipped, smaller ones after it still go in) and counts the others in
/// `omitted_records`; the client reads those with `ListRecords`.
pub fn conflict_status(records: Vec<m::Record>, dataset_sync_count: u64) -> Status {
    let total = records.len();
    let mut message = format!(
        "ResourceConflictException: {total} record{} changed since the device last saw {}; nothing was written. \
         Resolve against the current values (status details: SyncConflict) and retry:",
        if total == 1 { "" } else { "s" },
        if total == 1 { "it" } else { "them" },
    );
    let mut named = 0;
    for r in &records {
        let part = format!(" {:?} (now at sync count {})", short(&r.key), r.sync_count);
        if message.len() + part.len() > CONFLICT_MESSAGE_BYTES {
            break;
        }
        message.push_str(&part);
        named += 1;
    }
    if named < total {
        message.push_str(&format!(" and {} more", total - named));
    }
    let mut conflict = SyncConflict {
        records: Vec::new(),
        dataset_sync_count: wire(dataset_sync_count),
        omitted_records: 0,
    };
    // Room for the two scalar fields, whatever their values.
    let mut used = 2 * 11;
    for r in records {
        let r = record_out(r);
        let len = r.encoded_len();
        // One byte of tag and the length prefix, then the record.
        let cost = 1 + prost::length_delimiter_len(len) + len;
        if used + cost <= CONFLICT_DETAIL_BYTES {
            used += cost;
            conflict.records.push(r);
        } else {
            conflict.omitted_records += 1;
        }
    }
    let mut md = MetadataMap::new();
    md.insert(
        EXCEPTION_HEADER,
        tonic::metadata::MetadataValue::from_static("ResourceConflictException"),
    );
    Status::with_details_and_metadata(Code::Aborted, message, Bytes::from(conflict.encode_to_vec()), md)
}

/// Refuses an over-long opaque field that Tessera accepts for Cognito
/// clients but does not use.
fn opaque(field: &str, value: &str) -> Result<(), ServiceError> {
    if value.len() > MAX_OPAQUE_CHARS {
        return Err(ServiceError::invalid(format!(
            "{field}: {} bytes; at most {MAX_OPAQUE_CHARS}",
            value.len()
        )));
    }
    Ok(())
}

impl SyncApi {
    /// Who the call's bearer token proves the caller to be. Runs before
    /// anything in the request is validated.
    async fn caller(&self, md: &MetadataMap, identity_pool_id: &str) -> Result<Caller, Status> {
        let token = bearer(md).unwrap_or_default();
        Ok(self.sync.authenticate(token, identity_pool_id).await?)
    }
}

/// Records the ids a call is about on its span (ids are not secrets). They
/// are not validated yet, so anything longer than an id is left out rather
/// than copied into every log line of the call.
fn span_ids(identity_pool_id: &str, identity_id: &str) {
    const ID_BYTES: usize = 64;
    let span = tracing::Span::current();
    for (field, value) in [("identity_pool_id", identity_pool_id), ("identity_id", identity_id)] {
        span.record(field, if value.len() <= ID_BYTES { value } else { "(too long)" });
    }
}

#[tonic::async_trait]
impl SyncRpc for SyncApi {
    #[tracing::instrument(skip_all, fields(identity_pool_id, identity_id))]
    async fn list_datasets(&self, req: Request<ListDatasetsRequest>) -> Result<Response<ListDatasetsResponse>, Status> {
        let (md, _, r) = req.into_parts();
        span_ids(&r.identity_pool_id, &r.identity_id);
        let caller = self.caller(&md, &r.identity_pool_id).await?;
        let (datasets, next) = self
            .sync
            .list_datasets(
                &caller,
                &r.identity_pool_id,
                &r.identity_id,
                &r.next_token,
                r.max_results,
                CONSISTENT,
            )
            .await?;
        let datasets: Vec<SyncDataset> = datasets.into_iter().map(|d| dataset_out(&r.identity_id, d)).collect();
        Ok(Response::new(ListDatasetsResponse {
            count: datasets.len() as i32,
            datasets,
            next_token: next.unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(identity_pool_id, identity_id))]
    async fn describe_dataset(
        &self,
        req: Request<DescribeDatasetRequest>,
    ) -> Result<Response<DescribeDatasetResponse>, Status> {
        let (md, _, r) = req.into_parts();
        span_ids(&r.identity_pool_id, &r.identity_id);
        let caller = self.caller(&md, &r.identity_pool_id).await?;
        let d = self
            .sync
            .describe_dataset(
                &caller,
                &r.identity_pool_id,
                &r.identity_id,
                &r.dataset_name,
                CONSISTENT,
            )
            .await?;
        Ok(Response::new(DescribeDatasetResponse {
            dataset: Some(dataset_out(&r.identity_id, d)),
        }))
    }

    #[tracing::instrument(skip_all, fields(identity_pool_id, identity_id))]
    async fn list_records(&self, req: Request<ListRecordsRequest>) -> Result<Response<ListRecordsResponse>, Status> {
        let (md, _, r) = req.into_parts();
        span_ids(&r.identity_pool_id, &r.identity_id);
        let caller = self.caller(&md, &r.identity_pool_id).await?;
        opaque("sync_session_token", &r.sync_session_token)?;
        let page = self
            .sync
            .list_records(
                &caller,
                &r.identity_pool_id,
                &r.identity_id,
                &r.dataset_name,
                r.last_sync_count,
                &r.next_token,
                r.max_results,
                CONSISTENT,
            )
            .await?;
        let (dataset_sync_count, last_modified_by) = page
            .dataset
            .as_ref()
            .map_or((0, String::new()), |d| (d.sync_count, d.last_modified_by.clone()));
        let records: Vec<SyncRecord> = page.records.into_iter().map(record_out).collect();
        Ok(Response::new(ListRecordsResponse {
            count: records.len() as i32,
            records,
            next_token: page.next_token.unwrap_or_default(),
            dataset_sync_count: wire(dataset_sync_count),
            last_modified_by,
            merged_dataset_names: page.merged_dataset_names,
            dataset_exists: page.dataset.is_some(),
            dataset_deleted_after_requested_sync_count: page.deleted_after_requested,
            // Cognito clients pass it on to UpdateRecords, where it is
            // required; Tessera keeps no session, so any token will do.
            sync_session_token: if r.sync_session_token.is_empty() {
                format!("tessera:{dataset_sync_count}")
            } else {
                r.sync_session_token
            },
        }))
    }

    #[tracing::instrument(skip_all, fields(identity_pool_id, identity_id))]
    async fn update_records(
        &self,
        req: Request<UpdateRecordsRequest>,
    ) -> Result<Response<UpdateRecordsResponse>, Status> {
        let (md, _, r) = req.into_parts();
        span_ids(&r.identity_pool_id, &r.identity_id);
        let caller = self.caller(&md, &r.identity_pool_id).await?;
        opaque("sync_session_token", &r.sync_session_token)?;
        opaque("client_context", &r.client_context)?;
        let patches = r
            .record_patches
            .into_iter()
            .enumerate()
            .map(|(i, p)| patch_in(i, p))
            .collect::<Result<Vec<_>, _>>()?;
        let outcome = self
            .sync
            .update_records(
                &caller,
                &r.identity_pool_id,
                &r.identity_id,
                &r.dataset_name,
                &r.device_id,
                patches,
            )
            .await?;
        match outcome {
            WriteOutcome::Written(change) => Ok(Response::new(UpdateRecordsResponse {
                cursor: Some(cursor_out(change.cursor())),
                dataset_sync_count: wire(change.dataset_sync_count),
                records: change.records.into_iter().map(record_out).collect(),
            })),
            WriteOutcome::Conflict {
                records,
                dataset_sync_count,
            } => Err(conflict_status(records, dataset_sync_count)),
        }
    }

    #[tracing::instrument(skip_all, fields(identity_pool_id, identity_id))]
    async fn delete_dataset(
        &self,
        req: Request<DeleteDatasetRequest>,
    ) -> Result<Response<DeleteDatasetResponse>, Status> {
        let (md, _, r) = req.into_parts();
        span_ids(&r.identity_pool_id, &r.identity_id);
        let caller = self.caller(&md, &r.identity_pool_id).await?;
        // The request names no device: the service records the caller.
        let (before, _) = self
            .sync
            .delete_dataset(&caller, &r.identity_pool_id, &r.identity_id, &r.dataset_name, "")
            .await?;
        Ok(Response::new(DeleteDatasetResponse {
            dataset: Some(dataset_out(&r.identity_id, before)),
        }))
    }

    #[tracing::instrument(skip_all, fields(identity_pool_id, identity_id))]
    async fn describe_identity_usage(
        &self,
        req: Request<DescribeIdentityUsageRequest>,
    ) -> Result<Response<DescribeIdentityUsageResponse>, Status> {
        let (md, _, r) = req.into_parts();
        span_ids(&r.identity_pool_id, &r.identity_id);
        let caller = self.caller(&md, &r.identity_pool_id).await?;
        let u = self
            .sync
            .identity_usage(&caller, &r.identity_pool_id, &r.identity_id, CONSISTENT)
            .await?;
        Ok(Response::new(DescribeIdentityUsageResponse {
            identity_id: u.identity_id,
            identity_pool_id: u.identity_pool_id,
            last_modified_date: u.last_modified_date,
            dataset_count: i32::try_from(u.dataset_count).unwrap_or(i32::MAX),
            data_storage: wire(u.data_bytes),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, value: Option<&str>, sync_count: u64) -> m::Record {
        m::Record {
            key: key.into(),
            value: value.map(Into::into),
            sync_count,
            last_modified_date: 1,
            last_modified_by: "phone".into(),
            device_last_modified_date: 0,
        }
    }

    fn detail(s: &Status) -> SyncConflict {
        SyncConflict::decode(s.details()).expect("the detail decodes")
    }

    #[test]
    fn a_conflict_names_its_keys_and_carries_the_records() {
        let s = conflict_status(vec![record("a", Some("2"), 5), record("b", None, 4)], 6);
        assert_eq!(s.code(), Code::Aborted);
        assert!(
            s.message().starts_with("ResourceConflictException: 2 records"),
            "{}",
            s.message()
        );
        assert!(s.message().contains("\"a\" (now at sync count 5)"), "{}", s.message());
        assert!(s.message().contains("\"b\" (now at sync count 4)"), "{}", s.message());
        assert_eq!(
            s.metadata().get(EXCEPTION_HEADER).and_then(|v| v.to_str().ok()),
            Some("ResourceConflictException")
        );
        let c = detail(&s);
        assert_eq!(c.dataset_sync_count, 6);
        assert_eq!(c.omitted_records, 0);
        assert_eq!(c.records.len(), 2);
        assert_eq!(
            (c.records[0].key.as_str(), c.records[0].value.as_deref()),
            ("a", Some("2"))
        );
        assert_eq!((c.records[1].key.as_str(), c.records[1].value.as_deref()), ("b", None));
    }

    #[test]
    fn a_large_conflict_stays_within_the_trailer_budgets() {
        let big = "v".repeat(200 * 1024);
        let mut records = vec![record("big", Some(&big), 3)];
        for i in 0..1024 {
            records.push(record(&format!("{i:04}{}", "k".repeat(1000)), Some("x"), 3));
        }
        let s = conflict_status(records, 9);
        assert!(
            s.message().len() <= CONFLICT_MESSAGE_BYTES + 32,
            "{}",
            s.message().len()
        );
        assert!(s.message().ends_with("more"), "{}", s.message());
        assert!(s.details().len() <= CONFLICT_DETAIL_BYTES, "{}", s.details().len());
        let c = detail(&s);
        assert!(!c.records.is_empty(), "the small records that fit are kept");
        assert!(c.records.iter().all(|r| r.key != "big"));
        assert_eq!(c.records.len() + c.omitted_records as usize, 1025);
    }

    #[test]
    fn patches_parse_their_op_and_refuse_negative_counts() {
        let p = |op: &str, value: Option<&str>, sync_count| RecordPatch {
            op: op.into(),
            key: "k".into(),
            value: value.map(Into::into),
            sync_count,
            device_last_modified_date: 0,
        };
        let ok = patch_in(0, p("REPLACE", Some("v"), 2)).expect("replace parses");
        assert_eq!(
            (ok.op, ok.value.as_deref(), ok.sync_count),
            (m::PatchOp::Replace, Some("v"), 2)
        );
        let rm = patch_in(0, p("remove", Some("stray"), 0)).expect("remove parses");
        assert_eq!((rm.op, rm.value), (m::PatchOp::Remove, None));
        let e = patch_in(3, p("upsert", Some("v"), 0)).expect_err("upsert is no op");
        assert_eq!(e.exception, "InvalidParameterException");
        assert!(e.message.contains("record_patches[3]"), "{}", e.message);
        assert!(patch_in(0, p("replace", Some("v"), -1)).is_err());
    }
}

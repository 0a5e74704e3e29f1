//! What peers send: Raft frames, snapshot files, and the credentials a
//! peer proves its membership with (join tokens among them).

use crate::command::CreateUser;
use std::collections::BTreeMap;
use std::io::Write;

use prost::Message;

use super::directory::{fuzz_user, PAGE_POOL};
use super::{scratch_path, Seeds};

/// Every payload a peer sends (`raft::peer_server` and `raft::network`):
/// the first byte picks the RPC; the rest is the protobuf frame, whose
/// payload is decoded with the versioned codec into the type that RPC
/// carries, as the server (requests) or the client (replies) does.
pub fn peer_message(data: &[u8]) {
    use crate::proto::{NodeStatusResponse, RaftMessage, SnapshotChunk};
    use crate::raft::types::{SnapshotMeta, TypeConfig, Vote};
    use crate::raft::wire::{ForwardReply, ForwardRequest};
    use crate::raft::ConsensusError;
    use crate::store::codec::decode;
    use openraft::raft::{
        AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, VoteRequest, VoteResponse,
    };
    let Some((&which, frame)) = data.split_first() else {
        return;
    };
    // The same bytes both as a protobuf frame and as a bare payload, so the
    // corpus need not wrap every payload in protobuf.
    let payloads: Vec<Vec<u8>> = match RaftMessage::decode(frame) {
        Ok(m) => vec![m.payload, frame.to_vec()],
        Err(_) => vec![frame.to_vec()],
    };
    for p in &payloads {
        match which % 12 {
            0 => drop_result(decode::<AppendEntriesRequest<TypeConfig>>(p)),
            1 => drop_result(decode::<VoteRequest<TypeConfig>>(p)),
            2 => drop_result(decode::<TransferLeaderRequest<TypeConfig>>(p)),
            3 => {
                if let Ok(req) = decode::<ForwardRequest>(p) {
                    // What the leader would act on must survive a round trip.
                    let again = crate::store::codec::encode(&req).expect("re-encode");
                    decode::<ForwardRequest>(&again).expect("round trip");
                }
            }
            4 => drop_result(decode::<(Vote, SnapshotMeta)>(p)),
            5 => drop_result(decode::<Result<AppendEntriesResponse<TypeConfig>, String>>(p)),
            6 => drop_result(decode::<Result<VoteResponse<TypeConfig>, String>>(p)),
            7 => drop_result(decode::<Result<SnapshotResponse<TypeConfig>, String>>(p)),
            8 => drop_result(decode::<Result<ForwardReply, ConsensusError>>(p)),
            9 => drop_result(decode::<Result<(), String>>(p)),
            10 => drop_result(decode::<crate::command::Command>(p)),
            _ => {
                if let Ok(chunk) = SnapshotChunk::decode(p.as_slice()) {
                    let _ = decode::<(Vote, SnapshotMeta)>(&chunk.header);
                }
                let _ = NodeStatusResponse::decode(p.as_slice());
            }
        }
    }
}

/// Decoding a hostile payload may fail; it must only not panic.
fn drop_result<T, E>(_: Result<T, E>) {}

/// Snapshot files as a leader streams them (`raft::snapshot_file`): the
/// trailer's metadata and every record, as `install_file` reads them. The
/// first byte: odd means the harness appends the correct SHA-256, so that
/// inputs get past the checksum.
pub fn snapshot_file(data: &[u8]) {
    use crate::raft::snapshot_file::{read_meta, read_records, MAX_RECORD_BYTES};
    use crate::raft::types::SnapshotMeta;
    use sha2::{Digest, Sha256};
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let mut bytes = body.to_vec();
    if mode & 1 == 1 {
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        bytes.extend_from_slice(&digest);
    }
    let path = scratch_path("snap");
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&bytes)?;
        drop(f);
        let mut file = std::fs::File::open(&path)?;
        let _ = read_meta::<SnapshotMeta>(&mut file);
        let mut records = 0usize;
        let mut seen = 0usize;
        let r = read_records(&mut file, |k, v| {
            assert!(k.len() <= MAX_RECORD_BYTES as usize && v.len() <= MAX_RECORD_BYTES as usize);
            records += 1;
            seen += 9 + k.len() + v.len();
            Ok(())
        });
        // Records are only ever read from bytes that are in the file.
        assert!(
            seen <= bytes.len(),
            "read {seen} record bytes from a {}-byte file",
            bytes.len()
        );
        if r.is_ok() {
            assert!(bytes.starts_with(b"TSNAP001"));
            assert!(records * 9 + 8 + 1 + 36 <= bytes.len());
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&path);
    result.expect("scratch file I/O");
}

/// The peer credential header (`raft::peer_auth`) and join tokens
/// (`raft::join`): parsing must never panic, and a credential that parses
/// must be refused by the verifier unless it was really signed by the key.
pub fn peer_auth(data: &[u8]) {
    use crate::raft::join::JoinToken;
    use crate::raft::peer_auth::{parse, PeerIdentity, VerifiedCache};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = JoinToken::parse(text) {
        assert_eq!(
            JoinToken::parse(&t.reveal()).ok(),
            Some(t.clone()),
            "a parsed token re-parses"
        );
    }
    let key = PeerIdentity::from_seed([3; 32]);
    if let Ok(cred) = parse(text) {
        let cache = VerifiedCache::default();
        let verdict = cache.check(Some(text), "fuzz-cluster", 1, 1_000, |_| Some(key.public()));
        if verdict.is_ok() {
            // Ed25519 signing is deterministic and verification strict: only
            // the exact signature of this key over the claimed sender and
            // time verifies.
            let genuine = key.credential("fuzz-cluster", cred.from, 1, cred.issued_at);
            assert_eq!(
                parse(&genuine).map(|c| c.signature).ok(),
                Some(cred.signature),
                "a forged credential verified: {text:?}"
            );
        }
    }
}

pub(super) fn peer_auth_seeds(out: &mut Seeds) {
    let key = crate::raft::peer_auth::PeerIdentity::from_seed([3; 32]);
    out.push(("peer_auth", key.credential("fuzz-cluster", 2, 1, 1_000).into_bytes()));
    out.push(("peer_auth", key.credential("fuzz-cluster", 3, 1, 999).into_bytes()));
    out.push((
        "peer_auth",
        b"tsrj_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_vec(),
    ));
    out.push(("peer_auth", b"v1.1.1.AAAA".to_vec()));
}

pub(super) fn peer_seeds(out: &mut Seeds) {
    use crate::command::Command;
    use crate::model::cluster::NodeAddr;
    use crate::proto::{RaftMessage, SnapshotChunk};
    use crate::raft::types::{Entry, LogId, SnapshotMeta, StoredMembership, TypeConfig, Vote};
    use crate::raft::wire::{ForwardReply, ForwardRequest};
    use crate::raft::ConsensusError;
    use crate::store::codec::encode;
    use openraft::raft::{
        AppendEntriesRequest, AppendEntriesResponse, TransferLeaderRequest, VoteRequest, VoteResponse,
    };
    let frame = |which: u8, payload: Vec<u8>| {
        let mut v = vec![which];
        v.extend_from_slice(&RaftMessage { payload }.encode_to_vec());
        v
    };
    use openraft::entry::RaftEntry;
    use openraft::vote::RaftLeaderId;
    let vote = Vote::new(3, 1);
    let log_id = |i: u64| LogId::new(openraft::impls::leader_id_adv::LeaderId::new(3, 1), i);
    let addr = |n: u64| NodeAddr {
        api_addr: format!("127.0.0.1:{}", 7700 + 10 * n),
        peer_addr: format!("127.0.0.1:{}", 7701 + 10 * n),
    };
    let membership = openraft::Membership::new(
        vec![[1u64, 2, 3].into_iter().collect()],
        [(1u64, addr(1)), (2, addr(2)), (3, addr(3))]
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
    )
    .expect("membership");
    let user = fuzz_user(
        PAGE_POOL,
        "sub-x",
        "mallory",
        [("email".to_string(), "m@x.io".to_string())].into(),
    );
    let cmd = Command::from(CreateUser {
        user,
        code: None,
        message: None,
        force_alias_creation: false,
    });
    let entries: Vec<Entry> = vec![
        Entry::new(log_id(5), openraft::EntryPayload::Blank),
        Entry::new(log_id(6), openraft::EntryPayload::Normal(cmd.clone())),
        Entry::new(log_id(7), openraft::EntryPayload::Membership(membership.clone())),
    ];
    let append: AppendEntriesRequest<TypeConfig> = AppendEntriesRequest {
        vote,
        prev_log_id: Some(log_id(4)),
        entries,
        leader_commit: Some(log_id(4)),
    };
    out.push(("peer_message", frame(0, encode(&append).expect("encode"))));
    let vote_req: VoteRequest<TypeConfig> = VoteRequest::new(vote, Some(log_id(9)));
    out.push(("peer_message", frame(1, encode(&vote_req).expect("encode"))));
    let transfer: TransferLeaderRequest<TypeConfig> = TransferLeaderRequest::new(vote, 2, Some(log_id(9)));
    out.push(("peer_message", frame(2, encode(&transfer).expect("encode"))));
    for fwd in [
        ForwardRequest::Propose(Box::new(cmd.clone())),
        ForwardRequest::ReadIndex,
        ForwardRequest::AddLearner {
            node_id: 99,
            addr: addr(9),
        },
        ForwardRequest::PromoteVoter { node_id: 99 },
        ForwardRequest::RemoveNode { node_id: 2 },
    ] {
        out.push(("peer_message", frame(3, encode(&fwd).expect("encode"))));
    }
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(7)),
        last_membership: StoredMembership::new(Some(log_id(7)), membership),
    };
    out.push(("peer_message", frame(4, encode(&(vote, meta.clone())).expect("encode"))));
    let append_resp: Result<AppendEntriesResponse<TypeConfig>, String> = Ok(AppendEntriesResponse::Success);
    out.push(("peer_message", frame(5, encode(&append_resp).expect("encode"))));
    let vote_resp: Result<VoteResponse<TypeConfig>, String> = Ok(VoteResponse::new(vote, Some(log_id(9)), true));
    out.push(("peer_message", frame(6, encode(&vote_resp).expect("encode"))));
    let fwd_reply: Result<ForwardReply, ConsensusError> = Ok(ForwardReply::ReadIndex(9));
    out.push(("peer_message", frame(8, encode(&fwd_reply).expect("encode"))));
    let fwd_err: Result<ForwardReply, ConsensusError> = Err(ConsensusError::NotLeader {
        leader: Some((2, addr(2))),
    });
    out.push(("peer_message", frame(8, encode(&fwd_err).expect("encode"))));
    out.push(("peer_message", frame(10, encode(&cmd).expect("encode"))));
    let chunk = SnapshotChunk {
        header: encode(&(vote, meta)).expect("encode"),
        data: b"TSNAP001".to_vec(),
        done: true,
    };
    out.push(("peer_message", [&[11u8][..], &chunk.encode_to_vec()].concat()));
}

pub(super) fn snapshot_seeds(out: &mut Seeds) {
    use crate::raft::snapshot_file::SnapshotWriter;
    use crate::raft::types::{LogId, SnapshotMeta};
    use openraft::vote::RaftLeaderId;
    let path = scratch_path("seed.snap");
    let mut w = SnapshotWriter::create(&path).expect("seed snapshot");
    for i in 0u32..4 {
        w.record(
            &[&[0x20u8][..], &i.to_be_bytes()].concat(),
            format!("value-{i}").as_bytes(),
        )
        .expect("record");
    }
    let meta = SnapshotMeta {
        last_log_id: Some(LogId::new(openraft::impls::leader_id_adv::LeaderId::new(2, 1), 40)),
        ..Default::default()
    };
    let path = w.finish(&meta).expect("finish");
    let bytes = std::fs::read(&path).expect("read seed snapshot");
    let _ = std::fs::remove_file(&path);
    // Mode 0: as written (digest included); mode 1: without its digest,
    // which the harness appends.
    out.push(("snapshot_file", [&[0u8][..], &bytes].concat()));
    out.push(("snapshot_file", [&[1u8][..], &bytes[..bytes.len() - 32]].concat()));
    out.push((
        "snapshot_file",
        [&[1u8][..], b"TSNAP001\x01\x00\x00\x00\x01k\xff\xff\xff\xff"].concat(),
    ));
}

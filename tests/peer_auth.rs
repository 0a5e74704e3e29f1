//! The peer port admits only proven members of the cluster.
//!
//! Each test is an attack first: an outsider who can reach a node's peer
//! port, with the real cluster id and node ids in its headers but no
//! credential, tries every peer RPC. All of them must be refused with
//! `Unauthenticated`, and nothing may change.

#![allow(
    clippy::disallowed_methods,
    reason = "a test signs credentials over the current time"
)]

mod common;

use std::time::Duration;
use tessera::command::RetireNode;

use anyhow::{ensure, Context, Result};
use common::TestCluster;
use tessera::command::Command;
use tessera::proto::peer_client::PeerClient;
use tessera::proto::{NodeStatusRequest, RaftMessage, SnapshotChunk};
use tessera::raft::wire::ForwardRequest;
use tessera::store::codec;
use tonic::transport::Channel;

/// A raw peer client that sends the headers a member would, minus any
/// credential.
async fn outsider(peer_addr: &str) -> Result<PeerClient<Channel>> {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{peer_addr}"))?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .context("connecting to the peer port")?;
    Ok(PeerClient::new(ch))
}

fn headers<T>(body: T, cluster_id: &str, from: u64, to: u64) -> tonic::Request<T> {
    let mut r = tonic::Request::new(body);
    r.set_timeout(Duration::from_secs(5));
    let md = r.metadata_mut();
    md.insert("x-tessera-cluster-id", cluster_id.parse().expect("ascii"));
    md.insert("x-tessera-from", from.to_string().parse().expect("ascii"));
    md.insert("x-tessera-to", to.to_string().parse().expect("ascii"));
    r
}

fn forward(req: &ForwardRequest) -> RaftMessage {
    RaftMessage {
        payload: codec::encode(req).expect("encodes"),
    }
}

/// Every peer RPC, sent by an outsider with the real cluster id and node
/// ids, is refused with `Unauthenticated`, and the forwarded write and
/// learner are not applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsider_without_credentials_is_refused_on_every_peer_rpc() -> Result<()> {
    let c = TestCluster::start(3).await?;
    let result = async {
        let leader = c.wait_for_leader(None, Duration::from_secs(10)).await?.0;
        let cid = c.cluster_id.clone();
        let mut p = outsider(&c.node(leader).peer_addr).await?;
        let mut refused = Vec::new();
        let mut check = |what: &str, r: Result<tonic::Code, tonic::Status>| {
            let code = match r {
                Ok(c) => c,
                Err(s) => s.code(),
            };
            println!("{what}: {code:?}");
            refused.push((what.to_string(), code));
        };
        // A write (retire a node id) and a rogue learner, forwarded to the leader.
        let write = forward(&ForwardRequest::Propose(Box::new(Command::from(RetireNode {
            node_id: 77,
        }))));
        check(
            "Forward(Propose)",
            p.forward(headers(write, &cid, 2, leader))
                .await
                .map(|_| tonic::Code::Ok),
        );
        let rogue = c.node(2).peer_addr.clone();
        let learner = forward(&ForwardRequest::AddLearner {
            node_id: 99,
            addr: tessera::model::cluster::NodeAddr {
                peer_addr: rogue.clone(),
                api_addr: rogue,
            },
        });
        check(
            "Forward(AddLearner)",
            p.forward(headers(learner, &cid, 2, leader))
                .await
                .map(|_| tonic::Code::Ok),
        );
        check(
            "Forward(ReadIndex)",
            p.forward(headers(forward(&ForwardRequest::ReadIndex), &cid, 2, leader))
                .await
                .map(|_| tonic::Code::Ok),
        );
        let junk = || RaftMessage { payload: vec![0; 8] };
        check(
            "AppendEntries",
            p.append_entries(headers(junk(), &cid, 2, leader))
                .await
                .map(|_| tonic::Code::Ok),
        );
        check(
            "Vote",
            p.vote(headers(junk(), &cid, 2, leader)).await.map(|_| tonic::Code::Ok),
        );
        check(
            "PreVote",
            p.pre_vote(headers(junk(), &cid, 2, leader))
                .await
                .map(|_| tonic::Code::Ok),
        );
        check(
            "TransferLeader",
            p.transfer_leader(headers(junk(), &cid, 2, leader))
                .await
                .map(|_| tonic::Code::Ok),
        );
        let chunks = tokio_stream::iter(vec![SnapshotChunk {
            header: vec![1, 2, 3],
            data: vec![0; 16],
            done: true,
        }]);
        check(
            "InstallSnapshot",
            p.install_snapshot(headers(chunks, &cid, 2, leader))
                .await
                .map(|_| tonic::Code::Ok),
        );
        check(
            "NodeStatus",
            p.node_status(headers(NodeStatusRequest {}, &cid, 2, leader))
                .await
                .map(|_| tonic::Code::Ok),
        );
        let admin = c.client(leader).await?;
        let view = admin.describe_cluster().await?;
        ensure!(
            !view.retired_node_ids.contains(&77),
            "the outsider's forwarded write was applied: {:?}",
            view.retired_node_ids
        );
        ensure!(
            !view.members.iter().any(|m| m.node_id == 99),
            "the outsider's rogue learner joined: {:?}",
            view.members
        );
        let accepted: Vec<_> = refused
            .iter()
            .filter(|(_, code)| *code != tonic::Code::Unauthenticated)
            .collect();
        ensure!(accepted.is_empty(), "not refused as Unauthenticated: {accepted:?}");
        Ok(())
    }
    .await;
    c.finish(result);
    Ok(())
}

/// A member's credential, made from its peer key on disk, as the node
/// itself would make it.
fn member_credential(c: &TestCluster, from: u64, to: u64) -> Result<String> {
    let id = tessera::raft::peer_auth::PeerIdentity::load_or_create(&c.node(from).data_dir.join("peer.key"))?;
    Ok(id.credential(&c.cluster_id, from, to, tessera::clock::now_millis() / 1000))
}

fn signed<T>(body: T, cluster_id: &str, from: u64, to: u64, credential: &str) -> tonic::Request<T> {
    let mut r = headers(body, cluster_id, from, to);
    r.metadata_mut()
        .insert("x-tessera-peer-auth", credential.parse().expect("ascii"));
    r
}

/// Nodes in the wrong state or with the wrong token cannot join: an
/// unknown token, the right token id with a wrong secret, a revoked token
/// and a spent single-use token are all refused, and the node never
/// becomes a member. The right token then works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_wrong_join_token_cannot_join() -> Result<()> {
    let mut c = TestCluster::start(1).await?;
    let result = async {
        let admin = c.client(1).await?;
        let issue = |max_uses: u32| {
            let admin = admin.clone();
            async move {
                admin
                    .create_join_token(tessera::proto::CreateJoinTokenRequest {
                        ttl_seconds: 600,
                        max_uses: Some(max_uses),
                        ..Default::default()
                    })
                    .await
            }
        };
        let good = issue(1).await?.join_token;
        // Same id, another secret.
        let forged = format!(
            "{}{}",
            &good[..22],
            tessera::raft::join::JoinToken::generate().reveal().split_at(22).1
        );
        let unknown = tessera::raft::join::JoinToken::generate().reveal();
        let revoked = issue(1).await?;
        admin
            .cluster()
            .revoke_join_token(admin.req(tessera::proto::RevokeJoinTokenRequest {
                token_id: revoked.info.as_ref().map(|i| i.token_id.clone()).unwrap_or_default(),
            }))
            .await?;
        let cases = [
            ("no token", None),
            ("an unknown token", Some(unknown)),
            ("a forged secret", Some(forged)),
            ("a revoked token", Some(revoked.join_token)),
        ];
        c.prepare_node(2)?;
        for (what, token) in cases {
            let node = c.node_mut(2);
            node.env.retain(|(k, _)| k != "TESSERA_JOIN_TOKEN");
            if let Some(t) = &token {
                node.env.push(("TESSERA_JOIN_TOKEN".into(), t.clone()));
            }
            node.start()?;
            node.wait_healthy(common::HEALTH_TIMEOUT).await?;
            let n2 = c.node(2);
            let err = admin
                .add_node(2, &n2.peer_addr, &n2.api_addr)
                .await
                .err()
                .with_context(|| format!("add-node with {what} succeeded"))?;
            println!("{what}: {:?} {}", err.code(), err.message());
            ensure!(
                err.message().contains("JoinRefusedException"),
                "{what}: expected JoinRefusedException, got {err:?}"
            );
            let view = admin.describe_cluster().await?;
            ensure!(
                !view.members.iter().any(|m| m.node_id == 2),
                "{what}: node 2 became a member"
            );
            c.node_mut(2).stop(common::STOP_TIMEOUT).await?;
        }
        // The right token admits it, once.
        let node = c.node_mut(2);
        node.env.retain(|(k, _)| k != "TESSERA_JOIN_TOKEN");
        node.env.push(("TESSERA_JOIN_TOKEN".into(), good.clone()));
        c.start_node(2).await?;
        let n2 = c.node(2);
        admin
            .add_node(2, &n2.peer_addr, &n2.api_addr)
            .await
            .context("add-node with the right token")?;
        let tokens = admin
            .cluster()
            .list_join_tokens(admin.req(tessera::proto::ListJoinTokensRequest {}))
            .await?
            .into_inner()
            .tokens;
        let used = tokens
            .iter()
            .find(|t| good.contains(&t.token_id))
            .context("the token is listed")?;
        ensure!(used.uses == 1, "one use recorded: {used:?}");
        // Spent: a third node cannot use it.
        c.prepare_node(3)?;
        let node = c.node_mut(3);
        node.env.push(("TESSERA_JOIN_TOKEN".into(), good.clone()));
        c.start_node(3).await?;
        let n3 = c.node(3);
        let err = admin
            .add_node(3, &n3.peer_addr, &n3.api_addr)
            .await
            .err()
            .context("a spent single-use token admitted a second node")?;
        ensure!(err.message().contains("already used"), "{err:?}");
        Ok(())
    }
    .await;
    c.finish(result);
    Ok(())
}

/// A removed node's credentials stop working: before removal its signed
/// calls are served, after removal they are refused with Unauthenticated,
/// for Raft traffic and forwarded writes alike. A member cannot make an
/// unadmitted node a learner either, so a rogue learner gets no log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_can_no_longer_append_or_forward() -> Result<()> {
    let c = TestCluster::start(3).await?;
    let result = async {
        let (leader, _) = c.wait_for_leader(None, Duration::from_secs(10)).await?;
        let victim = (1..=3).find(|i| *i != leader).unwrap_or(3);
        let cid = c.cluster_id.clone();
        let mut p = outsider(&c.node(leader).peer_addr).await?;
        let read_index = || forward(&ForwardRequest::ReadIndex);
        let cred = member_credential(&c, victim, leader)?;
        p.forward(signed(read_index(), &cid, victim, leader, &cred))
            .await
            .context("a member's signed ReadIndex is served")?;
        // Even a member cannot make an unadmitted node a learner.
        let rogue = forward(&ForwardRequest::AddLearner {
            node_id: 99,
            addr: tessera::model::cluster::NodeAddr {
                peer_addr: c.node(victim).peer_addr.clone(),
                api_addr: c.node(victim).api_addr.clone(),
            },
        });
        let reply = p
            .forward(signed(rogue, &cid, victim, leader, &cred))
            .await?
            .into_inner();
        let decoded: Result<tessera::raft::wire::ForwardReply, tessera::raft::ConsensusError> =
            codec::decode(&reply.payload)?;
        println!("member forwards AddLearner for unadmitted node 99: {decoded:?}");
        ensure!(
            matches!(decoded, Err(tessera::raft::ConsensusError::Membership(ref m)) if m.contains("not been admitted")),
            "an unadmitted learner was accepted: {decoded:?}"
        );
        // Remove the victim (it keeps running), then replay its credentials.
        let admin = c.client(leader).await?;
        admin.remove_node(victim).await?;
        let fresh = member_credential(&c, victim, leader)?;
        let status = p
            .forward(signed(read_index(), &cid, victim, leader, &fresh))
            .await
            .err()
            .context("the removed node's forward was served")?;
        ensure!(status.code() == tonic::Code::Unauthenticated, "forward: {status:?}");
        let status = p
            .append_entries(signed(
                RaftMessage { payload: vec![0; 8] },
                &cid,
                victim,
                leader,
                &fresh,
            ))
            .await
            .err()
            .context("the removed node's append was served")?;
        ensure!(status.code() == tonic::Code::Unauthenticated, "append: {status:?}");
        // Its cached credential from before the removal is refused too.
        let status = p
            .forward(signed(read_index(), &cid, victim, leader, &cred))
            .await
            .err()
            .context("the removed node's cached credential was served")?;
        ensure!(status.code() == tonic::Code::Unauthenticated, "cached: {status:?}");
        Ok(())
    }
    .await;
    c.finish(result);
    Ok(())
}

/// A fresh node waiting to join cannot be bound to a cluster by an
/// outsider: status calls with a made-up cluster id are refused, a forged
/// join offer is refused, and afterwards the real cluster adds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_node_is_bound_only_by_its_cluster() -> Result<()> {
    let mut c = TestCluster::start(1).await?;
    let result = async {
        c.issue_join_token().await?;
        c.prepare_node(2)?;
        c.start_node(2).await?;
        let mut p = outsider(&c.node(2).peer_addr).await?;
        let fake = "00000000-0000-0000-0000-000000000000";
        let status = p
            .node_status(headers(NodeStatusRequest {}, fake, 1, 2))
            .await
            .err()
            .context("a fresh node answered NodeStatus to an outsider")?;
        ensure!(status.code() == tonic::Code::Unauthenticated, "{status:?}");
        // The outsider starts a handshake (the node answers: it only proves
        // that it holds a token), then forges the offer.
        let hello = p
            .join_hello(tessera::proto::JoinHelloRequest {
                cluster_id: fake.into(),
                node_id: 2,
                nonce: vec![1; 32],
            })
            .await?
            .into_inner();
        let status = p
            .join(tessera::proto::JoinOffer {
                cluster_id: fake.into(),
                node_id: 2,
                members: vec![tessera::proto::PeerKey {
                    node_id: 1,
                    public_key: vec![9; 32],
                }],
                sealed_key: Vec::new(),
                nonce: hello.nonce,
                proof: vec![0; 32],
            })
            .await
            .err()
            .context("a forged join offer was accepted")?;
        ensure!(status.code() == tonic::Code::Unauthenticated, "{status:?}");
        c.add_node_cli(2, 1)
            .await
            .context("the real add-node after the attempt")?;
        // The joined node got the cluster's sealing key: a client secret
        // made through node 1 opens on node 2.
        let n1 = c.client(1).await?;
        let pool = n1.create_user_pool("sealed").await?;
        let created = n1
            .admin()
            .create_user_pool_client(n1.req(tessera::proto::CreateUserPoolClientRequest {
                user_pool_id: pool.id.clone(),
                client_name: "web".into(),
                generate_secret: true,
                ..Default::default()
            }))
            .await?
            .into_inner()
            .user_pool_client
            .context("no client")?;
        ensure!(!created.client_secret.is_empty(), "no secret generated");
        let n2 = c.client(2).await?;
        let seen = n2
            .admin()
            .describe_user_pool_client(n2.req(tessera::proto::DescribeUserPoolClientRequest {
                user_pool_id: pool.id.clone(),
                client_id: created.client_id.clone(),
                consistent_read: true,
            }))
            .await
            .context("node 2 opens the client secret with the sealing key it was handed")?
            .into_inner()
            .user_pool_client
            .context("no client")?;
        ensure!(
            seen.client_secret == created.client_secret,
            "node 2 opened another secret"
        );
        let key = c.node(2).data_dir.join("keys").join("sealing.key");
        ensure!(
            key.exists(),
            "node 2 did not store the sealing key at {}",
            key.display()
        );
        Ok(())
    }
    .await;
    c.finish(result);
    Ok(())
}

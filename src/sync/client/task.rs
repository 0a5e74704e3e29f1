//! The client's background tasks: the session loop (connect, Hello,
//! Subscribe, apply, send writes; reconnect with backoff to the next
//! address on any failure) and the flusher of a file store.
//!
//! Frames are read by a reader task of their own and handed over a
//! bounded channel, so that the loop can wait on frames, new writes and
//! the stop signal at once without ever cancelling a half-read frame. A
//! slow application never slows the reader: events go to a broadcast
//! channel, which drops the oldest for a subscriber that lags.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::ConnectionError;
use tokio::sync::{mpsc, watch};

use super::connection::Connector;
use super::session::{Ended, Session, Step};
use super::{CloseCode, Control, Credential, Event, Shared};
use crate::proto::{device_frame, device_hello, server_frame, DeviceFrame, DeviceHello, DeviceSubscribe, ServerFrame};
use crate::sync::frame::{read_frame, write_frame, PROTOCOL_VERSION};

/// The largest frame the client reads, whatever a server announces.
const MAX_READ_FRAME: u32 = 64 << 20;
/// Frames read ahead of the session loop.
const READ_AHEAD: usize = 64;

/// How one session went.
struct Outcome {
    ended: Ended,
    /// Welcome arrived.
    established: bool,
    /// Caught up at least once.
    live: bool,
}

/// Runs sessions until the client stops.
pub(crate) async fn run(shared: Arc<Shared>, mut connector: Connector) {
    let mut control = shared.control.subscribe();
    let mut credential = shared.cfg.credential.clone();
    let mut failures: u32 = 0;
    let mut next_addr = 0usize;
    let mut just_refreshed = false;
    loop {
        let c = *control.borrow_and_update();
        if c.stop {
            break;
        }
        if !c.online {
            if control.changed().await.is_err() {
                break;
            }
            continue;
        }
        let target = shared.cfg.addrs[next_addr % shared.cfg.addrs.len()].clone();
        let outcome = match resolve(&target).await {
            Ok(addr) => session(&shared, &mut connector, addr, &credential, &mut control).await,
            Err(e) => Outcome {
                ended: Ended::local(e),
                established: false,
                live: false,
            },
        };
        shared.status.send_modify(|s| {
            s.node_id = None;
            s.caught_up = false;
        });
        let c = *control.borrow();
        shared.emit(Event::Disconnected {
            code: outcome.ended.code,
            reason: if outcome.established {
                outcome.ended.reason.clone()
            } else {
                format!("{target}: {}", outcome.ended.reason)
            },
        });
        if c.stop {
            break;
        }
        if !c.online {
            continue;
        }
        tracing::info!(
            addr = %target,
            code = outcome.ended.code.map(CloseCode::name),
            reason = %outcome.ended.reason,
            "sync: session ended"
        );
        if outcome.live {
            failures = 0;
        }
        let code = outcome.ended.code;
        let refused = matches!(
            code,
            Some(CloseCode::Unauthenticated | CloseCode::CredentialsExpired | CloseCode::IdentityGone)
        );
        if refused {
            if let Some(refresh) = &shared.cfg.refresh {
                match refresh.refresh(&outcome.ended.reason).await {
                    Ok(fresh) => {
                        credential = fresh;
                        if !just_refreshed {
                            // Straight back to the same node with the new
                            // credential; a second refusal in a row backs
                            // off like any failure.
                            just_refreshed = true;
                            continue;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "sync: refreshing the credential failed");
                        shared.emit(Event::Disconnected {
                            code,
                            reason: format!("refreshing the credential failed: {e}"),
                        });
                    }
                }
            } else if code == Some(CloseCode::IdentityGone) {
                stop_for_good(&shared, &outcome.ended.reason);
                break;
            }
        }
        just_refreshed = false;
        if code == Some(CloseCode::UnsupportedVersion) {
            stop_for_good(&shared, &outcome.ended.reason);
            break;
        }
        next_addr += 1;
        let delay = backoff(&shared.cfg.timing, failures);
        failures = failures.saturating_add(1);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = control.changed() => {}
        }
    }
    connector.close().await;
}

fn stop_for_good(shared: &Shared, reason: &str) {
    tracing::warn!(reason, "sync: the client stops");
    shared.lock().stopped = Some(reason.to_string());
    shared.fail_waiters(reason);
    shared.emit(Event::Stopped {
        reason: reason.to_string(),
    });
    shared.control.send_modify(|c| c.stop = true);
}

/// The delay before retry number `failures` (0-based): exponential from
/// `backoff_initial` up to `backoff_max`, with "equal jitter" (half fixed,
/// half random), so that a fleet of devices cut off at once does not come
/// back at once.
fn backoff(t: &super::Timing, failures: u32) -> Duration {
    let exp = t.backoff_initial.saturating_mul(1u32 << failures.min(16));
    let capped = exp.min(t.backoff_max);
    let half = capped / 2;
    let r = u64::from_le_bytes(crate::clock::random_bytes::<8>());
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_nanos(r % nanos)
}

async fn resolve(target: &str) -> Result<SocketAddr, String> {
    tokio::net::lookup_host(target)
        .await
        .map_err(|e| format!("resolving {target}: {e}"))?
        .next()
        .ok_or_else(|| format!("{target} resolves to no address"))
}

/// One session on `addr`, from connecting to its end.
async fn session(
    shared: &Arc<Shared>,
    connector: &mut Connector,
    addr: SocketAddr,
    credential: &Credential,
    control: &mut watch::Receiver<Control>,
) -> Outcome {
    let mut outcome = Outcome {
        ended: Ended::local(""),
        established: false,
        live: false,
    };
    let t = shared.cfg.timing;
    let conn = tokio::select! {
        c = connector.connect(addr, &shared.cfg.server_name, t.connect_timeout) => c,
        _ = control.changed() => Err("the client stopped".to_string()),
    };
    let conn = match conn {
        Ok(c) => c,
        Err(e) => {
            outcome.ended = Ended::local(e);
            return outcome;
        }
    };
    outcome.ended = drive(shared, &conn, addr, credential, control, &mut outcome).await;
    if conn.close_reason().is_none() {
        conn.close(0u8.into(), b"done");
    }
    outcome
}

/// Why the connection ended, from its close if the server closed it.
fn ended_from(conn: &quinn::Connection, otherwise: String) -> Ended {
    match conn.close_reason() {
        Some(ConnectionError::ApplicationClosed(c)) => Ended {
            code: Some(CloseCode::from_u32(
                u32::try_from(c.error_code.into_inner()).unwrap_or(u32::MAX),
            )),
            reason: String::from_utf8_lossy(&c.reason).into_owned(),
        },
        Some(e) => Ended::local(e.to_string()),
        None => Ended::local(otherwise),
    }
}

/// Aborts the reader task when the session ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn drive(
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
    addr: SocketAddr,
    credential: &Credential,
    control: &mut watch::Receiver<Control>,
    outcome: &mut Outcome,
) -> Ended {
    let cfg = &shared.cfg;
    let (mut send, mut recv) = match conn.open_bi().await {
        Ok(s) => s,
        Err(e) => return ended_from(conn, format!("opening the stream: {e}")),
    };
    let hello = DeviceFrame {
        msg: Some(device_frame::Msg::Hello(DeviceHello {
            version: PROTOCOL_VERSION,
            identity_pool_id: cfg.identity_pool_id.clone(),
            credential: Some(match credential {
                Credential::Credentials(t) => device_hello::Credential::Credentials(t.clone()),
                Credential::AccessToken(t) => device_hello::Credential::AccessToken(t.clone()),
            }),
            device_id: cfg.device_id.clone(),
        })),
    };
    if let Err(e) = write_frame(&mut send, &hello, cfg.max_frame_bytes).await {
        return ended_from(conn, format!("sending Hello: {e}"));
    }
    let first = tokio::time::timeout(
        cfg.timing.connect_timeout,
        read_frame::<ServerFrame, _>(&mut recv, cfg.max_frame_bytes.max(MAX_READ_FRAME), None),
    )
    .await;
    let welcome = match first {
        Err(_) => return Ended::local(format!("no SyncWelcome within {:?}", cfg.timing.connect_timeout)),
        Ok(Err(e)) => return ended_from(conn, format!("reading SyncWelcome: {e}")),
        Ok(Ok(None)) => return ended_from(conn, "the server closed the stream before SyncWelcome".into()),
        Ok(Ok(Some(f))) => match f.msg {
            Some(server_frame::Msg::Welcome(w)) => w,
            Some(server_frame::Msg::Goodbye(g)) => {
                return Ended {
                    code: Some(CloseCode::from_u32(g.code)),
                    reason: g.reason,
                }
            }
            other => return Ended::local(format!("expected SyncWelcome, got {other:?}")),
        },
    };
    outcome.established = true;
    let announced = if welcome.max_frame_bytes == 0 {
        cfg.max_frame_bytes
    } else {
        welcome.max_frame_bytes
    };
    let read_max = announced.max(cfg.max_frame_bytes).min(MAX_READ_FRAME);
    let send_max = announced;
    let cursor = {
        let mut st = shared.lock();
        match &st.replica.identity_id {
            Some(id) if *id == welcome.identity_id => {}
            Some(other) => {
                tracing::warn!(
                    was = %other,
                    now = %welcome.identity_id,
                    "sync: the credential is of another identity; the local copy is dropped"
                );
                st.replica.reset_to(&welcome.identity_id);
            }
            None => st.replica.identity_id = Some(welcome.identity_id.clone()),
        }
        st.replica.cursor
    };
    shared.dirty.notify_one();
    if shared.counters.sessions.get_and_inc() > 0 {
        shared.counters.reconnects.inc();
    }
    shared.status.send_modify(|s| {
        s.node_id = Some(welcome.node_id);
        s.identity_id = Some(welcome.identity_id.clone());
        s.caught_up = false;
    });
    tracing::info!(node = welcome.node_id, %addr, ?cursor, "sync: connected");
    shared.emit(Event::Connected {
        node_id: welcome.node_id,
        addr,
        identity_id: welcome.identity_id.clone(),
    });
    let subscribe = DeviceFrame {
        msg: Some(device_frame::Msg::Subscribe(DeviceSubscribe {
            dataset_name: cfg.dataset.clone().unwrap_or_default(),
            cursor: cursor.map(|c| crate::proto::SyncCursor {
                epoch: c.epoch,
                seq: c.seq,
            }),
        })),
    };
    if let Err(e) = write_frame(&mut send, &subscribe, send_max).await {
        return ended_from(conn, format!("sending Subscribe: {e}"));
    }

    let (tx, mut rx) = mpsc::channel::<Result<ServerFrame, String>>(READ_AHEAD);
    let _reader = AbortOnDrop(tokio::spawn(async move {
        loop {
            let r = match read_frame::<ServerFrame, _>(&mut recv, read_max, None).await {
                Ok(Some(f)) => Ok(f),
                Ok(None) => Err("the server ended the stream".to_string()),
                Err(e) => Err(format!("reading: {e}")),
            };
            let last = r.is_err();
            if tx.send(r).await.is_err() || last {
                break;
            }
        }
    }));

    let mut sess = Session::new(cfg.dataset.clone());
    loop {
        tokio::select! {
            biased;
            changed = control.changed() => {
                let c = *control.borrow();
                if changed.is_err() || c.stop || !c.online {
                    return Ended::local(if c.stop { "the client stopped" } else { "the client went offline" });
                }
            }
            frame = rx.recv() => match frame {
                Some(Ok(f)) => {
                    let steps = {
                        let mut st = shared.lock();
                        sess.on_frame(&mut st.replica, &shared.counters, f, crate::clock::instant())
                    };
                    shared.dirty.notify_one();
                    if let Some(end) = carry_out(shared, &mut sess, steps) {
                        return end;
                    }
                    outcome.live = sess.is_live();
                }
                Some(Err(e)) => return ended_from(conn, e),
                None => return ended_from(conn, "the reader stopped".into()),
            },
            _ = shared.wake.notified() => {}
            _ = sleep_until_held(sess.hold_until()), if sess.hold_until().is_some() => {}
        }
        let (writes, steps) = {
            let mut st = shared.lock();
            sess.next_writes(
                &mut st.replica,
                cfg.write_window.max(1),
                send_max,
                crate::clock::instant(),
            )
        };
        if let Some(end) = carry_out(shared, &mut sess, steps) {
            return end;
        }
        for w in writes {
            let frame = DeviceFrame {
                msg: Some(device_frame::Msg::Write(w)),
            };
            if let Err(e) = write_frame(&mut send, &frame, send_max).await {
                return ended_from(conn, format!("sending a write: {e}"));
            }
        }
    }
}

async fn sleep_until_held(until: Option<std::time::Instant>) {
    if let Some(t) = until {
        tokio::time::sleep_until(t.into()).await;
    }
}

/// Carries out a frame's steps; the end of the session if one says so.
fn carry_out(shared: &Shared, sess: &mut Session, steps: Vec<Step>) -> Option<Ended> {
    let mut queue = std::collections::VecDeque::from(steps);
    let mut end = None;
    while let Some(step) = queue.pop_front() {
        match step {
            Step::Emit(e) => shared.emit(e),
            Step::Done(id, outcome) => shared.finish_write(id, outcome),
            Step::Resolve(conflict) => {
                // The application's code, with no lock held.
                let resolution = shared.cfg.resolver.resolve(&conflict);
                let more = {
                    let mut st = shared.lock();
                    sess.resolved(&mut st.replica, conflict, resolution)
                };
                queue.extend(more);
                shared.wake.notify_one();
            }
            Step::End(e) => {
                end.get_or_insert(e);
            }
        }
    }
    // The status after the events, so that whoever waits on it finds
    // them sent.
    let cursor = shared.lock().replica.cursor;
    let caught_up = sess.caught_up();
    shared.status.send_if_modified(|s| {
        let before = (s.cursor, s.caught_up);
        s.cursor = cursor;
        s.caught_up = caught_up;
        before != (s.cursor, s.caught_up)
    });
    end
}

/// Rewrites the file store when the copy changed, at most once per
/// `flush_interval`, until the client stops.
pub(crate) async fn flusher(shared: Arc<Shared>) {
    let mut control = shared.control.subscribe();
    loop {
        tokio::select! {
            _ = shared.dirty.notified() => {}
            _ = control.wait_for(|c| c.stop) => break,
        }
        tokio::time::sleep(shared.cfg.timing.flush_interval).await;
        if let Err(e) = shared.flush().await {
            tracing::warn!(error = %e, "sync: rewriting the local copy failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let t = super::super::Timing {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            ..Default::default()
        };
        for _ in 0..50 {
            let d0 = backoff(&t, 0);
            assert!(
                d0 >= Duration::from_millis(50) && d0 < Duration::from_millis(100),
                "{d0:?}"
            );
            let d3 = backoff(&t, 3);
            assert!(
                d3 >= Duration::from_millis(400) && d3 < Duration::from_millis(800),
                "{d3:?}"
            );
            let d30 = backoff(&t, 30);
            assert!(d30 >= Duration::from_secs(1) && d30 < Duration::from_secs(2), "{d30:?}");
        }
    }
}

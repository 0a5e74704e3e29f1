//! Framing of the device protocol: each message is a 4-byte big-endian
//! length, then that many bytes of protobuf (`DeviceFrame` from a device,
//! `ServerFrame` from a node; `proto/tessera/v1/sync.proto`).
//!
//! The size bound is checked on the length prefix, before anything is
//! allocated, on both sides. A reader may also take its bytes from a
//! node-wide [`FrameBudget`], so that many peers sending large frames at
//! once cannot make the node hold more than the budget in partial frames.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The largest frame by default: a whole 1 MiB dataset and its
/// framing fit in one.
pub const DEFAULT_MAX_FRAME_BYTES: u32 = 2 << 20;
/// The ALPN protocol id of the device protocol, version 1.
pub const ALPN: &[u8] = b"tessera-sync/1";
/// The device protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream failed.
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
    /// The length prefix is beyond the bound.
    #[error("frame of {len} bytes is larger than the limit of {max}")]
    TooLarge {
        /// The announced length.
        len: u64,
        /// The bound.
        max: u32,
    },
    /// The bytes are not a message of the expected type.
    #[error("malformed frame: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The stream ended inside a frame.
    #[error("the stream ended inside a frame")]
    Truncated,
    /// An empty message where one with content is required.
    #[error("empty frame")]
    Empty,
}

/// A node-wide bound on bytes of frames being read at once, in KiB units.
#[derive(Clone)]
pub struct FrameBudget(Arc<Semaphore>);

impl FrameBudget {
    /// A budget of `bytes` (rounded up to KiB).
    pub fn new(bytes: u64) -> Self {
        FrameBudget(Arc::new(Semaphore::new(kib(bytes) as usize)))
    }

    fn take(&self, len: u64) -> impl Future<Output = Option<OwnedSemaphorePermit>> + Send + Sync + 'static {
        let sem = self.0.clone();
        async move {
            let n = u32::try_from(kib(len)).ok()?;
            sem.acquire_many_owned(n).await.ok()
        }
    }

    /// KiB still free (for metrics and tests).
    pub fn available_kib(&self) -> usize {
        self.0.available_permits()
    }
}

fn kib(bytes: u64) -> u64 {
    bytes.div_ceil(1024).max(1)
}

/// Bytes of a [`FrameBudget`] held for one frame that was read. A reader
/// that keeps the decoded frame (a write in flight) keeps the lease with
/// it, so the budget bounds what frames cost the node until they are done
/// with, not only while their bytes arrive.
pub struct FrameLease {
    _held: Option<OwnedSemaphorePermit>,
}

impl FrameLease {
    /// A lease that holds nothing (no budget).
    pub fn none() -> Self {
        FrameLease { _held: None }
    }
}

/// Reads one frame. `Ok(None)` when the stream ended cleanly between
/// frames. The length is checked against `max` before the body is read;
/// with a `budget`, its bytes are reserved while the body arrives.
pub async fn read_frame<M, R>(r: &mut R, max: u32, budget: Option<&FrameBudget>) -> Result<Option<M>, FrameError>
where
    M: Message + Default,
    R: AsyncRead + Unpin,
{
    Ok(read_frame_leased(r, max, budget).await?.map(|(m, _)| m))
}

/// Like [`read_frame`], but the frame's share of `budget` stays reserved
/// until the returned lease is dropped.
pub async fn read_frame_leased<M, R>(
    r: &mut R,
    max: u32,
    budget: Option<&FrameBudget>,
) -> Result<Option<(M, FrameLease)>, FrameError>
where
    M: Message + Default,
    R: AsyncRead + Unpin,
{
    FrameReader::default().next(r, max, budget).await
}

/// A frame being read, kept between calls so that reading can be one
/// branch of a `select!`: [`FrameReader::next`] may be dropped at any
/// await and called again, and nothing read is lost. (A session reads its
/// device's frames in its own task this way, rather than in a reader task
/// of its own with a channel, which an idle connection would pay for.)
///
/// It is polled rather than an `async fn`, so what a reader idle between
/// frames costs is this struct, not a future's state besides.
#[derive(Default)]
pub struct FrameReader {
    /// The length prefix, as far as it has arrived.
    prefix: [u8; 4],
    prefix_got: u8,
    /// The body's share of the budget, while it is being waited for
    /// (boxed: most frames never wait).
    acquiring: Option<Acquiring>,
    /// The body's share of the budget, once taken.
    lease: Option<FrameLease>,
    /// The body, allocated once the length is known and its budget held.
    body: Vec<u8>,
    body_got: usize,
}

type Acquiring = Pin<Box<dyn Future<Output = Option<OwnedSemaphorePermit>> + Send + Sync>>;

impl FrameReader {
    /// Reads the rest of the current frame. `Ok(None)` when the stream
    /// ended cleanly between frames. Cancel-safe: what a dropped call read
    /// is kept for the next. After an error the reader starts afresh.
    pub async fn next<M, R>(
        &mut self,
        r: &mut R,
        max: u32,
        budget: Option<&FrameBudget>,
    ) -> Result<Option<(M, FrameLease)>, FrameError>
    where
        M: Message + Default,
        R: AsyncRead + Unpin,
    {
        std::future::poll_fn(|cx| self.poll_next(cx, r, max, budget)).await
    }

    /// [`FrameReader::next`] as a poll: `Pending` keeps what arrived.
    pub fn poll_next<M, R>(
        &mut self,
        cx: &mut Context<'_>,
        r: &mut R,
        max: u32,
        budget: Option<&FrameBudget>,
    ) -> Poll<Result<Option<(M, FrameLease)>, FrameError>>
    where
        M: Message + Default,
        R: AsyncRead + Unpin,
    {
        let out = ready!(self.advance(cx, r, max, budget));
        if out.is_err() {
            *self = FrameReader::default();
        }
        Poll::Ready(out)
    }

    fn advance<M, R>(
        &mut self,
        cx: &mut Context<'_>,
        r: &mut R,
        max: u32,
        budget: Option<&FrameBudget>,
    ) -> Poll<Result<Option<(M, FrameLease)>, FrameError>>
    where
        M: Message + Default,
        R: AsyncRead + Unpin,
    {
        while self.prefix_got < 4 {
            let mut buf = ReadBuf::new(&mut self.prefix[usize::from(self.prefix_got)..]);
            ready!(Pin::new(&mut *r).poll_read(cx, &mut buf))?;
            let n = buf.filled().len();
            if n == 0 {
                return Poll::Ready(if self.prefix_got == 0 {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                });
            }
            self.prefix_got += n as u8;
        }
        let len = u64::from(u32::from_be_bytes(self.prefix));
        if len > u64::from(max) {
            return Poll::Ready(Err(FrameError::TooLarge { len, max }));
        }
        if self.lease.is_none() {
            let held = match budget {
                Some(b) => {
                    let acquiring = match &mut self.acquiring {
                        Some(a) => a,
                        None => self.acquiring.insert(Box::pin(b.take(len))),
                    };
                    let permit = ready!(acquiring.as_mut().poll(cx));
                    self.acquiring = None;
                    Some(permit.ok_or(FrameError::TooLarge { len, max }))
                }
                None => None,
            };
            let held = held.transpose();
            let held = match held {
                Ok(h) => h,
                Err(e) => return Poll::Ready(Err(e)),
            };
            self.lease = Some(FrameLease { _held: held });
            self.body = vec![0u8; len as usize];
            self.body_got = 0;
        }
        while self.body_got < self.body.len() {
            let mut buf = ReadBuf::new(&mut self.body[self.body_got..]);
            ready!(Pin::new(&mut *r).poll_read(cx, &mut buf))?;
            let n = buf.filled().len();
            if n == 0 {
                return Poll::Ready(Err(FrameError::Truncated));
            }
            self.body_got += n;
        }
        let body = std::mem::take(&mut self.body);
        let lease = self.lease.take().unwrap_or_else(FrameLease::none);
        *self = FrameReader::default();
        Poll::Ready(match M::decode(body.as_slice()) {
            Ok(m) => Ok(Some((m, lease))),
            Err(e) => Err(e.into()),
        })
    }
}

/// Encodes `msg` as one frame (length prefix and body), refusing one
/// larger than `max`.
pub fn encode_frame<M: Message>(msg: &M, max: u32) -> Result<Vec<u8>, FrameError> {
    let len = msg.encoded_len() as u64;
    if len > u64::from(max) {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut out = Vec::with_capacity(4 + len as usize);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    msg.encode(&mut out)
        .map_err(|e| FrameError::Io(std::io::Error::other(e)))?;
    Ok(out)
}

/// Writes one frame.
pub async fn write_frame<M, W>(w: &mut W, msg: &M, max: u32) -> Result<(), FrameError>
where
    M: Message,
    W: AsyncWrite + Unpin,
{
    let bytes = encode_frame(msg, max)?;
    w.write_all(&bytes).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{device_frame, DeviceFrame, DevicePing};

    fn ping(n: u64) -> DeviceFrame {
        DeviceFrame {
            msg: Some(device_frame::Msg::Ping(DevicePing { nonce: n })),
        }
    }

    #[tokio::test]
    async fn frames_round_trip_and_end_cleanly() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        write_frame(&mut a, &ping(1), 64).await.unwrap();
        write_frame(&mut a, &ping(2), 64).await.unwrap();
        drop(a);
        let f: DeviceFrame = read_frame(&mut b, 64, None).await.unwrap().unwrap();
        assert_eq!(f, ping(1));
        let f: DeviceFrame = read_frame(&mut b, 64, None).await.unwrap().unwrap();
        assert_eq!(f, ping(2));
        assert!(read_frame::<DeviceFrame, _>(&mut b, 64, None).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn oversize_truncated_and_garbage_frames_are_refused() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let e = read_frame::<DeviceFrame, _>(&mut b, 1024, None).await.unwrap_err();
        assert!(matches!(e, FrameError::TooLarge { .. }), "{e}");

        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&[0, 0, 0, 10, 1, 2]).await.unwrap();
        drop(a);
        let e = read_frame::<DeviceFrame, _>(&mut b, 1024, None).await.unwrap_err();
        assert!(matches!(e, FrameError::Truncated), "{e}");

        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff]).await.unwrap();
        let e = read_frame::<DeviceFrame, _>(&mut b, 1024, None).await.unwrap_err();
        assert!(matches!(e, FrameError::Decode(_)), "{e}");

        assert!(
            encode_frame(&ping(u64::MAX), 4).is_err(),
            "the writer checks the bound too"
        );
    }

    #[tokio::test]
    async fn a_reader_dropped_mid_frame_loses_nothing() {
        let budget = FrameBudget::new(4096);
        let bytes = encode_frame(&ping(7), 64).unwrap();
        let (mut a, mut b) = tokio::io::duplex(1024);
        let mut reader = FrameReader::default();
        // Two bytes of the prefix, then the call is dropped (as a select!
        // drops a branch that another one beat).
        a.write_all(&bytes[..2]).await.unwrap();
        let cut = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            reader.next::<DeviceFrame, _>(&mut b, 64, Some(&budget)),
        )
        .await;
        assert!(cut.is_err(), "half a prefix is not a frame");
        // The rest of the prefix and part of the body, dropped again: the
        // budget stays held for the frame meanwhile.
        a.write_all(&bytes[2..5]).await.unwrap();
        let cut = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            reader.next::<DeviceFrame, _>(&mut b, 64, Some(&budget)),
        )
        .await;
        assert!(cut.is_err());
        assert_eq!(budget.available_kib(), 3, "the body's budget is held across calls");
        a.write_all(&bytes[5..]).await.unwrap();
        a.write_all(&encode_frame(&ping(8), 64).unwrap()).await.unwrap();
        drop(a);
        let (f, lease) = reader
            .next::<DeviceFrame, _>(&mut b, 64, Some(&budget))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(f, ping(7));
        drop(lease);
        assert_eq!(budget.available_kib(), 4);
        let (f, _) = reader.next::<DeviceFrame, _>(&mut b, 64, None).await.unwrap().unwrap();
        assert_eq!(f, ping(8));
        assert!(reader.next::<DeviceFrame, _>(&mut b, 64, None).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn the_budget_is_held_while_a_body_arrives() {
        let budget = FrameBudget::new(4096);
        let (mut a, mut b) = tokio::io::duplex(64);
        // Announce 3 KiB, send a part: the reader holds 3 KiB of budget.
        a.write_all(&3072u32.to_be_bytes()).await.unwrap();
        a.write_all(&[0u8; 10]).await.unwrap();
        let reader = {
            let budget = budget.clone();
            tokio::spawn(async move { read_frame::<DeviceFrame, _>(&mut b, 1 << 20, Some(&budget)).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(budget.available_kib(), 1);
        drop(a);
        assert!(reader.await.unwrap().is_err());
        assert_eq!(budget.available_kib(), 4);
    }
}

//! Framing of the device protocol: each message is a 4-byte big-endian
//! length, then that many bytes of protobuf (`DeviceFrame` from a device,
//! `ServerFrame` from a node; `proto/tessera/v1/sync.proto`).
//!
//! The size bound is checked on the length prefix, before anything is
//! allocated, on both sides. A reader may also take its bytes from a
//! node-wide [`FrameBudget`], so that many peers sending large frames at
//! once cannot make the node hold more than the budget in partial frames.

use std::sync::Arc;

use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
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

    async fn take(&self, len: u64) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(kib(len)).ok()?;
        self.0.clone().acquire_many_owned(n).await.ok()
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
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len[got..]).await?;
        if n == 0 {
            return if got == 0 { Ok(None) } else { Err(FrameError::Truncated) };
        }
        got += n;
    }
    let len = u64::from(u32::from_be_bytes(len));
    if len > u64::from(max) {
        return Err(FrameError::TooLarge { len, max });
    }
    let permit = match budget {
        Some(b) => Some(b.take(len).await.ok_or(FrameError::TooLarge { len, max })?),
        None => None,
    };
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(e),
    })?;
    Ok(Some((M::decode(body.as_slice())?, FrameLease { _held: permit })))
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

//! A node-wide bound on open connections per listener.
//!
//! tonic bounds streams per connection, not connections: without this a
//! client that opens sockets without end exhausts the node's file
//! descriptors and memory, and every other caller with them. Each accepted
//! socket holds a permit of the listener's semaphore until it closes; at
//! the bound the listener stops accepting, so new sockets wait in the
//! kernel's backlog (and time out there) instead of taking the node down.
//! The number in use is exported as `tessera_open_connections{listener}`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::Connected;

/// An accepted socket and its place under the listener's bound.
pub struct Limited<T> {
    io: T,
    _permit: OwnedSemaphorePermit,
    open: Gauge,
}

impl<T> Drop for Limited<T> {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// `incoming`'s sockets, at most `max` open at once; `open` counts them.
pub fn limit<S, T>(incoming: S, max: usize, open: Gauge) -> impl Stream<Item = Result<Limited<T>, io::Error>>
where
    S: Stream<Item = Result<T, io::Error>> + Unpin,
{
    let permits = Arc::new(Semaphore::new(max.max(1)));
    futures::stream::unfold((incoming, permits, open), |(mut incoming, permits, open)| async move {
        // Wait for room before accepting: at the bound, sockets queue in
        // the kernel rather than in the node.
        let permit = permits.clone().acquire_owned().await.ok()?;
        let next = incoming.next().await?;
        let item = next.map(|io| {
            open.inc();
            Limited {
                io,
                _permit: permit,
                open: open.clone(),
            }
        });
        Some((item, (incoming, permits, open)))
    })
}

impl<T: Connected> Connected for Limited<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Limited<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Limited<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

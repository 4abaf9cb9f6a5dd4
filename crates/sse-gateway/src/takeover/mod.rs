//! Event streams written straight to the socket, without hyper, on HTTP/1.1: the takeover.
//!
//! Idle streams are what a node holds most of, and a hyper HTTP/1 connection keeps an 8 KiB
//! read and an 8 KiB write buffer for its whole life (`INIT_BUFFER_SIZE` in hyper's
//! `proto/h1/io.rs`, a floor `max_buf_size` cannot lower): about 13.5 KiB resident per idle
//! stream, measured. So once hyper has written a stream's response head, the connection task
//! takes the socket back ([`Takeover`], through `sse_core`'s
//! [`Http1Takeover`](sse_core::runtime::connection::Http1Takeover)) and hands it, with the
//! stream's [`SseBody`], to [`write_stream`]: a small future that writes the body's frames in
//! HTTP/1.1 chunked encoding (the `Transfer-Encoding` hyper announced in the head), several
//! frames per `writev` when several are ready, and ends the connection with the stream.
//!
//! When to take the socket: hyper gets a [`TakeoverBody`] in place of the stream. On its first
//! poll hyper has everything it must write itself (the response head); the body parks the
//! `SseBody` and asks for the takeover. The socket is taken back at the first moment hyper's
//! write buffer is empty, which is when hyper flushes the socket itself: hyper calls the
//! socket's `poll_flush` only after writing out its whole buffer (`Buffered::poll_flush`), so
//! [`TakeoverIo`] counts flushes. hyper does not promise this (`into_parts` is documented for
//! after a response), so the gateway's tests check every byte of the takeover.
//!
//! The stream's logic does not change: it is the same `SseBody` that hyper polls on HTTP/2
//! (whose streams share a connection and cannot be taken out) and for HTTP/1.0 clients.

mod writer;

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use sse_core::runtime::connection::Http1Takeover;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::body::SseBody;

pub(crate) use writer::write_stream;

// === impl Takeover ===

/// One connection's takeover point: the body of a stream waits here while the connection
/// task takes the socket from hyper. Cheap to clone; clones share the slot.
#[derive(Clone, Default)]
pub(crate) struct Takeover {
    state: Arc<FlushState>,
    body: Arc<Mutex<Option<SseBody>>>,
}

struct FlushState {
    /// Times hyper flushed the socket, its write buffer empty.
    flushes: AtomicU64,
    /// The flush count when the body asked for the takeover; `u64::MAX` until it does.
    requested_at: AtomicU64,
}

impl Default for FlushState {
    fn default() -> Self {
        Self {
            flushes: AtomicU64::new(0),
            requested_at: AtomicU64::new(u64::MAX),
        }
    }
}

impl Takeover {
    /// The response body that stands in for `body`: it yields nothing, and on its first poll
    /// (hyper has the response head by then) parks `body` here and asks for the socket.
    pub(crate) fn stand_in(&self, body: SseBody) -> TakeoverBody {
        TakeoverBody {
            body: Some(body),
            takeover: self.clone(),
        }
    }

    /// The parked body, once the socket was taken back.
    pub(crate) fn take(&self) -> Option<SseBody> {
        // A poisoned lock only means another thread panicked holding it; the slot is intact.
        self.body
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// Parks `body` and asks for the socket: it is taken back once hyper flushed what it
    /// holds now.
    fn park(&self, body: SseBody) {
        *self
            .body
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(body);
        let flushes = self.state.flushes.load(Ordering::Acquire);
        self.state.requested_at.store(flushes, Ordering::Release);
    }
}

impl Http1Takeover for Takeover {
    type Io = TakeoverIo;

    fn wrap(&self, stream: TcpStream) -> TakeoverIo {
        TakeoverIo {
            stream,
            state: self.state.clone(),
        }
    }

    fn is_due(&self) -> bool {
        let requested_at = self.state.requested_at.load(Ordering::Acquire);
        requested_at != u64::MAX && self.state.flushes.load(Ordering::Acquire) > requested_at
    }
}

// === impl TakeoverBody ===

/// See [`Takeover::stand_in`].
pub(crate) struct TakeoverBody {
    body: Option<SseBody>,
    takeover: Takeover,
}

impl http_body::Body for TakeoverBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(body) = this.body.take() {
            this.takeover.park(body);
        }
        // No waker: the connection task takes the socket once hyper flushed the head, and
        // never polls hyper again.
        Poll::Pending
    }
}

// === impl TakeoverIo ===

/// The socket as hyper sees it: counts hyper's flushes for [`Takeover`].
pub(crate) struct TakeoverIo {
    stream: TcpStream,
    state: Arc<FlushState>,
}

impl TakeoverIo {
    /// The socket itself, for the stream's writer.
    pub(crate) fn into_stream(self) -> TcpStream {
        self.stream
    }
}

impl AsyncRead for TakeoverIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TakeoverIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.stream).poll_flush(cx);
        if flushed.is_ready() {
            self.state.flushes.fetch_add(1, Ordering::AcqRel);
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

//! Event streams written straight to the socket, without hyper, on HTTP/1.1.
//!
//! Idle streams are what a node holds most of, and a hyper HTTP/1 connection keeps an 8 KiB
//! read and an 8 KiB write buffer for its whole life: about 13.5 KiB resident per idle
//! stream, measured. So once hyper has written a stream's response head, the connection task
//! takes the socket back ([`sse_core::runtime::connection::Takeover`]) and hands it, with the
//! stream's [`SseBody`], to [`write_stream`]: a small task that writes the body's frames in
//! HTTP/1.1 chunked encoding (the `Transfer-Encoding` hyper announced in the head), several
//! frames per `writev` when several are ready, and ends the connection with the stream.
//!
//! The stream's logic does not change: it is the same `SseBody` that hyper polls on HTTP/2
//! (whose streams share a connection and cannot be taken out) and for HTTP/1.0 clients.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Body as _;
use sse_core::runtime::connection::Takeover;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::body::SseBody;

/// Frames written in one `writev` at most (the kernel takes up to 1024 slices).
const MAX_FRAMES_PER_WRITE: usize = 256;

/// One connection's hand-over point: the body of a stream waits here while the connection
/// task takes the socket from hyper. Cheap to clone; clones share the slot.
#[derive(Clone, Default)]
pub(crate) struct Handoff {
    takeover: Takeover,
    body: Arc<Mutex<Option<SseBody>>>,
}

impl Handoff {
    /// What the connection task gives hyper's HTTP/1 server, to know when to let go.
    pub(crate) fn takeover(&self) -> Takeover {
        self.takeover.clone()
    }

    /// The response body that stands in for `body`: it yields nothing, and on its first poll
    /// (hyper has the response head by then) parks `body` here and asks for the socket.
    pub(crate) fn stand_in(&self, body: SseBody) -> HandedOff {
        HandedOff {
            body: Some(body),
            handoff: self.clone(),
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
}

/// See [`Handoff::stand_in`].
pub(crate) struct HandedOff {
    body: Option<SseBody>,
    handoff: Handoff,
}

impl http_body::Body for HandedOff {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(body) = this.body.take() {
            *this
                .handoff
                .body
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(body);
            this.handoff.takeover.request();
        }
        // No waker: the connection task takes the socket once hyper flushed the head, and
        // never polls hyper again.
        Poll::Pending
    }
}

/// Writes `body` to `stream` until the stream ends, the client goes away, or `abort` is
/// cancelled (the client fell behind: its outbox overflowed).
pub(crate) async fn write_stream(stream: TcpStream, mut body: SseBody, abort: CancellationToken) {
    let result = tokio::select! {
        result = pump(&stream, &mut body) => result,
        () = closed_by_peer(&stream) => Ok(()),
        () = abort.cancelled() => {
            tracing::debug!("client fell behind; connection closed");
            Ok(())
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "stream ended on a write error");
    }
}

/// Writes every frame the body yields, each batch as one chunk, then the last chunk.
async fn pump(stream: &TcpStream, body: &mut SseBody) -> io::Result<()> {
    let mut frames = Vec::new();
    loop {
        let open = std::future::poll_fn(|cx| ready_frames(body, cx, &mut frames)).await;
        if !frames.is_empty() {
            write_chunk(stream, &frames).await?;
            frames.clear();
        }
        if !open {
            return write_all(stream, &mut [IoSlice::new(b"0\r\n\r\n")]).await;
        }
    }
}

/// Collects the frames ready now into `frames`: `Pending` if there are none yet,
/// `Ready(false)` once the body has ended.
fn ready_frames(body: &mut SseBody, cx: &mut Context<'_>, frames: &mut Vec<Bytes>) -> Poll<bool> {
    while frames.len() < MAX_FRAMES_PER_WRITE {
        match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frames.extend(frame.into_data().ok()),
            Poll::Ready(Some(Err(never))) => match never {},
            Poll::Ready(None) => return Poll::Ready(false),
            Poll::Pending if frames.is_empty() => return Poll::Pending,
            Poll::Pending => break,
        }
    }
    Poll::Ready(true)
}

/// Writes `frames` as one HTTP/1.1 chunk.
async fn write_chunk(stream: &TcpStream, frames: &[Bytes]) -> io::Result<()> {
    let size: usize = frames.iter().map(Bytes::len).sum();
    let head = format!("{size:x}\r\n");
    let mut slices = Vec::with_capacity(frames.len() + 2);
    slices.push(IoSlice::new(head.as_bytes()));
    slices.extend(frames.iter().map(|frame| IoSlice::new(frame)));
    slices.push(IoSlice::new(b"\r\n"));
    write_all(stream, &mut slices).await
}

async fn write_all(stream: &TcpStream, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !slices.is_empty() {
        stream.writable().await?;
        match stream.try_write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut slices, written),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Completes when the client closes its side or the socket fails. Bytes a client sends on a
/// stream's connection (a pipelined request) are read and dropped: nothing answers them.
async fn closed_by_peer(stream: &TcpStream) {
    let mut scratch = [0u8; 64];
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.try_read(&mut scratch) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

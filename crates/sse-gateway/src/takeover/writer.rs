//! [`TakeoverWriter`]: writes a taken-over stream's frames to its socket in HTTP/1.1 chunked
//! encoding, several frames per `writev`, until the stream ends, the client leaves, or the
//! client falls behind.

use std::future::Future;
use std::io::{self, IoSlice, Write as _};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::Body as _;
use sse_core::runtime::connection::peer_vanished;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::body::SseBody;

/// Frames written in one `writev` at most (the kernel takes up to 1024 slices).
const MAX_FRAMES_PER_WRITE: usize = 256;
/// Room for frames a stream keeps between chunks; a burst's larger list is freed.
const FRAMES_KEPT: usize = 8;

/// Writes `body` to `stream` until the stream ends, the client goes away, or `abort` is
/// cancelled (the client fell behind: its outbox overflowed).
pub(crate) fn write_stream(
    stream: TcpStream,
    body: SseBody,
    abort: CancellationToken,
) -> TakeoverWriter {
    TakeoverWriter {
        stream,
        body,
        abort,
        cancelled: None,
        frames: Vec::new(),
        head: ChunkHead::default(),
        written: 0,
        state: State::Streaming,
    }
}

/// The future [`write_stream`] returns: a hand-written state machine rather than an `async fn`
/// with `select!`, because it is what an idle stream's task holds for its whole life. It
/// keeps the body, the socket and the chunk being written (about 400 bytes); the `async`
/// version, with its readiness and cancellation futures, measured 1,392.
///
/// An overflow closes the outbox, which wakes the body's waker (this task's) when the writer
/// is waiting for the body; when it is waiting for the socket, see `wait_for_socket_or_abort`.
pub(crate) struct TakeoverWriter {
    stream: TcpStream,
    body: SseBody,
    abort: CancellationToken,
    /// Waits for `abort` while a write is stuck (see `wait_for_socket_or_abort`).
    cancelled: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    /// The frames of the chunk being written (empty: none).
    frames: Vec<Bytes>,
    head: ChunkHead,
    /// Bytes of the current chunk already written.
    written: usize,
    state: State,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Streaming,
    /// The body ended: its last frames are being written.
    BodyEnded,
    /// The last chunk is being written.
    Ending,
}

/// A chunk's size line, `<hex size>\r\n`, without an allocation.
#[derive(Default)]
struct ChunkHead {
    bytes: [u8; 18],
    len: u8,
}

impl ChunkHead {
    fn new(size: usize) -> Self {
        let mut head = Self::default();
        let mut rest = &mut head.bytes[..];
        // At most 16 hex digits and CRLF: always fits.
        let _ = write!(rest, "{size:x}\r\n");
        let unused = rest.len();
        head.len = u8::try_from(head.bytes.len() - unused).unwrap_or(0);
        head
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

const CHUNK_END: &[u8] = b"\r\n";
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

impl Future for TakeoverWriter {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.abort.is_cancelled() {
            this.cut();
            return Poll::Ready(());
        }
        if let Some(ended) = this.peer_closed(cx) {
            if let Err(error) = ended {
                this.ended_on(&error);
            }
            return Poll::Ready(());
        }
        loop {
            if this.frames.is_empty() && this.state == State::Streaming {
                let Poll::Ready(open) = ready_frames(&mut this.body, cx, &mut this.frames) else {
                    return Poll::Pending;
                };
                this.written = 0;
                if this.frames.is_empty() {
                    this.state = State::Ending;
                } else {
                    let size = this.frames.iter().map(Bytes::len).sum();
                    this.head = ChunkHead::new(size);
                    if !open {
                        this.state = State::BodyEnded;
                    }
                }
            }
            match this.poll_write_chunk(cx) {
                Poll::Ready(Ok(())) => match this.state {
                    State::Ending => return Poll::Ready(()),
                    State::BodyEnded => {
                        this.frames.clear();
                        this.state = State::Ending;
                        this.written = 0;
                    }
                    State::Streaming => this.chunk_written(),
                },
                Poll::Ready(Err(error)) => {
                    this.ended_on(&error);
                    return Poll::Ready(());
                }
                Poll::Pending => return this.wait_for_socket_or_abort(cx),
            }
        }
    }
}

impl TakeoverWriter {
    /// Forgets the chunk just written, and what a burst left behind: a stream that goes idle
    /// again keeps no frame list sized for the burst, and no abort wait.
    fn chunk_written(&mut self) {
        if self.frames.capacity() > FRAMES_KEPT {
            self.frames = Vec::new();
        } else {
            self.frames.clear();
        }
        self.cancelled = None;
    }

    /// The socket is full: the client is not reading. While the writer waits for it, it does
    /// not poll the body, so the outbox has no waker to tell it of an overflow; wait for the
    /// abort as well. The wait is allocated only while a write is stuck, not per idle stream.
    fn wait_for_socket_or_abort(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let abort = &self.abort;
        let cancelled = self
            .cancelled
            .get_or_insert_with(|| Box::pin(abort.clone().cancelled_owned()));
        if cancelled.as_mut().poll(cx).is_ready() {
            self.cut();
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// The client fell behind: the connection is reset (`SO_LINGER` 0) as the writer drops
    /// it, not closed. A close would queue a FIN behind the unsent data of a client that is
    /// not reading, and the kernel would keep that socket, its send queue full, until its
    /// retries give up (minutes); a reset frees it at once. Nothing the client needs is lost:
    /// it resumes by `Last-Event-ID` from what it read.
    fn cut(&self) {
        tracing::debug!("client fell behind; connection reset");
        let _ = socket2::SockRef::from(&self.stream).set_linger(Some(std::time::Duration::ZERO));
    }

    /// Whether the client closed its side (`Ok`) or the socket failed (`Err`); registers for
    /// readability. Bytes a client sends on a stream's connection (a pipelined request) are
    /// read and dropped: nothing answers them.
    fn peer_closed(&self, cx: &mut Context<'_>) -> Option<io::Result<()>> {
        let mut scratch = [0u8; 64];
        loop {
            match self.stream.poll_read_ready(cx) {
                Poll::Pending => return None,
                Poll::Ready(Err(error)) => return Some(Err(error)),
                Poll::Ready(Ok(())) => match self.stream.try_read(&mut scratch) {
                    Ok(0) => return Some(Ok(())),
                    Ok(_) => {}
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) => return Some(Err(error)),
                },
            }
        }
    }

    /// The stream ends on a socket `error`; a client that vanished is counted.
    fn ended_on(&self, error: &io::Error) {
        if peer_vanished(error) {
            self.body.client_vanished();
        }
        tracing::debug!(%error, "stream ended on a socket error");
    }

    /// Writes the rest of the current chunk (or the last chunk, when ending).
    fn poll_write_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut slices = Vec::with_capacity(self.frames.len() + 2);
            if self.state == State::Ending {
                slices.push(IoSlice::new(LAST_CHUNK));
            } else {
                slices.push(IoSlice::new(self.head.as_bytes()));
                slices.extend(self.frames.iter().map(|frame| IoSlice::new(frame)));
                slices.push(IoSlice::new(CHUNK_END));
            }
            let mut rest = slices.as_mut_slice();
            IoSlice::advance_slices(&mut rest, self.written);
            if rest.is_empty() {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.stream).poll_write_vectored(cx, rest)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(written) => self.written += written,
                Err(error) => return Poll::Ready(Err(error)),
            }
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

#[cfg(test)]
mod tests {
    use super::ChunkHead;

    #[test]
    fn a_chunk_head_is_the_size_in_hex_and_crlf_for_every_size() {
        assert_eq!(ChunkHead::new(0x1f).as_bytes(), b"1f\r\n");
        assert_eq!(ChunkHead::new(40_000).as_bytes(), b"9c40\r\n");
        assert_eq!(
            ChunkHead::new(usize::MAX).as_bytes(),
            b"ffffffffffffffff\r\n",
            "the largest size still fits"
        );
    }
}

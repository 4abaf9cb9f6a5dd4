//! A stalled reader: an event stream that is opened, answered, and then never read again.
//!
//! It is what a frozen browser tab or a client behind a dead link looks like to the server:
//! the connection stays open and acknowledges nothing more once its receive buffer is full,
//! so everything the server writes to it piles up in the server's socket send buffer, and
//! then in the server itself unless it cuts the client. To fill the buffers fast the socket's
//! receive buffer is made small (`SO_RCVBUF`) before connecting, so the window the client
//! advertises stays small. The request is written by hand on a plain TCP socket, and the
//! response read only up to the end of its headers: an HTTP client library would go on
//! reading the body into its own buffer.

use std::net::{IpAddr, SocketAddr};

use http::HeaderValue;
use nix::sys::socket::sockopt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::template::Endpoint;

/// The most response-head bytes read before the stream is given up on.
const MAX_HEAD: usize = 16 * 1024;

/// Why a stalled stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StallError {
    /// Connecting, writing the request or reading the response failed.
    #[error("connection to {addr} failed")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The server closed the connection, or sent more than [`MAX_HEAD`] bytes, before the end
    /// of the response head.
    #[error("no complete response head")]
    NoHead,
    /// The server answered with a status other than 200 (its status line).
    #[error("answered {0:?}")]
    Status(String),
}

/// Opens a stream to `endpoint` for `topic` from `source`, with a receive buffer of
/// `receive_buffer` bytes, and returns it once the server answered 200, unread from there on.
pub(crate) async fn open(
    endpoint: &Endpoint,
    topic: &str,
    source: IpAddr,
    receive_buffer: u32,
    authorization: Option<&HeaderValue>,
) -> Result<TcpStream, StallError> {
    let addr = endpoint.addr;
    let io = |source| StallError::Io { addr, source };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(io)?;
    if addr.is_ipv4() {
        // See `conn`: the port is chosen at connect time, by the whole 4-tuple.
        nix::sys::socket::setsockopt(&socket, sockopt::IpBindAddressNoPort, &true)
            .map_err(|errno| io(errno.into()))?;
    }
    socket.bind(SocketAddr::new(source, 0)).map_err(io)?;
    // Before connecting, so the window scale offered in the SYN fits the small buffer.
    socket.set_recv_buffer_size(receive_buffer).map_err(io)?;
    let mut stream = socket.connect(addr).await.map_err(io)?;
    stream
        .write_all(&request(endpoint, topic, authorization))
        .await
        .map_err(io)?;
    let mut head = Vec::with_capacity(1024);
    let mut buffer = [0; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        let read = stream.read(&mut buffer).await.map_err(io)?;
        if read == 0 || head.len() + read > MAX_HEAD {
            return Err(StallError::NoHead);
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let status_line = head
        .split(|&byte| byte == b'\r')
        .next()
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .unwrap_or_default();
    let status = status_line.split(' ').nth(1);
    if status != Some("200") {
        return Err(StallError::Status(status_line));
    }
    Ok(stream)
}

/// The request an `EventSource` sends, as bytes.
fn request(endpoint: &Endpoint, topic: &str, authorization: Option<&HeaderValue>) -> Vec<u8> {
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n",
        endpoint.path(topic),
        endpoint.host
    )
    .into_bytes();
    if let Some(authorization) = authorization {
        request.extend_from_slice(b"Authorization: ");
        request.extend_from_slice(authorization.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_an_event_source_get() {
        let endpoint = Endpoint::parse("http://127.0.0.1:9/events?topic={topic}").unwrap();
        let plain = request(&endpoint, "t1", None);
        assert_eq!(
            plain,
            b"GET /events?topic=t1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nAccept: text/event-stream\r\n\r\n"
        );
        let bearer = HeaderValue::from_static("Bearer x");
        let with_token = String::from_utf8(request(&endpoint, "t", Some(&bearer))).unwrap();
        assert!(
            with_token.ends_with("Authorization: Bearer x\r\n\r\n"),
            "{with_token}"
        );
    }
}

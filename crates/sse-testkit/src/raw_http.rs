//! HTTP spoken byte by byte, for the requests no well-behaved client library sends (lying or
//! missing headers, garbage, a stalled HTTP/2 preface) and for probes that must not retry.
//!
//! Nothing here parses more of HTTP than a test needs: [`status_of`] reads a status line,
//! [`whole_response`] a `Content-Length`, [`find`] locates e.g. the end of a response head.
//! [`send_raw`] reads until the server closes, so its request must end the connection
//! (`Connection: close`, or a request the server answers by closing); [`exchange`] also stops
//! at the end of one whole response, for garbage that may or may not be a request.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What every HTTP/2 connection with prior knowledge (h2c) starts with (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Where `needle` first occurs in `haystack`; an empty `needle` occurs at 0.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The status code of an HTTP/1.x response that starts `response`, if it starts with a status
/// line (`HTTP/1.1 200 OK`).
pub fn status_of(response: &[u8]) -> Option<u16> {
    let line_end = find(response, b"\r\n").unwrap_or(response.len());
    let line = std::str::from_utf8(&response[..line_end]).ok()?;
    let mut words = line.split(' ');
    if !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    words.next()?.parse().ok()
}

/// Whether `bytes` hold a whole HTTP/1.x response with a `Content-Length` body.
pub fn whole_response(bytes: &[u8]) -> bool {
    let Some(head_end) = find(bytes, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
    head.lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|length| length.trim().parse::<usize>().ok())
        .is_some_and(|length| bytes.len() >= head_end + 4 + length)
}

/// Sends `bytes` (anything: they need not be HTTP) on a new connection and reads until the
/// server closes it or has sent one [`whole_response`]: the bytes received, or `None` if it did
/// neither within `timeout`. A server that closes before it read everything is no error.
///
/// # Panics
/// If the connection cannot be made.
pub async fn exchange(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let mut socket = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let _ = socket.write_all(bytes).await;
    let mut received = Vec::new();
    let mut buffer = vec![0_u8; 16 * 1024];
    let read = async {
        loop {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
            if whole_response(&received) {
                return;
            }
        }
    };
    tokio::time::timeout(timeout, read).await.ok()?;
    Some(received)
}

/// Connects to `addr`, sends `request` as is, and returns every byte of the response, read
/// until the server closes the connection. Blocks; the server must run on other threads (as a
/// [`crate::ServerThread`] does).
///
/// # Panics
/// If the connection fails, or the server keeps it open longer than `timeout` after the last
/// byte it sent.
pub fn send_raw(addr: SocketAddr, request: &[u8], timeout: Duration) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(timeout))
        .expect("set a read timeout");
    stream.write_all(request).expect("send the request");
    let mut response = Vec::new();
    if let Err(error) = stream.read_to_end(&mut response) {
        panic!(
            "reading the response until {addr} closes failed ({error}); received {:?}",
            String::from_utf8_lossy(&response)
        );
    }
    response
}

/// The status of `GET path` on a new connection, or `None` if there is no answer within
/// `timeout` (a server that is down, not listening yet, or hung).
pub async fn http_status(addr: SocketAddr, path: &str, timeout: Duration) -> Option<u16> {
    let exchange = async {
        let mut socket = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        socket.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        socket.read_to_end(&mut response).await.ok()?;
        status_of(&response)
    };
    tokio::time::timeout(timeout, exchange).await.ok()?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_locates_the_first_occurrence() {
        assert_eq!(find(b"ab\r\n\r\ncd\r\n\r\n", b"\r\n\r\n"), Some(2));
        assert_eq!(find(b"abc", b"abcd"), None);
        assert_eq!(find(b"abc", b""), Some(0));
    }

    #[test]
    fn whole_response_waits_for_the_whole_body() {
        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert!(whole_response(response));
        assert!(!whole_response(&response[..response.len() - 1]));
        assert!(!whole_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"));
    }

    #[test]
    fn status_of_reads_only_a_status_line() {
        assert_eq!(
            status_of(b"HTTP/1.1 503 Service Unavailable\r\n\r\n"),
            Some(503)
        );
        assert_eq!(status_of(b"HTTP/1.0 200 OK\r\n"), Some(200));
        assert_eq!(status_of(b"HTTP/1.1 204\r\n"), Some(204));
        assert_eq!(status_of(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(status_of(b""), None);
    }
}

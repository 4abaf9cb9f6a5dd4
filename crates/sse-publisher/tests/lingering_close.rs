//! A refused writer must hear why: a client that sends its whole body before reading (Python's
//! `urllib`, many Java clients) gets a `413` for a body over `--max-body`, not a connection
//! reset. The service writes the error, then reads and discards what the client still sends
//! before it closes (a lingering close), and other clients are served meanwhile.

mod harness;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use harness::{PATIENCE, TOKEN, ids, read_response, start_publisher};
use sse_testkit::RedisServer;

/// `--max-body` in these tests.
const MAX_BODY: usize = 64 * 1024;

/// A connection with small socket buffers, so that a server closing with the body unread
/// resets it while the body is still being sent.
async fn small_buffered(addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_send_buffer_size(4096).expect("SO_SNDBUF");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let stream = socket
        .connect(addr)
        .await
        .expect("connect")
        .into_std()
        .expect("a std socket");
    stream.set_nonblocking(false).expect("blocking");
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("a read timeout");
    stream
        .set_write_timeout(Some(PATIENCE))
        .expect("a write timeout");
    stream
}

/// A publish request head declaring a body of `length` bytes, as `urllib` sends it.
fn head(length: usize) -> String {
    format!(
        "POST /v1/publish HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )
}

#[tokio::test]
async fn a_client_that_sends_a_huge_body_before_reading_gets_the_whole_413() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &["--max-body", "64KiB"]);
    let body = vec![b'x'; 8 * MAX_BODY];
    let mut request = head(body.len()).into_bytes();
    request.extend_from_slice(&body);
    let mut client = small_buffered(publisher.addr).await;

    client
        .write_all(&request)
        .expect("the whole request is taken, not reset");
    client
        .shutdown(std::net::Shutdown::Write)
        .expect("end the request");
    let reply = read_response(&mut client, Vec::new());

    reply.assert_error(413, "too_large", &["65536 bytes"]);
    assert_eq!(reply.header("connection"), Some("close"), "{reply:?}");
    let mut rest = Vec::new();
    assert_eq!(
        client.read_to_end(&mut rest).expect("a clean close"),
        0,
        "nothing follows the response"
    );
}

#[tokio::test]
async fn other_clients_are_served_while_a_connection_lingers() {
    let redis = RedisServer::start();
    let publisher = start_publisher(&redis, &["--max-body", "64KiB"]);
    let body = vec![b'x'; 8 * MAX_BODY];
    let (first, rest) = body.split_at(MAX_BODY);
    let mut lingering = small_buffered(publisher.addr).await;
    lingering
        .write_all(head(body.len()).as_bytes())
        .expect("send the head");
    lingering.write_all(first).expect("send part of the body");
    read_response(&mut lingering, Vec::new()).assert_error(413, "too_large", &["65536 bytes"]);

    // The refused connection is still open, its body mostly unsent: another client publishes.
    let id = publisher.publish_one("other", "ok").await;
    assert_eq!(ids(&redis, "other"), [id]);

    lingering
        .write_all(rest)
        .expect("the rest of the body is read and discarded, not reset");
    lingering
        .shutdown(std::net::Shutdown::Write)
        .expect("end the request");
    let mut after = Vec::new();
    assert_eq!(
        lingering.read_to_end(&mut after).expect("a clean close"),
        0,
        "the server closes once the client is done"
    );
}

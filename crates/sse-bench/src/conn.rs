//! One HTTP/1.1 client connection, optionally from a chosen source address.
//!
//! Subscribers, publishers and the readiness probe all need the same thing: a TCP connection
//! to an [`Endpoint`], a hyper handshake, and requests whose target comes from a template. The
//! source address matters for subscribers: each local address has only ~28k ephemeral ports,
//! so tens of thousands of connections are spread over 127.0.0.1, 127.0.0.2, …
//!
//! Dropping a [`Connection`] closes its socket at once (the task driving it is aborted), which
//! is how a reconnect storm drops connections "at the same instant".

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use nix::sys::socket::sockopt;
use tokio::net::TcpSocket;
use tokio::task::JoinHandle;

use crate::template::Endpoint;

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// The TCP connection could not be made.
    #[error("connect to {addr} failed")]
    Connect {
        /// Where to.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The connection failed while sending or receiving.
    #[error("http exchange failed")]
    Exchange(#[from] hyper::Error),
    /// The request could not be built (a header or path the templates let through).
    #[error("invalid request")]
    Request(#[from] http::Error),
    /// The server answered with an unexpected status.
    #[error("status {0}")]
    Status(http::StatusCode),
}

impl HttpError {
    /// Whether the server refused the request's credentials (401) or their rights (403):
    /// asking again with the same ones cannot succeed.
    pub(crate) fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::Status(http::StatusCode::UNAUTHORIZED | http::StatusCode::FORBIDDEN)
        )
    }
}

/// An open HTTP/1.1 connection; requests on it go one after another.
pub(crate) struct Connection {
    sender: SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Connection {
    /// Connects to `addr`, from `source` if given.
    ///
    /// # Errors
    /// [`HttpError::Connect`] or [`HttpError::Exchange`] (the handshake).
    pub(crate) async fn open(addr: SocketAddr, source: Option<IpAddr>) -> Result<Self, HttpError> {
        let connect_error = |source| HttpError::Connect { addr, source };
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(connect_error)?;
        // Choose the source port at connect time, by the whole 4-tuple: binding first would
        // reserve a port for any destination, which skips every port still in TIME_WAIT from
        // an earlier run and, with tens of thousands of them, stalls on port allocation.
        if addr.is_ipv4() {
            nix::sys::socket::setsockopt(&socket, sockopt::IpBindAddressNoPort, &true)
                .map_err(|errno| connect_error(errno.into()))?;
        }
        if let Some(source) = source {
            socket
                .bind(SocketAddr::new(source, 0))
                .map_err(connect_error)?;
        }
        let stream = socket.connect(addr).await.map_err(connect_error)?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self { sender, driver })
    }

    /// Whether the server or the network closed the connection.
    pub(crate) fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Sends `request` once the previous response is complete, and returns the response head.
    ///
    /// # Errors
    /// [`HttpError::Exchange`] if the connection fails.
    pub(crate) async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, HttpError> {
        self.sender.ready().await?;
        Ok(self.sender.send_request(request).await?)
    }
}

/// A request to `endpoint` for `topic` with `headers` and `body`.
///
/// # Errors
/// [`HttpError::Request`] if a header or the path is not valid HTTP.
pub(crate) fn request(
    method: Method,
    endpoint: &Endpoint,
    topic: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, HttpError> {
    let mut request = Request::builder()
        .method(method)
        .uri(endpoint.path(topic))
        .header(http::header::HOST, &endpoint.host)
        .body(Full::new(body))?;
    request.headers_mut().extend(
        headers
            .iter()
            .map(|(name, value)| (name.clone(), value.clone())),
    );
    Ok(request)
}

/// Failures printed per counter before the driver stays quiet (the report has the counts).
const FAILURES_SHOWN: u64 = 5;

/// Counts a failure in `counter`, and prints the first few with `context`.
pub(crate) fn count_failure(counter: &AtomicU64, context: fmt::Arguments<'_>, error: &HttpError) {
    if counter.fetch_add(1, Ordering::Relaxed) < FAILURES_SHOWN {
        eprintln!("{context}: {}", error_chain(error));
    }
}

/// `error` and its sources, joined with `: `.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

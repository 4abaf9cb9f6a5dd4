//! [`ClientConnection`]: what a request knows of the TCP connection it came on, handed from
//! the accept loop to the handlers.

use tokio_util::sync::CancellationToken;

use crate::takeover::Takeover;

/// What a request knows of the connection it came on.
#[derive(Clone)]
pub(crate) struct ClientConnection {
    /// The peer's address (nginx's, behind a proxy).
    pub(crate) peer: std::net::SocketAddr,
    /// Cancelling it aborts the connection (its client fell behind).
    pub(crate) abort: CancellationToken,
    /// How an HTTP/1.1 stream leaves hyper on this connection.
    pub(crate) takeover: Takeover,
}

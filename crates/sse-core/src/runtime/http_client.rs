//! The HTTP client the services call other services with (a JWKS URL, the gateway's forward
//! auth): reqwest over a connection pool, TLS by rustls with the `ring` provider and the
//! system's trusted roots, every request bounded by a timeout.

use std::time::Duration;

/// A client whose requests give up after `timeout` (connecting included).
///
/// # Errors
/// What reqwest says when the client cannot be built (no usable TLS roots).
pub fn build(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    super::install_tls_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("sse-gateway/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// `text` as a URL, if it is an `http://` or `https://` one.
pub fn http_url(text: &str) -> Option<reqwest::Url> {
    reqwest::Url::parse(text)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https"))
}

//! [`Jwks`]: the verification keys served at a JWKS URL (`--jwks-url`), kept fresh so a key
//! rotation needs no restart.
//!
//! The document is fetched at start and again every `--jwks-refresh`; a token that names a
//! `kid` the set lacks makes a fetch at once (the issuer has rotated), at most once per
//! `--jwks-min-interval`, so tokens with made-up `kid`s cannot turn the gateway against the
//! key server. Fetches never overlap: a request that needs one while another runs waits for
//! it and uses its result. A fetch that fails (the server is down, answers an error, or
//! serves something that is not a usable JWKS) changes nothing: the keys fetched before stay,
//! the failure is logged and counted, and the next attempt comes after `--jwks-min-interval`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::metrics::MetricsRegistry;
use crate::jwt::{JwksError, Verifier};

/// The largest JWKS document read; real ones are a few kilobytes.
const MAX_DOCUMENT: usize = 1024 * 1024;

/// The metrics of JWKS fetches, the same in both services.
#[derive(Clone)]
pub struct JwksMetrics {
    /// `sse_jwks_refreshes_total{outcome}`: fetches, by outcome.
    refreshes: prometheus::IntCounterVec,
    /// `sse_jwks_keys`: keys of the document in use.
    keys: prometheus::IntGauge,
}

impl JwksMetrics {
    /// The metrics, registered in `registry`.
    pub fn register(registry: &MetricsRegistry) -> Self {
        Self {
            refreshes: registry.counter_vec(
                "sse_jwks_refreshes_total",
                "Fetches of --jwks-url, by outcome (updated, unreachable, invalid: the keys held before stay).",
                "outcome",
            ),
            keys: registry.gauge(
                "sse_jwks_keys",
                "Keys of the JWKS document in use (0 until one was fetched).",
            ),
        }
    }

    fn record(&self, outcome: Outcome, keys: usize) {
        self.refreshes.with_label_values(&[outcome.label()]).inc();
        self.keys.set(i64::try_from(keys).unwrap_or(i64::MAX));
    }
}

/// What one fetch did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// A usable document was installed.
    Updated,
    /// No answer, or an answer other than 200.
    Unreachable,
    /// An answer that is no usable JWKS document.
    Invalid,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Updated => "updated",
            Self::Unreachable => "unreachable",
            Self::Invalid => "invalid",
        }
    }
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("the JWKS URL did not answer")]
    Request(#[source] reqwest::Error),
    #[error("the JWKS URL answered {0}")]
    Status(reqwest::StatusCode),
    #[error("the JWKS document is over {MAX_DOCUMENT} bytes")]
    TooLarge,
    #[error("the JWKS document cannot be used")]
    Invalid(#[source] JwksError),
}

/// See the module docs.
pub struct Jwks {
    url: reqwest::Url,
    client: reqwest::Client,
    verifier: Arc<Verifier>,
    refresh_every: Duration,
    min_interval: Duration,
    /// When the last fetch ended; held while fetching, so fetches never overlap.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    metrics: JwksMetrics,
}

/// How often, and how often at most, the document is fetched.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// The period of routine fetches.
    pub refresh_every: Duration,
    /// The shortest time between two fetches made for tokens.
    pub min_interval: Duration,
}

impl Jwks {
    /// Keys for `verifier` (made with [`crate::jwt::Key::Set`]) from `url`.
    pub fn new(
        url: reqwest::Url,
        client: reqwest::Client,
        verifier: Arc<Verifier>,
        schedule: Schedule,
        metrics: JwksMetrics,
    ) -> Self {
        Self {
            url,
            client,
            verifier,
            refresh_every: schedule.refresh_every,
            min_interval: schedule.min_interval,
            last_fetch: tokio::sync::Mutex::new(None),
            metrics,
        }
    }

    /// Fetches the document now and then every `refresh_every` (after a failure, every
    /// `min_interval`), until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let ok = {
                let mut last_fetch = self.last_fetch.lock().await;
                self.fetch(&mut last_fetch).await
            };
            let wait = if ok {
                self.refresh_every
            } else {
                self.min_interval.max(Duration::from_secs(1))
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// A token named a key the set lacks: fetches the document, unless a fetch ended less
    /// than `min_interval` ago (then the keys it brought are as new as they get). Waits for
    /// a fetch under way instead of starting another.
    pub async fn refresh_for_unknown_key(&self) {
        let mut last_fetch = self.last_fetch.lock().await;
        if last_fetch.is_some_and(|at| at.elapsed() < self.min_interval) {
            return;
        }
        self.fetch(&mut last_fetch).await;
    }

    /// One fetch, with the fetch lock held; whether it installed a document.
    async fn fetch(&self, last_fetch: &mut Option<Instant>) -> bool {
        let result = self.download().await.and_then(|document| {
            self.verifier
                .install(&document)
                .map_err(FetchError::Invalid)
        });
        *last_fetch = Some(Instant::now());
        let (outcome, keys) = match result {
            Ok(keys) => {
                tracing::info!(url = %self.url, keys, "JWKS keys loaded");
                (Outcome::Updated, keys)
            }
            Err(error) => {
                let keys = self.verifier.keys();
                tracing::warn!(
                    url = %self.url,
                    error = %crate::ErrorChain(&error),
                    keys_kept = keys,
                    "JWKS fetch failed; the keys held before stay in use"
                );
                let outcome = match error {
                    FetchError::Request(_) | FetchError::Status(_) => Outcome::Unreachable,
                    FetchError::TooLarge | FetchError::Invalid(_) => Outcome::Invalid,
                };
                (outcome, keys)
            }
        };
        self.metrics.record(outcome, keys);
        outcome == Outcome::Updated
    }

    async fn download(&self) -> Result<Vec<u8>, FetchError> {
        let mut response = self
            .client
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(FetchError::Request)?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(FetchError::Status(response.status()));
        }
        let mut document = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(FetchError::Request)? {
            if document.len() + chunk.len() > MAX_DOCUMENT {
                return Err(FetchError::TooLarge);
            }
            document.extend_from_slice(&chunk);
        }
        Ok(document)
    }
}

//! [`JwtFlags`]: the token flags both services take (`--jwt-*` and `--jwks-*`, with the same
//! environment names), and the [`Tokens`] check they describe. The gateway checks
//! subscribers with it, the publisher publishers; each adds what is its own (the gateway:
//! where a browser's token may travel).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::jwks::{Jwks, JwksMetrics, Schedule};
use crate::jwt::{Checks, ClaimFormat, Key, KeyError, TokenError, Verified, Verifier};

/// How long a JWKS fetch may take.
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// The token flags; see the module docs.
#[derive(Clone, Debug, clap::Args)]
pub struct JwtFlags {
    /// HMAC secret that tokens are signed with (HS256, HS384, HS512). Setting a key turns
    /// token checking on.
    #[arg(
        long,
        env = "SSE_JWT_SECRET",
        hide_env_values = true,
        conflicts_with_all = ["jwt_secret_file", "jwt_public_key", "jwks_url"]
    )]
    pub jwt_secret: Option<String>,

    /// File holding the HMAC secret (a trailing line break is ignored).
    #[arg(long, env = "SSE_JWT_SECRET_FILE", conflicts_with_all = ["jwt_public_key", "jwks_url"])]
    pub jwt_secret_file: Option<PathBuf>,

    /// PEM file with the public key tokens are verified with: RSA (RS256, RS384, RS512), EC
    /// (ES256, ES384) or Ed25519 (EdDSA).
    #[arg(long, env = "SSE_JWT_PUBLIC_KEY", conflicts_with = "jwks_url")]
    pub jwt_public_key: Option<PathBuf>,

    /// URL of a JWKS document (an identity provider's `.../jwks.json`) whose public keys
    /// verify tokens, found by the token's `kid`. Fetched at start, every --jwks-refresh,
    /// and when a token names a key it lacks.
    #[arg(long, env = "SSE_JWKS_URL")]
    pub jwks_url: Option<String>,

    /// How often the JWKS document is fetched routinely.
    #[arg(long, env = "SSE_JWKS_REFRESH", default_value = "10m", value_parser = humantime::parse_duration)]
    pub jwks_refresh: Duration,

    /// The shortest time between two JWKS fetches made because a token named an unknown
    /// key (and between retries after a failed fetch).
    #[arg(long, env = "SSE_JWKS_MIN_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub jwks_min_interval: Duration,

    /// Required `aud` of tokens.
    #[arg(long, env = "SSE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Required `iss` of tokens.
    #[arg(long, env = "SSE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Clock skew allowed when checking a token's `exp` and `nbf`.
    #[arg(long, env = "SSE_JWT_LEEWAY", default_value = "5s", value_parser = humantime::parse_duration)]
    pub jwt_leeway: Duration,

    /// The token claim listing its topics, `{"subscribe": [...], "publish": [...]}` with
    /// topics and patterns; `mercure` reads Mercure's claim instead.
    #[arg(long, env = "SSE_JWT_CLAIM", default_value = "sse")]
    pub jwt_claim: String,
}

/// Checks tokens with the configured key, or the keys of the JWKS URL.
pub struct Tokens {
    verifier: Arc<Verifier>,
    jwks: Option<Arc<Jwks>>,
}

impl JwtFlags {
    /// Whether a key (or a JWKS URL) is configured.
    pub fn has_key(&self) -> bool {
        self.jwt_secret.is_some()
            || self.jwt_secret_file.is_some()
            || self.jwt_public_key.is_some()
            || self.jwks_url.is_some()
    }

    /// The check the flags describe, or `None` when no key is configured. With a JWKS URL,
    /// its keys are fetched by a task that runs until `stop`, counted in `metrics`.
    ///
    /// # Errors
    /// [`KeyError`] when the key cannot be read or used, or the URL is not one.
    pub fn tokens(
        &self,
        metrics: JwksMetrics,
        stop: &CancellationToken,
    ) -> Result<Option<Tokens>, KeyError> {
        let key = match &self.jwks_url {
            Some(_) => Some(Key::Set),
            None => Key::from_flags(
                self.jwt_secret.as_deref(),
                self.jwt_secret_file.as_deref(),
                self.jwt_public_key.as_deref(),
            )?,
        };
        let Some(key) = key else {
            return Ok(None);
        };
        let checks = Checks {
            audience: self.jwt_audience.clone(),
            issuer: self.jwt_issuer.clone(),
            leeway: self.jwt_leeway,
            claim: ClaimFormat::named(&self.jwt_claim),
        };
        let verifier = Arc::new(Verifier::new(&key, checks)?);
        let jwks = match &self.jwks_url {
            None => None,
            Some(url) => {
                let url = super::http_client::http_url(url)
                    .ok_or_else(|| KeyError::JwksUrl(url.clone()))?;
                let client = super::http_client::build(JWKS_TIMEOUT).map_err(KeyError::Client)?;
                let schedule = Schedule {
                    refresh_every: self.jwks_refresh,
                    min_interval: self.jwks_min_interval,
                };
                let jwks = Arc::new(Jwks::new(url, client, verifier.clone(), schedule, metrics));
                tokio::spawn(jwks.clone().run(stop.clone()));
                Some(jwks)
            }
        };
        Ok(Some(Tokens { verifier, jwks }))
    }
}

impl Tokens {
    /// Verifies `token` and reads what it allows. A token whose key the JWKS set lacks
    /// makes the set be fetched again (see [`Jwks`]) and is checked once more.
    ///
    /// # Errors
    /// [`TokenError`] saying what is wrong with it; [`TokenError::NoKeys`] when the JWKS
    /// could never be fetched.
    pub async fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        match (self.verifier.verify(token), &self.jwks) {
            (Err(TokenError::UnknownKey(_) | TokenError::NoKeys), Some(jwks)) => {
                jwks.refresh_for_unknown_key().await;
                self.verifier.verify(token)
            }
            (result, _) => result,
        }
    }
}

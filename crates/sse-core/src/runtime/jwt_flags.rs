//! [`JwtFlags`]: the token flags both services take (`--jwt-*`, with the same environment
//! names), and the [`Verifier`] they describe. The gateway checks subscribers with it, the
//! publisher publishers; each adds what is its own (the gateway: where a browser's token may
//! travel).

use std::path::PathBuf;
use std::time::Duration;

use crate::jwt::{Checks, ClaimFormat, Key, KeyError, Verifier};

/// The token flags; see the module docs.
#[derive(Clone, Debug, clap::Args)]
pub struct JwtFlags {
    /// HMAC secret that tokens are signed with (HS256, HS384, HS512). Setting a key turns
    /// token checking on.
    #[arg(
        long,
        env = "SSE_JWT_SECRET",
        hide_env_values = true,
        conflicts_with_all = ["jwt_secret_file", "jwt_public_key"]
    )]
    pub jwt_secret: Option<String>,

    /// File holding the HMAC secret (a trailing line break is ignored).
    #[arg(long, env = "SSE_JWT_SECRET_FILE", conflicts_with = "jwt_public_key")]
    pub jwt_secret_file: Option<PathBuf>,

    /// PEM file with the public key tokens are verified with: RSA (RS256, RS384, RS512), EC
    /// (ES256, ES384) or Ed25519 (EdDSA).
    #[arg(long, env = "SSE_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,

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

impl JwtFlags {
    /// Whether a key is configured.
    pub fn has_key(&self) -> bool {
        self.jwt_secret.is_some() || self.jwt_secret_file.is_some() || self.jwt_public_key.is_some()
    }

    /// The verifier the flags describe, or `None` when no key is configured.
    ///
    /// # Errors
    /// [`KeyError`] when the key cannot be read or used.
    pub fn verifier(&self) -> Result<Option<Verifier>, KeyError> {
        let Some(key) = Key::from_flags(
            self.jwt_secret.as_deref(),
            self.jwt_secret_file.as_deref(),
            self.jwt_public_key.as_deref(),
        )?
        else {
            return Ok(None);
        };
        let checks = Checks {
            audience: self.jwt_audience.clone(),
            issuer: self.jwt_issuer.clone(),
            leeway: self.jwt_leeway,
            claim: ClaimFormat::named(&self.jwt_claim),
        };
        Verifier::new(&key, checks).map(Some)
    }
}

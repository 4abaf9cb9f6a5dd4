//! `sse-gateway token`: signs a subscriber token, for development and scripts (as Centrifugo's
//! `gentoken` does). It writes the same claim the gateway reads, so a token it prints works
//! against a gateway started with the same key.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

use sse_core::jwt::{PatternError, TopicPattern};

/// What `sse-gateway token` is asked to sign.
#[derive(Clone, Debug, clap::Args)]
pub struct TokenArgs {
    /// HMAC secret to sign with (HS256 unless --algorithm says otherwise).
    #[arg(
        long,
        env = "SSE_JWT_SECRET",
        hide_env_values = true,
        required_unless_present = "private_key",
        conflicts_with = "private_key"
    )]
    pub jwt_secret: Option<String>,

    /// PEM private key to sign with: RSA (RS256), EC P-256 (ES256) or Ed25519 (EdDSA).
    #[arg(long)]
    pub private_key: Option<PathBuf>,

    /// A topic or pattern the token may read (`orders.*`, `orders.**`); repeatable.
    #[arg(long)]
    pub subscribe: Vec<String>,

    /// A topic or pattern the token may publish to; repeatable.
    #[arg(long)]
    pub publish: Vec<String>,

    /// The token's subject (`sub`), e.g. a user id.
    #[arg(long)]
    pub sub: Option<String>,

    /// How long the token is valid.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,

    /// The claim holding the topics (`mercure` writes Mercure's claim).
    #[arg(long, default_value = "sse")]
    pub claim: String,

    /// The token's audience (`aud`).
    #[arg(long)]
    pub audience: Option<String>,

    /// The token's issuer (`iss`).
    #[arg(long)]
    pub issuer: Option<String>,

    /// The signing algorithm, when not the key's default (HS384, HS512, RS384, RS512, ES384).
    #[arg(long, value_parser = parse_algorithm)]
    pub algorithm: Option<Algorithm>,
}

/// Why no token could be made.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// A `--subscribe` or `--publish` value breaks the pattern grammar.
    #[error("invalid --subscribe or --publish value")]
    Pattern(#[source] PatternError),
    /// The private key file cannot be read.
    #[error("cannot read the private key {path}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The private key is no RSA, EC or Ed25519 PEM private key.
    #[error("the private key is not a PEM RSA, EC or Ed25519 private key")]
    NotAPrivateKey,
    /// Signing failed (an algorithm that does not fit the key, such as ES384 with P-256).
    #[error("cannot sign the token")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

/// Signs the token `args` describe.
///
/// # Errors
/// [`IssueError`] naming what is wrong.
pub fn issue(args: &TokenArgs) -> Result<String, IssueError> {
    for entry in args.subscribe.iter().chain(&args.publish) {
        if args.claim != "mercure" || entry != "*" {
            TopicPattern::parse(entry).map_err(IssueError::Pattern)?;
        }
    }
    let (key, default) = match (&args.jwt_secret, &args.private_key) {
        (Some(secret), _) => (
            EncodingKey::from_secret(secret.as_bytes()),
            Algorithm::HS256,
        ),
        (None, Some(path)) => private_key(path)?,
        (None, None) => return Err(IssueError::NotAPrivateKey),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut claims = Map::new();
    claims.insert("iat".into(), json!(now.as_secs()));
    claims.insert("exp".into(), json!((now + args.ttl).as_secs()));
    if let Some(sub) = &args.sub {
        claims.insert("sub".into(), json!(sub));
    }
    if let Some(audience) = &args.audience {
        claims.insert("aud".into(), json!(audience));
    }
    if let Some(issuer) = &args.issuer {
        claims.insert("iss".into(), json!(issuer));
    }
    claims.insert(
        args.claim.clone(),
        json!({"subscribe": args.subscribe, "publish": args.publish}),
    );
    let header = Header::new(args.algorithm.unwrap_or(default));
    jsonwebtoken::encode(&header, &Value::Object(claims), &key).map_err(IssueError::Sign)
}

/// The key in `path` and the algorithm it signs with by default.
fn private_key(path: &PathBuf) -> Result<(EncodingKey, Algorithm), IssueError> {
    let pem = std::fs::read(path).map_err(|source| IssueError::KeyFile {
        path: path.clone(),
        source,
    })?;
    EncodingKey::from_rsa_pem(&pem)
        .map(|key| (key, Algorithm::RS256))
        .or_else(|_| EncodingKey::from_ec_pem(&pem).map(|key| (key, Algorithm::ES256)))
        .or_else(|_| EncodingKey::from_ed_pem(&pem).map(|key| (key, Algorithm::EdDSA)))
        .map_err(|_| IssueError::NotAPrivateKey)
}

fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    name.parse()
        .map_err(|_| format!("unknown algorithm {name:?}; use HS256, RS256, ES256, EdDSA, …"))
}

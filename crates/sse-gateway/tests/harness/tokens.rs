//! Tokens and keys for the auth tests: HS256 tokens signed with [`SECRET`], key pairs made
//! by `openssl` (part of every Debian base system) in a directory the test owns, and claims
//! that allow reading some topics.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The HMAC secret of the HS256 tests.
pub(crate) const SECRET: &str = "a-test-secret-of-reasonable-length";

/// Seconds since 1970.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// An HS256 token with `claims`.
pub(crate) fn hs256(claims: &Value) -> String {
    sign(
        claims,
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
}

/// A token with `claims`, signed by `key` with `algorithm`.
pub(crate) fn sign(claims: &Value, algorithm: Algorithm, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&Header::new(algorithm), claims, key).expect("sign a test token")
}

/// A token with `claims`, naming `kid` in its header.
pub(crate) fn sign_with_kid(
    claims: &Value,
    algorithm: Algorithm,
    key: &EncodingKey,
    kid: &str,
) -> String {
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).expect("sign a test token")
}

/// Claims valid for an hour that may read `subscribe`.
pub(crate) fn reading(subscribe: &[&str]) -> Value {
    json!({"exp": now() + 3600, "sub": "alice", "sse": {"subscribe": subscribe}})
}

/// `Bearer <token>`.
pub(crate) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Runs `openssl args` in `dir`.
pub(crate) fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (apt-get install -y openssl)");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A key pair made in `dir` as `<name>.pem` (private) and `<name>.pub.pem` (public), for
/// `algorithm` (RS256: RSA 2048; ES256: P-256; EdDSA: Ed25519); returns the private key's
/// path.
pub(crate) fn key_pair(dir: &Path, name: &str, algorithm: Algorithm) -> PathBuf {
    let private = format!("{name}.pem");
    let generate: &[&str] = match algorithm {
        Algorithm::RS256 => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        Algorithm::ES256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        Algorithm::EdDSA => &["-algorithm", "ED25519"],
        other => panic!("no key pair for {other:?}"),
    };
    let mut args = vec!["genpkey"];
    args.extend_from_slice(generate);
    args.extend_from_slice(&["-out", &private]);
    openssl(dir, &args);
    let public = format!("{name}.pub.pem");
    openssl(dir, &["pkey", "-in", &private, "-pubout", "-out", &public]);
    dir.join(private)
}

/// The private key at `path` as a signing key for `algorithm`.
pub(crate) fn signing_key(path: &Path, algorithm: Algorithm) -> EncodingKey {
    let pem = std::fs::read(path).expect("the private key");
    match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        _ => EncodingKey::from_ed_pem(&pem),
    }
    .expect("a private key")
}

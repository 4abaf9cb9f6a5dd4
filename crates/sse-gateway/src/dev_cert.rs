//! `sse-gateway tls-cert`: writes a self-signed certificate and its key, for nginx's TLS server
//! in local setups (`docker-compose.yml`, `deploy/local/run.sh`), so that browsers speak HTTP/2
//! to it and are not held to six event streams per origin. Made here rather than with
//! `openssl`, which the slim runtime image does not have.
//!
//! Browsers do not trust such a certificate: trust it (the file is the certificate itself, no CA)
//! or accept the warning. For anything but local use, give nginx a real certificate.

use std::io::Write;
use std::path::{Path, PathBuf};

/// What `sse-gateway tls-cert` is asked to write.
#[derive(Clone, Debug, clap::Args)]
pub struct CertArgs {
    /// The directory to write `server.crt` and `server.key` to (created if missing). Files
    /// already there are kept, so a restart does not replace a certificate a browser trusts.
    #[arg(long)]
    pub out: PathBuf,

    /// A host name or address the certificate is for, besides `localhost` and `127.0.0.1`;
    /// repeatable.
    #[arg(long)]
    pub host: Vec<String>,
}

/// Why `sse-gateway tls-cert` failed.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The certificate could not be made (a host name it cannot hold).
    #[error("cannot make the certificate")]
    Generate(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What `tls-cert` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// A new certificate and key.
    New,
    /// Both files existed: left as they were.
    Kept,
}

/// Writes the certificate and key `args` ask for, unless both exist.
///
/// # Errors
/// [`CertError`] naming what could not be made or written.
pub fn write_cert(args: &CertArgs) -> Result<Written, CertError> {
    let (cert_path, key_path) = (args.out.join("server.crt"), args.out.join("server.key"));
    if cert_path.exists() && key_path.exists() {
        return Ok(Written::Kept);
    }
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    names.extend(args.host.iter().cloned());
    let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(names)?;
    std::fs::create_dir_all(&args.out).map_err(|source| CertError::Write {
        path: args.out.clone(),
        source,
    })?;
    write(&key_path, signing_key.serialize_pem().as_bytes(), 0o600)?;
    write(&cert_path, cert.pem().as_bytes(), 0o644)?;
    Ok(Written::New)
}

fn write(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |source| CertError::Write {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(failed)?;
    file.write_all(contents).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_certificate_and_key_once() {
        let dir = tempfile::tempdir().unwrap();
        let args = CertArgs {
            out: dir.path().join("tls"),
            host: vec!["sse.test".to_owned()],
        };
        assert_eq!(write_cert(&args).unwrap(), Written::New);
        let cert = std::fs::read_to_string(args.out.join("server.crt")).unwrap();
        let key = std::fs::read_to_string(args.out.join("server.key")).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
        assert_eq!(write_cert(&args).unwrap(), Written::Kept);
        assert_eq!(
            std::fs::read_to_string(args.out.join("server.crt")).unwrap(),
            cert,
            "kept"
        );
    }
}

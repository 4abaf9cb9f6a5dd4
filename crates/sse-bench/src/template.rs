//! Templates: the one place `{topic}` and `{data}` are filled in.
//!
//! The driver speaks to servers it does not know (our gateway and publisher, Nchan), so every
//! URL and the publish body are templates. A [`Template`] is split once at start-up, so filling
//! it in per request is a few copies. An [`Endpoint`] is a URL template taken apart into what a
//! connection needs: the socket address (resolved once, so no DNS per connection), the `Host`
//! header, and the request path template. Only plain `http://` is supported: a load driver on
//! loopback has no use for TLS, and its cost would be measured instead of the server's.

use std::net::{SocketAddr, ToSocketAddrs};

use http::uri::PathAndQuery;

/// A text with `{topic}` and `{data}` placeholders; every other character is literal.
#[derive(Clone, Debug)]
pub(crate) struct Template {
    pieces: Vec<Piece>,
}

#[derive(Clone, Debug)]
enum Piece {
    Text(String),
    Topic,
    Data,
}

impl Template {
    /// Splits `text` at its placeholders.
    pub(crate) fn new(text: &str) -> Self {
        let mut pieces = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let next = [("{topic}", Piece::Topic), ("{data}", Piece::Data)]
                .into_iter()
                .filter_map(|(name, piece)| rest.find(name).map(|at| (at, name.len(), piece)))
                .min_by_key(|(at, _, _)| *at);
            let Some((at, len, piece)) = next else {
                pieces.push(Piece::Text(rest.to_owned()));
                break;
            };
            if at > 0 {
                pieces.push(Piece::Text(rest[..at].to_owned()));
            }
            pieces.push(piece);
            rest = &rest[at + len..];
        }
        Self { pieces }
    }

    /// The text with `topic` and `data` put in.
    pub(crate) fn render(&self, topic: &str, data: &str) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            out.push_str(match piece {
                Piece::Text(text) => text,
                Piece::Topic => topic,
                Piece::Data => data,
            });
        }
        out
    }
}

/// Where requests for one URL template go.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    /// The URL template as given, for the report.
    pub(crate) url: String,
    /// The server's address, resolved once.
    pub(crate) addr: SocketAddr,
    /// The `Host` header: the URL's authority as written.
    pub(crate) host: String,
    /// Path and query, with placeholders.
    path: Template,
}

/// Why a URL template cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TemplateError {
    /// Not `http://host[:port][/path]`.
    #[error("url {0:?} is not http://host[:port][/path] (https is not supported)")]
    NotHttp(String),
    /// `{topic}` or `{data}` in the host: connections are resolved once, per URL.
    #[error("url {0:?} has a placeholder in its host; only the path may have one")]
    PlaceholderInHost(String),
    /// The host does not resolve.
    #[error("cannot resolve the host of {url:?}")]
    Resolve {
        /// The URL as given.
        url: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The path, filled in, is not a valid request target.
    #[error("url {0:?} does not give a valid path and query once filled in")]
    InvalidPath(String),
}

impl Endpoint {
    /// Parses and resolves `url`, e.g. `http://127.0.0.1:8080/events?topic={topic}`.
    ///
    /// # Errors
    /// [`TemplateError`] naming what is wrong with `url`.
    pub(crate) fn parse(url: &str) -> Result<Self, TemplateError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| TemplateError::NotHttp(url.to_owned()))?;
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (host, path) = rest.split_at(split);
        if host.is_empty() || host.contains('@') {
            return Err(TemplateError::NotHttp(url.to_owned()));
        }
        if host.contains('{') {
            return Err(TemplateError::PlaceholderInHost(url.to_owned()));
        }
        let path = match path {
            "" => "/".to_owned(),
            query if query.starts_with('?') => format!("/{query}"),
            path => path.to_owned(),
        };
        let with_port = if host
            .rsplit_once(':')
            .is_some_and(|(_, port)| !port.contains(']'))
        {
            host.to_owned()
        } else {
            format!("{host}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .and_then(|mut addrs| {
                addrs
                    .next()
                    .ok_or_else(|| std::io::Error::other("no address"))
            })
            .map_err(|source| TemplateError::Resolve {
                url: url.to_owned(),
                source,
            })?;
        let path = Template::new(&path);
        if path
            .render("topic", "data")
            .parse::<PathAndQuery>()
            .is_err()
        {
            return Err(TemplateError::InvalidPath(url.to_owned()));
        }
        Ok(Self {
            url: url.to_owned(),
            addr,
            host: host.to_owned(),
            path,
        })
    }

    /// The request target for `topic`.
    pub(crate) fn path(&self, topic: &str) -> String {
        self.path.render(topic, "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_and_braces_kept() {
        let body = Template::new(r#"{"topic":"{topic}","data":"{data}"}"#);
        assert_eq!(
            body.render("t1", "0 1 x"),
            r#"{"topic":"t1","data":"0 1 x"}"#
        );
        assert_eq!(Template::new("{data}").render("t", "raw"), "raw");
        assert_eq!(Template::new("").render("t", "d"), "");
    }

    #[test]
    fn urls_split_into_address_host_and_path() {
        let url = Endpoint::parse("http://127.0.0.1:8080/events?topic={topic}").unwrap();
        assert_eq!(url.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(url.host, "127.0.0.1:8080");
        assert_eq!(url.path("a"), "/events?topic=a");
        let nchan = Endpoint::parse("http://127.0.0.1:9000/sub/{topic}").unwrap();
        assert_eq!(nchan.path("b"), "/sub/b");
        assert_eq!(Endpoint::parse("http://127.0.0.1").unwrap().path("x"), "/");
        assert_eq!(Endpoint::parse("http://127.0.0.1").unwrap().addr.port(), 80);
    }

    #[test]
    fn unusable_urls_are_refused() {
        for url in [
            "https://127.0.0.1/",
            "127.0.0.1:80/",
            "http:///x",
            "http://{topic}:80/",
            "http://127.0.0.1/a b",
        ] {
            assert!(Endpoint::parse(url).is_err(), "{url}");
        }
    }
}

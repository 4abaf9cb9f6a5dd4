//! Where a subscriber's token comes from, in this order: the `Authorization: Bearer` header
//! (any client that can set headers), a cookie (`--jwt-cookie`: browsers on the same site),
//! then the `access_token` query parameter (a cross-site `EventSource`, which cannot set
//! headers; `--jwt-query off` turns it off). The first one present is the token: a bad
//! header token is not rescued by a good cookie.

use std::borrow::Cow;

use http::{HeaderMap, HeaderValue, header};

use super::forward::Credentials;

/// The query parameter that may carry a token.
pub(crate) const QUERY_PARAMETER: &str = "access_token";

/// Where the gateway looks for a token.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sources {
    /// The cookie holding the token, if any (`--jwt-cookie`).
    pub(crate) cookie: Option<String>,
    /// Whether `access_token` in the query is read (`--jwt-query`).
    pub(crate) query: bool,
}

impl Sources {
    /// The request's token, if it carries one where this gateway looks.
    pub(crate) fn find<'a>(&self, headers: &'a HeaderMap, query: &'a str) -> Option<Cow<'a, str>> {
        if let Some(token) = bearer(headers) {
            return Some(Cow::Borrowed(token));
        }
        if let Some(token) = self
            .cookie
            .as_deref()
            .and_then(|name| cookie(headers, name))
        {
            return Some(Cow::Borrowed(token));
        }
        self.query_token(query)
    }

    /// The `access_token` of `query`, when it is read.
    fn query_token<'a>(&self, query: &'a str) -> Option<Cow<'a, str>> {
        if !self.query {
            return None;
        }
        form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == QUERY_PARAMETER)
            .map(|(_, value)| value)
            .filter(|value| !value.is_empty())
    }

    /// What forward auth passes on: every `Cookie` header, joined, and `Authorization`
    /// (or, without one, the query token as `Bearer`).
    pub(crate) fn forwarded(&self, headers: &HeaderMap, query: &str) -> Credentials {
        let cookies: Vec<&[u8]> = headers
            .get_all(header::COOKIE)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        let cookie = (!cookies.is_empty())
            .then(|| HeaderValue::from_bytes(&cookies.join(&b"; "[..])).ok())
            .flatten();
        let authorization = headers.get(header::AUTHORIZATION).cloned().or_else(|| {
            self.query_token(query)
                .and_then(|token| HeaderValue::try_from(format!("Bearer {token}")).ok())
        });
        Credentials {
            cookie,
            authorization,
        }
    }

    /// How a client can send a token here, for the message of a 401.
    pub(crate) fn describe(&self) -> String {
        let mut ways = vec!["the header Authorization: Bearer <token>".to_owned()];
        if let Some(cookie) = &self.cookie {
            ways.push(format!("the cookie {cookie}"));
        }
        if self.query {
            ways.push(format!("the query parameter {QUERY_PARAMETER}=<token>"));
        }
        ways.join(", or ")
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim())
                .filter(|token| !token.is_empty())
        })
}

/// The value of the cookie `name`, from any `Cookie` header.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name)
                .then(|| value.trim_matches('"'))
                .filter(|value| !value.is_empty())
        })
}

#[cfg(test)]
mod tests {
    use super::Sources;
    use http::{HeaderMap, HeaderValue};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn the_header_comes_first_then_the_cookie_then_the_query() {
        let sources = Sources {
            cookie: Some("sse_token".into()),
            query: true,
        };
        let all = headers(&[
            ("authorization", "bearer from-header"),
            ("cookie", "other=1; sse_token=from-cookie"),
        ]);
        let query = "topic=a&access_token=from-query";
        assert_eq!(sources.find(&all, query).as_deref(), Some("from-header"));
        let cookie_only = headers(&[("cookie", "other=1; sse_token=from-cookie")]);
        assert_eq!(
            sources.find(&cookie_only, query).as_deref(),
            Some("from-cookie")
        );
        assert_eq!(
            sources.find(&HeaderMap::new(), query).as_deref(),
            Some("from-query")
        );
        assert_eq!(sources.find(&HeaderMap::new(), "topic=a"), None);
    }

    #[test]
    fn the_query_is_read_only_when_allowed_and_other_schemes_are_not_tokens() {
        let sources = Sources::default();
        assert_eq!(sources.find(&HeaderMap::new(), "access_token=x"), None);
        let basic = headers(&[("authorization", "Basic dXNlcjpwdw==")]);
        assert_eq!(sources.find(&basic, ""), None);
        let empty = headers(&[("authorization", "Bearer ")]);
        assert_eq!(sources.find(&empty, ""), None);
    }
}

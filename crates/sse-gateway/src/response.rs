//! The one response body type every route returns, and plain-text responses.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{Either, Full};

use crate::body::SseBody;
use crate::takeover::TakeoverBody;

/// Every response body: a small fixed one, or an event stream (served by hyper, or a stand-in
/// while the stream leaves hyper: see [`crate::takeover`]).
pub(crate) type Body = Either<Full<Bytes>, Either<SseBody, TakeoverBody>>;

/// A plain-text response.
pub(crate) fn text(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Either::Left(Full::new(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

//! [`AppServer`]: a small HTTP server whose answer the test sets, and changes while it runs:
//! the JWKS endpoint of an identity provider that rotates its keys, the forward-auth
//! endpoint of an application that allows, refuses, stalls or answers garbage. It records
//! every request it got, so a test can say what the service under test sent and how often.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::{ServerThread, Shutdown};

/// What the server answers every request with.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// Headers besides `Content-Length`.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
    /// How long to wait before answering.
    pub delay: Duration,
}

impl Answer {
    /// `status` with an empty body.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    /// `200` with `body` as `application/json`.
    pub fn json(body: impl ToString) -> Self {
        Self::status(200)
            .header("content-type", "application/json")
            .body(body)
    }

    /// With the header `name: value` too.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// With `body`.
    #[must_use]
    pub fn body(mut self, body: impl ToString) -> Self {
        self.body = body.to_string();
        self
    }

    /// Answering only after `delay`.
    #[must_use]
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// A request the server got.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Its path and query.
    pub uri: String,
    /// Its headers.
    pub headers: HeaderMap,
}

#[derive(Debug)]
struct State {
    answer: Answer,
    seen: Vec<Seen>,
}

/// See the module docs. Stops when dropped.
pub struct AppServer {
    node: ServerThread<()>,
    state: Arc<Mutex<State>>,
}

impl AppServer {
    /// A server on `127.0.0.1:0` answering `answer`.
    pub fn start(answer: Answer) -> Self {
        let state = Arc::new(Mutex::new(State {
            answer,
            seen: Vec::new(),
        }));
        let shared = state.clone();
        let node = ServerThread::start("app-server", move |listener, shutdown| {
            serve(listener, shared, shutdown)
        });
        Self { node, state }
    }

    /// `http://127.0.0.1:PORT<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.node.addr())
    }

    /// Answers `answer` from now on.
    pub fn answer(&self, answer: Answer) {
        self.lock().answer = answer;
    }

    /// Every request so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    /// How many requests it got.
    pub fn calls(&self) -> usize {
        self.lock().seen.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn serve(listener: tokio::net::TcpListener, state: Arc<Mutex<State>>, shutdown: Shutdown) {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(respond(&state, &request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn respond(state: &Mutex<State>, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let answer = {
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        state.seen.push(Seen {
            uri: request.uri().to_string(),
            headers: request.headers().clone(),
        });
        state.answer.clone()
    };
    tokio::time::sleep(answer.delay).await;
    let mut response = Response::new(Full::new(Bytes::from(answer.body)));
    *response.status_mut() =
        StatusCode::from_u16(answer.status).expect("the test sets a valid status code");
    for (name, value) in &answer.headers {
        response.headers_mut().insert(
            http::HeaderName::try_from(name.as_str()).expect("the test sets a valid header name"),
            http::HeaderValue::try_from(value.as_str()).expect("the test sets a valid value"),
        );
    }
    response
}

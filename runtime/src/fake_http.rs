//! An HTTP server on loopback for tests: it records every request (method, path, query, auth
//! header, User-Agent, body) and answers as the test says, so a fake of a provider's API is a
//! closure written from its documentation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// One request a fake saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub authorization: Option<String>,
    pub user_agent: String,
    pub body: String,
}

pub type Reply = Box<dyn Fn(&Seen) -> (u16, Vec<(&'static str, String)>, String) + Send>;

/// An HTTP server on loopback that records every request and answers with `reply`.
#[derive(Clone)]
pub struct Fake {
    pub address: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub reply: Arc<Mutex<Reply>>,
}

impl Fake {
    pub async fn start(reply: Reply) -> Fake {
        Fake::start_on("127.0.0.1:0", reply).await
    }

    pub async fn start_on(address: &str, reply: Reply) -> Fake {
        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        let fake =
            Fake { address: listener.local_addr().unwrap(), seen: Arc::default(), reply: Arc::new(Mutex::new(reply)) };
        let app = axum::Router::new().fallback(record).with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn url_v6(&self) -> String {
        format!("http://[::1]:{}", self.address.port())
    }

    pub fn answer(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut self.seen.lock().unwrap())
    }
}

async fn record(AxumState(fake): AxumState<Fake>, request: Request) -> Response {
    let (authorization, user_agent) = {
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        (header("authorization"), header("user-agent").unwrap_or_default())
    };
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let query = request
        .uri()
        .query()
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let body = axum::body::to_bytes(request.into_body(), 1 << 20).await.unwrap();
    let seen =
        Seen { method, path, query, authorization, user_agent, body: String::from_utf8_lossy(&body).into_owned() };
    let (status, headers, text) = (fake.reply.lock().unwrap())(&seen);
    fake.seen.lock().unwrap().push(seen);
    let mut response = (StatusCode::from_u16(status).unwrap(), Body::from(text)).into_response();
    for (name, value) in headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

pub fn text(status: u16, body: &str) -> Reply {
    let body = body.to_owned();
    Box::new(move |_| (status, Vec::new(), body.clone()))
}

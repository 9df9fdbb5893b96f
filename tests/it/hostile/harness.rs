//! A hostile Esper for the acceptance tests: a small axum server on 127.0.0.1:0 in front of
//! the real mock. Every request is recorded; a rule picks the ones to answer itself (a
//! malformed page, a redirect, an echo of the key, a huge or slow body) and the rest are
//! forwarded to the mock, with its absolute links rewritten to point back here.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use esper_bulk::esper::ApiKey;
use esper_bulk::mock::MockServer;
use esper_bulk::run::{ConnectionSettings, RunConfig, Source};
use tokio::task::JoinHandle;

use crate::support::{load, test_pacing};

/// One request as the hostile server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// The path, `/api` prefix included.
    pub path: String,
    pub query: String,
    /// The `Authorization` header as sent, so a rule can echo it.
    pub auth: String,
    /// The request body as text (lossy).
    pub body: String,
}

impl Seen {
    pub fn is(&self, method: &str, path_ends_with: &str) -> bool {
        self.method == method && self.path.ends_with(path_ends_with)
    }
}

/// What to do with a request.
pub enum Action {
    /// Pass it to the mock and relay its answer.
    Forward,
    /// Answer with this; the mock never sees the request.
    Reply(Response),
    /// Pass it to the mock (so a write commits), then answer with this instead.
    ForwardThen(Response),
}

type Rule = dyn Fn(&Seen) -> Action + Send + Sync;

struct Inner {
    mock_origin: String,
    origin: String,
    rule: Mutex<Arc<Rule>>,
    seen: Mutex<Vec<Seen>>,
    http: reqwest::Client,
}

/// A running hostile server and the mock behind it.
pub struct Hostile {
    pub mock: MockServer,
    addr: SocketAddr,
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hostile {
    /// Starts in front of `mock`, forwarding everything until [`Hostile::set_rule`].
    pub async fn start(mock: MockServer) -> Hostile {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner {
            mock_origin: format!("http://{}", mock.addr()),
            origin: format!("http://{addr}"),
            rule: Mutex::new(Arc::new(|_: &Seen| Action::Forward)),
            seen: Mutex::new(Vec::new()),
            http: reqwest::Client::new(),
        });
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Hostile {
            mock,
            addr,
            inner,
            task,
        }
    }

    /// Decides what happens to requests arriving from now on.
    pub fn set_rule(&self, rule: impl Fn(&Seen) -> Action + Send + Sync + 'static) {
        *self.inner.rule.lock().unwrap() = Arc::new(rule);
    }

    /// Forgets the requests seen so far.
    pub fn clear(&self) {
        self.inner.seen.lock().unwrap().clear();
    }

    /// `http://127.0.0.1:PORT/api`.
    pub fn base_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.inner.seen.lock().unwrap().clone()
    }

    /// How many requests were `method` to a path ending in `path_ends_with`.
    pub fn count(&self, method: &str, path_ends_with: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.is(method, path_ends_with))
            .count()
    }

    /// A library run of `yaml` against this server (not the mock), with test pacing.
    pub fn run_config(&self, yaml: &str, state: &Path) -> RunConfig {
        let connection = ConnectionSettings::direct(
            &self.base_url(),
            self.mock.enterprise_id(),
            ApiKey::new(self.mock.api_key()),
        );
        let mut cfg = RunConfig::new(
            Source::Job(Box::new(load(&self.mock, yaml))),
            connection,
            state.to_path_buf(),
        );
        cfg.pacing = test_pacing();
        cfg.connection.client.timeout = std::time::Duration::from_secs(5);
        cfg
    }

    /// The binary, pointed at this server through the environment.
    pub fn bin(&self) -> std::process::Command {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_esper-bulk"));
        c.env("ESPER_BASE_URL", self.base_url())
            .env("ESPER_ENTERPRISE_ID", self.mock.enterprise_id())
            .env("ESPER_API_KEY", self.mock.api_key())
            .env_remove("ESPER_TENANT")
            .env_remove("ESPER_BULK_LOG");
        c
    }
}

/// A JSON answer.
pub fn json(status: u16, body: &serde_json::Value) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A redirect to `location`.
pub fn redirect(status: u16, location: &str) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_str(location).unwrap());
    r
}

async fn handle(State(h): State<Arc<Inner>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 16 << 20)
        .await
        .unwrap_or_default();
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        auth: parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    h.seen.lock().unwrap().push(seen.clone());
    let rule = h.rule.lock().unwrap().clone();
    let instead = match rule(&seen) {
        Action::Reply(r) => return r,
        Action::Forward => None,
        Action::ForwardThen(r) => Some(r),
    };
    let target = format!(
        "{}{}",
        h.mock_origin,
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).unwrap();
    let mut out = h.http.request(method, target).body(body.to_vec());
    for name in ["authorization", "content-type", "accept"] {
        if let Some(v) = parts.headers.get(name) {
            out = out.header(name, v.as_bytes());
        }
    }
    let answer = match out.send().await {
        Ok(a) => a,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    if let Some(r) = instead {
        return r;
    }
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    let content_type = answer
        .headers()
        .get("content-type")
        .map(|v| v.as_bytes().to_vec());
    let bytes = answer.bytes().await.unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).replace(&h.mock_origin, &h.origin);
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    if let Some(ct) = content_type {
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_bytes(&ct).unwrap());
    }
    r
}

//! The mock's request pipeline and server lifecycle. For every request, in this order:
//! record the arrival (peak window, in-flight) → match the route → auth → rate limit →
//! random 5xx → read the body → handler → commit-then-fail → drop → latency → answer.
//! All randomness comes from one seeded RNG behind the state mutex, so a run is
//! deterministic for a given request order. Resource logic is left to `api`, counters to
//! `stats`, bucket maths to `limits`, killing connections to `listener`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, FromRequest, Multipart, Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::api::{self, BodyKind, Input, Part};
use super::http::{Ctx, Reply, error, parse_query};
use super::inventory::{Inventory, STREAM_RUNTIME, clamp_fraction, mix};
use super::limits::RateGate;
use super::listener::{ConnHandle, KillableListener};
use super::routes::{self, Family, Matched};
use super::stats::{Ending, Recorder, RequestRecord, Stats};
use super::{CommandBehaviour, Faults, MockConfig, lock_ignoring_poison};

/// Bodies above this are refused; the mock's fake APKs and JSON bodies are tiny.
const MAX_BODY: usize = 2 * 1024 * 1024;
/// Multipart fields beyond this are refused, bounding the read loop.
const MAX_PARTS: usize = 64;

/// What every request task shares.
pub(crate) struct Shared {
    state: Mutex<State>,
    pub api_key: String,
    pub enterprise_id: String,
    local: SocketAddr,
    seed: u64,
    commands: CommandBehaviour,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        lock_ignoring_poison(&self.state)
    }
}

/// Mutable state; the lock is never held across an `.await`.
pub(crate) struct State {
    /// The single source of randomness after start-up: fault draws and new ids.
    rng: fastrand::Rng,
    faults: Faults,
    gate: Option<RateGate>,
    start: Instant,
    recorder: Recorder,
    pub inv: Inventory,
}

impl State {
    pub fn stats(&self) -> Stats {
        let mut s = self.recorder.stats.clone();
        s.duplicates = self.inv.duplicates();
        s.created = self.inv.created.clone();
        s
    }

    pub fn records(&self) -> Vec<RequestRecord> {
        self.recorder.records()
    }

    /// New faults start with a full bucket and no penalty.
    pub fn set_faults(&mut self, faults: Faults) {
        self.gate = faults
            .rate_limit
            .clone()
            .map(|rl| RateGate::new(rl, Instant::now()));
        self.faults = faults;
    }

    fn chance(&mut self, rate: f64) -> bool {
        let p = clamp_fraction(rate);
        p > 0.0 && self.rng.f64() < p
    }

    fn draw_latency(&mut self) -> Duration {
        let base = self.faults.latency;
        let jitter = u64::try_from(self.faults.latency_jitter.as_nanos()).unwrap_or(u64::MAX);
        if jitter == 0 {
            return base;
        }
        base.saturating_add(Duration::from_nanos(self.rng.u64(..jitter)))
    }
}

type Started = (
    Arc<Shared>,
    SocketAddr,
    oneshot::Sender<()>,
    JoinHandle<std::io::Result<()>>,
);

/// Binds 127.0.0.1 and spawns the server task.
pub(crate) async fn start(cfg: MockConfig) -> std::io::Result<Started> {
    let listener = TcpListener::bind(("127.0.0.1", cfg.port)).await?;
    let local = listener.local_addr()?;
    let inv = Inventory::generate(&cfg);
    let mut state = State {
        rng: fastrand::Rng::with_seed(mix(cfg.seed, STREAM_RUNTIME)),
        faults: Faults::default(),
        gate: None,
        start: Instant::now(),
        recorder: Recorder::default(),
        inv,
    };
    state.set_faults(cfg.faults.clone());
    let shared = Arc::new(Shared {
        state: Mutex::new(state),
        api_key: cfg.api_key.clone(),
        enterprise_id: cfg.enterprise_id.clone(),
        local,
        seed: cfg.seed,
        commands: cfg.commands.clone(),
    });
    let app = Router::new().fallback(entry).with_state(shared.clone());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let serve = axum::serve(
        KillableListener::new(listener),
        app.into_make_service_with_connect_info::<ConnHandle>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop_rx.await;
    });
    let task = tokio::spawn(async move { serve.await });
    Ok((shared, local, stop_tx, task))
}

/// How a request ends.
enum Outcome {
    Answer(u16, Response),
    /// Close the connection without answering; the status is what would have been sent.
    Drop(u16),
}

/// Records the request's end exactly once, even if the client hangs up and the handler
/// future is dropped mid-way.
struct Guard {
    shared: Arc<Shared>,
    record: Option<RequestRecord>,
}

impl Guard {
    fn finish(mut self, ending: Ending) {
        if let Some(r) = self.record.take() {
            self.shared.lock().recorder.finish(r, ending);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(r) = self.record.take() {
            self.shared.lock().recorder.finish(r, Ending::ClientGone);
        }
    }
}

async fn entry(
    AxState(shared): AxState<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    req: Request,
) -> Response {
    let path = req.uri().path().to_string();
    if path == "/__stats" || path == "/api/__stats" {
        return stats_response(&shared, req.method());
    }
    let method = req.method().clone();
    let query = req.uri().query().unwrap_or("").to_string();
    let matched = routes::resolve(&path);
    let route = match &matched {
        Some(m) => format!("{method} {}", m.template),
        None => format!("{method} (unknown)"),
    };
    let now = Instant::now();
    let (latency, guard) = {
        let mut st = shared.lock();
        st.recorder.arrive(now);
        let record = RequestRecord {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            route,
            status: 0,
            dropped: false,
            elapsed: now.saturating_duration_since(st.start),
        };
        let guard = Guard {
            shared: shared.clone(),
            record: Some(record),
        };
        (st.draw_latency(), guard)
    };
    let outcome = process(&shared, matched, &method, &path, &query, req).await;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match outcome {
        Outcome::Answer(status, response) => {
            guard.finish(Ending::Answered(status));
            response
        }
        Outcome::Drop(status) => {
            // The response below is never written: the kill makes hyper's first write fail.
            conn.kill();
            guard.finish(Ending::Dropped(status));
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn process(
    shared: &Shared,
    matched: Option<Matched>,
    method: &Method,
    path: &str,
    query: &str,
    req: Request,
) -> Outcome {
    let Some(m) = matched else {
        let family = routes::family_of_path(path);
        return answer(
            error(family, 404, "Not found.", vec!["Not found.".into()]),
            None,
        );
    };
    let family = m.route.family();
    if let Err(msg) = check_auth(req.headers(), &shared.api_key) {
        let mut r = answer(error(family, 401, msg, vec![msg.into()]), None);
        if let Outcome::Answer(_, resp) = &mut r {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"api\""),
            );
        }
        return r;
    }
    {
        let mut st = shared.lock();
        let now = Instant::now();
        if let Some(gate) = st.gate.as_mut()
            && let Err(secs) = gate.check(now)
        {
            let retry_after = gate.sends_retry_after().then_some(secs);
            return rate_limited(family, retry_after);
        }
        let error_rate = st.faults.error_rate;
        if st.chance(error_rate) {
            st.recorder.stats.injected.errors += 1;
            let code = [500u16, 502, 503][st.rng.usize(..3)];
            return injected_error(family, code);
        }
    }
    if !m.allowed.contains(method) {
        let mut r = answer(
            error(
                family,
                405,
                &format!("Method \"{method}\" not allowed."),
                vec![format!("Method \"{method}\" not allowed.")],
            ),
            None,
        );
        if let Outcome::Answer(_, resp) = &mut r {
            let allow: Vec<&str> = m.allowed.iter().map(Method::as_str).collect();
            if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
                resp.headers_mut().insert(header::ALLOW, v);
            }
        }
        return r;
    }
    let origin = origin(req.headers(), shared.local);
    let input = match read_input(api::body_kind(&m.route, method), family, req).await {
        Ok(i) => i,
        Err(reply) => return answer(reply, None),
    };
    let mut st = shared.lock();
    let st = &mut *st;
    let ctx = Ctx {
        family,
        origin,
        path: path.to_string(),
        query: parse_query(query),
        enterprise_id: shared.enterprise_id.clone(),
        now: Instant::now(),
        wall: SystemTime::now(),
        seed: shared.seed,
        commands: shared.commands.clone(),
    };
    let mut reply = api::handle(&mut st.inv, &mut st.rng, &ctx, &m.route, method, input);
    if reply.created && st.chance(st.faults.commit_then_fail_rate) {
        st.recorder.stats.injected.commit_then_fail += 1;
        reply = error(
            family,
            500,
            "Internal server error",
            vec!["Internal server error".into()],
        );
    }
    if st.chance(st.faults.drop_rate) {
        st.recorder.stats.injected.drops += 1;
        return Outcome::Drop(reply.status);
    }
    answer(reply, None)
}

/// `Authorization: Bearer <key>`, with DRF's messages for each way it can be wrong.
fn check_auth(headers: &HeaderMap, key: &str) -> Result<(), &'static str> {
    const MISSING: &str = "Authentication credentials were not provided.";
    let Some(raw) = headers.get(header::AUTHORIZATION) else {
        return Err(MISSING);
    };
    let Ok(text) = raw.to_str() else {
        return Err("Invalid token header. Token string should not contain invalid characters.");
    };
    let mut words = text.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(scheme), _, _) if !scheme.eq_ignore_ascii_case("bearer") => Err(MISSING),
        (Some(_), None, _) => Err("Invalid token header. No credentials provided."),
        (Some(_), Some(_), Some(_)) => {
            Err("Invalid token header. Token string should not contain spaces.")
        }
        (Some(_), Some(token), None) if token == key => Ok(()),
        _ => Err("Invalid token."),
    }
}

/// `http://<Host>` so absolute links work however the client addressed us; a Host header
/// with unexpected characters falls back to the bound address.
fn origin(headers: &HeaderMap, local: SocketAddr) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        });
    match host {
        Some(h) => format!("http://{h}"),
        None => format!("http://{local}"),
    }
}

async fn read_input(kind: BodyKind, family: Family, req: Request) -> Result<Input, Reply> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let unsupported = || {
        let msg = format!("Unsupported media type \"{content_type}\" in request.");
        error(family, 415, &msg, vec![msg.clone()])
    };
    match kind {
        BodyKind::None => Ok(Input::None),
        BodyKind::Json => {
            if !mime.is_empty() && mime != "application/json" && !mime.ends_with("+json") {
                return Err(unsupported());
            }
            let bytes = read_body(family, req.into_body()).await?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(Input::Json(Ok(Value::Object(Default::default()))));
            }
            Ok(Input::Json(
                serde_json::from_slice(&bytes).map_err(|e| e.to_string()),
            ))
        }
        BodyKind::Multipart => {
            if mime != "multipart/form-data" {
                return Err(unsupported());
            }
            let bad = |detail: String, status: u16| {
                let msg = format!("Multipart form parse error - {detail}");
                error(family, status, &msg, vec![msg.clone()])
            };
            let mut form = Multipart::from_request(req, &())
                .await
                .map_err(|e| bad(e.body_text(), 400))?;
            let mut parts = Vec::new();
            loop {
                let field = match form.next_field().await {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => return Err(bad(e.body_text(), e.status().as_u16())),
                };
                if parts.len() >= MAX_PARTS {
                    return Err(bad(format!("more than {MAX_PARTS} fields"), 400));
                }
                let name = field.name().unwrap_or("").to_string();
                let file_name = field.file_name().map(str::to_string);
                let content_type = field.content_type().map(str::to_string);
                let data = field
                    .bytes()
                    .await
                    .map_err(|e| bad(e.body_text(), e.status().as_u16()))?;
                parts.push(Part {
                    name,
                    file_name,
                    content_type,
                    data,
                });
            }
            Ok(Input::Multipart(parts))
        }
    }
}

async fn read_body(family: Family, body: Body) -> Result<bytes::Bytes, Reply> {
    to_bytes(body, MAX_BODY).await.map_err(|_| {
        let msg = format!("Request body larger than {MAX_BODY} bytes or unreadable.");
        error(family, 413, &msg, vec![msg.clone()])
    })
}

fn answer(reply: Reply, retry_after: Option<u64>) -> Outcome {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = match reply.body {
        Some(v) => (status, axum::Json(v)).into_response(),
        None => status.into_response(),
    };
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    Outcome::Answer(reply.status, resp)
}

fn rate_limited(family: Family, retry_after: Option<u64>) -> Outcome {
    let msg = "Rate limit exceeded — Too many requests. Wait a moment and try again.";
    answer(error(family, 429, msg, vec![msg.into()]), retry_after)
}

/// 500 carries the family's JSON; 502/503 look like a load balancer's HTML page, which is
/// what clients meet in the wild.
fn injected_error(family: Family, code: u16) -> Outcome {
    let html = |title: &str| {
        format!("<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>")
    };
    let (status, title) = match code {
        502 => (StatusCode::BAD_GATEWAY, "502 Bad Gateway"),
        503 => (
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Temporarily Unavailable",
        ),
        _ => {
            return answer(
                error(
                    family,
                    500,
                    "Internal server error",
                    vec!["Internal server error".into()],
                ),
                None,
            );
        }
    };
    let resp = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html(title),
    )
        .into_response();
    Outcome::Answer(code, resp)
}

fn stats_response(shared: &Shared, method: &Method) -> Response {
    if method != Method::GET {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET")],
            axum::Json(serde_json::json!({"errors": ["Method not allowed."], "message": "Method not allowed.", "status": 405})),
        )
            .into_response();
    }
    let stats = shared.lock().stats();
    axum::Json(stats).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn auth_messages_follow_drf() {
        let key = "k";
        assert_eq!(check_auth(&headers(Some("Bearer k")), key), Ok(()));
        assert_eq!(check_auth(&headers(Some("bearer k")), key), Ok(()));
        assert_eq!(
            check_auth(&headers(None), key),
            Err("Authentication credentials were not provided.")
        );
        assert_eq!(
            check_auth(&headers(Some("Token k")), key),
            Err("Authentication credentials were not provided.")
        );
        assert_eq!(
            check_auth(&headers(Some("Bearer x")), key),
            Err("Invalid token.")
        );
        assert!(check_auth(&headers(Some("Bearer")), key).is_err());
        assert!(check_auth(&headers(Some("Bearer k k")), key).is_err());
    }

    #[test]
    fn origin_prefers_a_sane_host_header() {
        let local: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(origin(&h, local), "http://127.0.0.1:9");
        h.insert(header::HOST, HeaderValue::from_static("localhost:9"));
        assert_eq!(origin(&h, local), "http://localhost:9");
        h.insert(header::HOST, HeaderValue::from_static("evil/path"));
        assert_eq!(origin(&h, local), "http://127.0.0.1:9");
    }
}

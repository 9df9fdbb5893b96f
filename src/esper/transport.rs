//! One HTTP attempt: building the request (the `Authorization` header, JSON or a streamed
//! multipart upload), passing the throttle, sending, reading the answer, and turning what
//! came back into bytes or a typed [`ApiError`].
//!
//! Everything the server says enters the engine here, so this is also where the rules about
//! server text live.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::client::Client;
use super::error::{ApiError, ErrorBody, ErrorKind, parse_retry_after};
use crate::base::{Observation, RequestKind};

impl Client {
    /// Sends one request and returns the status and body bytes of a success, or the error.
    ///
    /// The answer is held to three rules: a 3xx is a failure (never followed), a body over
    /// the size limit is a failure (read no further), and the API key is masked in the body
    /// and in `Location` before anything is decoded, so no error, log line, journal entry
    /// or report can repeat a key the server echoed.
    pub(super) async fn send(
        &self,
        kind: RequestKind,
        method: Method,
        path_or_url: &str,
        query: &[(String, String)],
        body: Body,
    ) -> Result<(u16, Vec<u8>), ApiError> {
        let url = self.full_url(path_or_url);
        let shown = display_path(&self.conn.base_url, &url, query);
        let err = |kind: ErrorKind| ApiError {
            method: method.to_string(),
            path: shown.clone(),
            kind,
        };
        let mut auth = reqwest::header::HeaderValue::from_str(&format!(
            "Bearer {}",
            self.conn.api_key.expose()
        ))
        .map_err(|_| {
            err(ErrorKind::Build(
                "the API key contains characters not allowed in a header".into(),
            ))
        })?;
        auth.set_sensitive(true);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .header(reqwest::header::AUTHORIZATION, auth)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(self.opts.timeout);
        if !query.is_empty() {
            req = req.query(query);
        }
        req = match body {
            Body::None => req,
            Body::Json(v) => req.json(&v),
            Body::Upload { field, path, mime } => {
                let part = file_part(&path, mime).await.map_err(err)?;
                req.multipart(reqwest::multipart::Form::new().part(field, part))
                    .timeout(self.opts.upload_timeout)
            }
        };
        let _guard = match &self.throttle {
            Some(t) => match t.acquire(kind).await {
                Some(g) => Some(g),
                None => return Err(err(ErrorKind::Stopped)),
            },
            None => None,
        };
        let started = Instant::now();
        let result = req.send().await;
        let observe = |status: Option<u16>, retry_after: Option<Duration>| {
            if let Some(t) = &self.throttle {
                t.observe(
                    kind,
                    Observation {
                        status,
                        retry_after,
                        latency: started.elapsed(),
                    },
                );
            }
        };
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => {
                observe(None, None);
                return Err(err(classify(&e)));
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
        if (300..400).contains(&status) {
            observe(Some(status), None);
            let location = resp.headers().get(reqwest::header::LOCATION).map(|v| {
                self.conn
                    .api_key
                    .scrub(&String::from_utf8_lossy(v.as_bytes()))
            });
            return Err(err(ErrorKind::Redirect { status, location }));
        }
        let bytes = match self.read_body(&mut resp).await {
            Ok(b) => b,
            Err(kind) => {
                match kind {
                    ErrorKind::TooLarge { .. } => observe(Some(status), retry_after),
                    _ => observe(None, None),
                }
                return Err(err(kind));
            }
        };
        observe(Some(status), retry_after);
        // Whatever the server sent, the key it may have echoed goes no further.
        let bytes = self.conn.api_key.scrub_bytes(bytes);
        if (200..300).contains(&status) {
            Ok((status, bytes))
        } else {
            let body = ErrorBody::parse(&bytes).map(Box::new);
            let raw = if body.is_some() {
                String::new()
            } else {
                snippet(&bytes)
            };
            Err(err(ErrorKind::Status {
                status,
                body,
                raw,
                retry_after,
            }))
        }
    }

    /// The body, read chunk by chunk into one buffer that never grows past
    /// [`ClientOptions::max_body`](super::ClientOptions::max_body).
    async fn read_body(&self, resp: &mut reqwest::Response) -> Result<Vec<u8>, ErrorKind> {
        let status = resp.status().as_u16();
        let limit = self.opts.max_body;
        let too_large = ErrorKind::TooLarge { status, limit };
        let announced = resp.content_length().unwrap_or(0);
        if announced > limit {
            return Err(too_large);
        }
        let mut buf = Vec::with_capacity(announced as usize);
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if (buf.len() + chunk.len()) as u64 > limit {
                        return Err(too_large);
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(buf),
                Err(e) => {
                    // The request was sent and answered: a failure now is not a connect
                    // failure, whatever the cause says.
                    return Err(match classify(&e) {
                        ErrorKind::Connect(m) => ErrorKind::Transport(m),
                        other => other,
                    });
                }
            }
        }
    }

    /// A path below the base URL, or an absolute URL (a `next` link) as is.
    pub(super) fn full_url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http") {
            path_or_url.to_string()
        } else {
            self.url(path_or_url)
        }
    }

    pub(super) async fn json<T: DeserializeOwned>(
        &self,
        kind: RequestKind,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Body,
    ) -> Result<T, ApiError> {
        let (_, bytes) = self.send(kind, method.clone(), path, query, body).await?;
        decode(&bytes).map_err(|kind| ApiError {
            method: method.to_string(),
            path: display_path(&self.conn.base_url, &self.full_url(path), query),
            kind,
        })
    }
}

pub(super) enum Body {
    None,
    Json(Value),
    Upload {
        field: &'static str,
        path: PathBuf,
        mime: &'static str,
    },
}

async fn file_part(path: &Path, mime: &str) -> Result<reqwest::multipart::Part, ErrorKind> {
    // A FIFO or device would block the open or stream without end.
    crate::util::check_regular(path)
        .map_err(|e| ErrorKind::Build(format!("cannot upload {}: {e}", path.display())))?;
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| ErrorKind::Build(format!("cannot open {}: {e}", path.display())))?;
    let len = file
        .metadata()
        .await
        .map_err(|e| ErrorKind::Build(format!("cannot stat {}: {e}", path.display())))?
        .len();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "upload".into());
    let stream = tokio_util::io::ReaderStream::new(file);
    reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), len)
        .file_name(name)
        .mime_str(mime)
        .map_err(|e| ErrorKind::Build(format!("bad MIME type `{mime}`: {e}")))
}

fn classify(e: &reqwest::Error) -> ErrorKind {
    let mut msg = e.without_url_ref();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_connect() {
        ErrorKind::Connect(msg)
    } else if e.is_decode() {
        ErrorKind::Decode(msg)
    } else if e.is_builder() {
        ErrorKind::Build(msg)
    } else {
        ErrorKind::Transport(msg)
    }
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let text = self.to_string();
        match self.url() {
            Some(u) => text
                .replace(&format!(" for url ({u})"), "")
                .replace(u.as_str(), "<url>"),
            None => text,
        }
    }
}

pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ErrorKind> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ErrorKind::Decode(if path == "." {
            e.inner().to_string()
        } else {
            format!("at `{path}`: {}", e.inner())
        })
    })
}

fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let mut out: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// The path below the base URL plus query, as shown in errors and reports.
pub(super) fn display_path(base: &str, url: &str, query: &[(String, String)]) -> String {
    let rel = url.strip_prefix(base).unwrap_or(url);
    let rel = match url::Url::parse(url) {
        Ok(u) if !url.starts_with(base) => {
            u.path().to_string() + u.query().map(|q| format!("?{q}")).as_deref().unwrap_or("")
        }
        _ => rel.to_string(),
    };
    if query.is_empty() {
        rel
    } else {
        let q: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{rel}?{}", q.join("&"))
    }
}

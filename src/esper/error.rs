//! The client's typed error: what was asked, what came back, and how it failed.
//!
//! It decodes all three Esper error body shapes and the `Retry-After` header, and it classes
//! the failure (connect, timeout, decode, status) so the executor can decide about retries
//! without knowing HTTP. It never holds the API key: only method, path and bodies.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// An Esper error body, decoded leniently from any of the three published shapes:
/// `{errors, message, status}`, `{code, message, content}` and `{message, code}`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ErrorBody {
    pub message: Option<String>,
    pub errors: Vec<String>,
    pub code: Option<i64>,
    /// The `content` object of service errors (often field errors), if any.
    pub content: Option<serde_json::Value>,
}

impl ErrorBody {
    /// Decodes a body, or `None` when it is not JSON or carries no message at all.
    pub fn parse(raw: &[u8]) -> Option<ErrorBody> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(default)]
            message: Option<serde_json::Value>,
            #[serde(default)]
            errors: Option<serde_json::Value>,
            #[serde(default)]
            code: Option<serde_json::Value>,
            #[serde(default)]
            status: Option<serde_json::Value>,
            #[serde(default)]
            content: Option<serde_json::Value>,
            #[serde(default)]
            detail: Option<String>,
        }
        let wire: Wire = serde_json::from_slice(raw).ok()?;
        let message = match wire.message {
            Some(serde_json::Value::String(s)) => Some(s),
            Some(serde_json::Value::Null) | None => wire.detail,
            Some(other) => Some(other.to_string()),
        };
        let errors = match wire.errors {
            Some(serde_json::Value::Array(items)) => items.into_iter().map(value_text).collect(),
            Some(serde_json::Value::Object(map)) => map
                .into_iter()
                .map(|(k, v)| format!("{k}: {}", value_text(v)))
                .collect(),
            Some(serde_json::Value::String(s)) => vec![s],
            _ => Vec::new(),
        };
        let code = wire.code.or(wire.status).and_then(|v| v.as_i64());
        let content = wire
            .content
            .filter(|c| !c.is_null() && c != &serde_json::json!({}));
        if message.is_none() && errors.is_empty() && content.is_none() {
            return None;
        }
        Some(ErrorBody {
            message,
            errors,
            code,
            content,
        })
    }

    /// One line for humans: the message, then the field errors.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(m) = &self.message {
            parts.push(m.trim_end_matches('.').to_string());
        }
        // Core bodies often repeat the first field error as `message`.
        for e in &self.errors {
            if !parts.iter().any(|p| p == e.trim_end_matches('.')) {
                parts.push(e.clone());
            }
        }
        if let Some(serde_json::Value::Object(map)) = &self.content {
            for (k, v) in map {
                parts.push(format!("{k}: {}", value_text(v.clone())));
            }
        }
        parts.join("; ")
    }
}

fn value_text(v: serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s,
        serde_json::Value::Array(items) => items
            .into_iter()
            .map(value_text)
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// How a request failed.
#[derive(Debug, Clone)]
pub enum ErrorKind {
    /// The server answered with a non-success status.
    Status {
        status: u16,
        /// Boxed: most errors have no body and `ApiError` travels in every `Result`.
        body: Option<Box<ErrorBody>>,
        /// The first bytes of the body when it was not an Esper error body.
        raw: String,
        retry_after: Option<Duration>,
    },
    /// No connection could be made: the request was certainly not processed.
    Connect(String),
    /// The request timed out: it may or may not have been processed.
    Timeout,
    /// The connection broke after the request was sent: it may have been processed.
    Transport(String),
    /// The response arrived but its body did not have the expected shape.
    Decode(String),
    /// The request could not even be built (bad URL, unreadable file): nothing was sent.
    Build(String),
    /// The run is stopping (signal or deadline): the request was not sent.
    Stopped,
}

/// The coarse class of a failure; the executor's retry vocabulary.
pub use crate::exec::FailureClass as ErrorClass;

/// A failed Esper call: the method and path asked for, and what went wrong.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub method: String,
    /// The path below the base URL, with query string; never contains credentials.
    pub path: String,
    pub kind: ErrorKind,
}

impl ApiError {
    pub fn class(&self) -> ErrorClass {
        match &self.kind {
            ErrorKind::Status { status, .. } => match *status {
                429 => ErrorClass::RateLimited,
                401 | 403 => ErrorClass::Auth,
                404 => ErrorClass::NotFound,
                408 => ErrorClass::Timeout,
                s if s >= 500 => ErrorClass::Server,
                _ => ErrorClass::Client,
            },
            ErrorKind::Connect(_) => ErrorClass::Connect,
            ErrorKind::Timeout => ErrorClass::Timeout,
            ErrorKind::Transport(_) => ErrorClass::Transport,
            ErrorKind::Decode(_) => ErrorClass::Decode,
            ErrorKind::Build(_) => ErrorClass::Build,
            ErrorKind::Stopped => ErrorClass::Stopped,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match &self.kind {
            ErrorKind::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match &self.kind {
            ErrorKind::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn body(&self) -> Option<&ErrorBody> {
        match &self.kind {
            ErrorKind::Status { body, .. } => body.as_deref(),
            _ => None,
        }
    }

    /// Whether the server may have acted on the request. A create that fails this way has
    /// an unknown outcome and must be read back before it is sent again.
    pub fn maybe_processed(&self) -> bool {
        match &self.kind {
            ErrorKind::Status { status, .. } => *status >= 500,
            ErrorKind::Timeout | ErrorKind::Transport(_) | ErrorKind::Decode(_) => true,
            ErrorKind::Connect(_) | ErrorKind::Build(_) | ErrorKind::Stopped => false,
        }
    }

    /// The short reason recorded on an attempt: `429`, `503`, `connect`, `timeout`, ….
    pub fn short(&self) -> String {
        match &self.kind {
            ErrorKind::Status { status, .. } => status.to_string(),
            _ => self.class().as_str().to_string(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (m, p) = (&self.method, &self.path);
        match &self.kind {
            ErrorKind::Status {
                status, body, raw, ..
            } => {
                let hint = match status {
                    401 => " (check ESPER_API_KEY and that the key belongs to this tenant)",
                    403 => " (the API key lacks the scope for this call)",
                    404 => " (check the enterprise id, the tenant and the ids in the job)",
                    429 => " (rate limited: lower limits.rate)",
                    _ => "",
                };
                let detail = match body {
                    Some(b) if !b.summary().is_empty() => b.summary(),
                    _ if !raw.is_empty() => raw.clone(),
                    _ => "no error body".to_string(),
                };
                write!(f, "{m} {p} answered {status}: {detail}{hint}")
            }
            ErrorKind::Connect(e) => write!(
                f,
                "{m} {p}: cannot connect: {e} (check the base URL, proxy settings and network)"
            ),
            ErrorKind::Timeout => write!(
                f,
                "{m} {p}: timed out waiting for the server (raise --timeout or lower limits.rate)"
            ),
            ErrorKind::Transport(e) => write!(
                f,
                "{m} {p}: connection failed after the request was sent: {e}"
            ),
            ErrorKind::Decode(e) => write!(f, "{m} {p}: unexpected response body: {e}"),
            ErrorKind::Build(e) => write!(f, "{m} {p}: cannot build the request: {e}"),
            ErrorKind::Stopped => write!(f, "{m} {p}: not sent: the run is stopping"),
        }
    }
}

impl std::error::Error for ApiError {}

/// Parses `Retry-After`: delta-seconds or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(secs.min(1e9)));
        }
        return None;
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn retry_after_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", SystemTime::now()), None);
    }

    #[test]
    fn error_bodies_all_shapes() {
        let core = ErrorBody::parse(br#"{"errors":["realert_interval: This field is required."],"message":"Bad request","status":400}"#).unwrap();
        assert_eq!(core.code, Some(400));
        assert_eq!(
            core.summary(),
            "Bad request; realert_interval: This field is required."
        );
        let service = ErrorBody::parse(
            br#"{"code":400,"message":"Invalid data","content":{"devices":["required"]}}"#,
        )
        .unwrap();
        assert_eq!(service.summary(), "Invalid data; devices: required");
        let repeated = ErrorBody::parse(br#"{"errors":["state: Enter a whole number."],"message":"state: Enter a whole number.","status":400}"#).unwrap();
        assert_eq!(repeated.summary(), "state: Enter a whole number");
        let custom = ErrorBody::parse(br#"{"message":"no such script","code":404}"#).unwrap();
        assert_eq!(custom.code, Some(404));
        assert!(ErrorBody::parse(b"<html>bad gateway</html>").is_none());
        assert!(ErrorBody::parse(b"{}").is_none());
    }
}

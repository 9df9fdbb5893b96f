//! The client's typed error: what was asked, what came back, and how it failed.
//!
//! It decodes all three Esper error body shapes and the `Retry-After` header, and it classes
//! the failure (connect, timeout, decode, status, redirect, oversized body, inconsistent
//! pages) in its own [`ErrorClass`], which the adapter maps to the executor's classes.
//! `Display` says what happened (with Esper's own message); how to fix it is the error's
//! [`Hint`](crate::base::Hint). It never holds the API key: only method, path and bodies,
//! and the transport masks the key in whatever the server sent before it gets here.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::page::PageError;

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
    /// The server answered 3xx. Esper does not redirect API calls, so the redirect is not
    /// followed (the key and a POST's body would go wherever `Location` points).
    Redirect {
        status: u16,
        /// The `Location` header, key masked, when there was one.
        location: Option<String>,
    },
    /// The response body was larger than the client's limit (`ClientOptions::max_body`).
    TooLarge { status: u16, limit: u64 },
    /// A list's pages cannot be trusted (not a page, counts that contradict the items,
    /// links that circle or leave the server): the listing is not "empty", it failed.
    Page(PageError),
    /// The request could not even be built (bad URL, unreadable file): nothing was sent.
    Build(String),
    /// The run is stopping (signal or deadline): the request was not sent.
    Stopped,
}

/// The coarse class of a failed call, in the client's terms. The adapter
/// (`esper::adapter`) maps it to the executor's `FailureClass`; the client itself does not
/// know how the executor retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    RateLimited,
    Server,
    Auth,
    NotFound,
    Client,
    Connect,
    Timeout,
    Transport,
    Decode,
    Build,
    Stopped,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::Server => "server",
            ErrorClass::Auth => "auth",
            ErrorClass::NotFound => "not_found",
            ErrorClass::Client => "client",
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Transport => "transport",
            ErrorClass::Decode => "decode",
            ErrorClass::Build => "build",
            ErrorClass::Stopped => "stopped",
        }
    }
}

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
            ErrorKind::Decode(_) | ErrorKind::TooLarge { .. } | ErrorKind::Page(_) => {
                ErrorClass::Decode
            }
            ErrorKind::Redirect { .. } => ErrorClass::Client,
            ErrorKind::Build(_) => ErrorClass::Build,
            ErrorKind::Stopped => ErrorClass::Stopped,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match &self.kind {
            ErrorKind::Status { status, .. }
            | ErrorKind::Redirect { status, .. }
            | ErrorKind::TooLarge { status, .. } => Some(*status),
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

    /// What Esper itself said: the error body's message and field errors, when it sent
    /// an Esper error body with any text in it.
    pub fn server_message(&self) -> Option<String> {
        self.body()
            .map(ErrorBody::summary)
            .filter(|s| !s.is_empty())
    }

    /// What happened, in our words and without Esper's message: `POST /x/ answered 400`,
    /// `GET /y/: cannot connect: …`. A status answer without an Esper message says what
    /// came instead (the start of the body, or that there was none).
    pub fn description(&self) -> String {
        let (m, p) = (&self.method, &self.path);
        match &self.kind {
            ErrorKind::Status { status, raw, .. } => {
                if self.server_message().is_some() {
                    format!("{m} {p} answered {status}")
                } else if !raw.is_empty() {
                    format!("{m} {p} answered {status}: {raw}")
                } else {
                    format!("{m} {p} answered {status}: no error body")
                }
            }
            ErrorKind::Connect(e) => format!("{m} {p}: cannot connect: {e}"),
            ErrorKind::Timeout => format!("{m} {p}: timed out waiting for the server"),
            ErrorKind::Transport(e) => {
                format!("{m} {p}: connection failed after the request was sent: {e}")
            }
            ErrorKind::Decode(e) => format!("{m} {p}: unexpected response body: {e}"),
            ErrorKind::Redirect {
                status,
                location: Some(l),
            } => {
                format!("{m} {p} answered {status} redirecting to {l}; redirects are not followed")
            }
            ErrorKind::Redirect {
                status,
                location: None,
            } => format!("{m} {p} answered {status} (a redirect); redirects are not followed"),
            ErrorKind::TooLarge { limit, .. } => format!(
                "{m} {p}: the response body is larger than the limit of {}",
                size_text(*limit)
            ),
            ErrorKind::Page(e) => format!("{m} {p}: the listing cannot be trusted: {e}"),
            ErrorKind::Build(e) => format!("{m} {p}: cannot build the request: {e}"),
            ErrorKind::Stopped => format!("{m} {p}: not sent: the run is stopping"),
        }
    }

    /// Whether the server may have acted on the request. A create that fails this way has
    /// an unknown outcome and must be read back before it is sent again.
    ///
    /// An answer that arrived whole but cannot be used (a body that does not decode or is
    /// too large) only leaves a write in doubt: a read acts on nothing, so asking again
    /// gets the same answer and is not worth a retry.
    pub fn maybe_processed(&self) -> bool {
        match &self.kind {
            ErrorKind::Status { status, .. } => *status >= 500,
            ErrorKind::Timeout | ErrorKind::Transport(_) => true,
            ErrorKind::Decode(_) => self.is_write(),
            ErrorKind::TooLarge { status, .. } => {
                self.is_write() && ((200..300).contains(status) || *status >= 500)
            }
            ErrorKind::Connect(_)
            | ErrorKind::Build(_)
            | ErrorKind::Stopped
            | ErrorKind::Redirect { .. }
            | ErrorKind::Page(_) => false,
        }
    }

    /// Whether the request could change anything (not GET, HEAD or OPTIONS).
    fn is_write(&self) -> bool {
        !["GET", "HEAD", "OPTIONS"]
            .iter()
            .any(|m| self.method.eq_ignore_ascii_case(m))
    }
}

impl crate::base::Hint for ApiError {
    fn hint(&self) -> Option<String> {
        let h = match &self.kind {
            ErrorKind::Status { status, .. } => match status {
                401 => "check ESPER_API_KEY and that the key belongs to this tenant",
                403 => "the API key lacks the scope for this call",
                404 => "check the enterprise id, the tenant and the ids in the job",
                429 => "rate limited: lower limits.rate",
                _ => return None,
            },
            ErrorKind::Connect(_) => "check the base URL, proxy settings and network",
            ErrorKind::Timeout => "raise --timeout or lower limits.rate",
            ErrorKind::Redirect { .. } => {
                "Esper does not redirect API calls: check the base URL (another server or a proxy is answering)"
            }
            ErrorKind::TooLarge { limit, .. } => {
                return Some(format!(
                    "if the server really sends more, raise the limit with --max-body (now {})",
                    size_text(*limit)
                ));
            }
            ErrorKind::Page(PageError::OffHost { .. }) => {
                "the server's links lead elsewhere: check the base URL; the key is never sent off it"
            }
            ErrorKind::Page(_) => {
                "the server's listing is inconsistent and retrying will not change it; try again later or report it to Esper"
            }
            _ => return None,
        };
        Some(h.to_string())
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description())?;
        if let Some(m) = self.server_message() {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// A byte count as the `--max-body` flag writes it: `32 MiB`, `64 KiB`, `1000 bytes`.
pub fn size_text(n: u64) -> String {
    const KIB: u64 = 1024;
    match n {
        0 => "0 bytes".into(),
        n if n % (KIB * KIB * KIB) == 0 => format!("{} GiB", n / (KIB * KIB * KIB)),
        n if n % (KIB * KIB) == 0 => format!("{} MiB", n / (KIB * KIB)),
        n if n % KIB == 0 => format!("{} KiB", n / KIB),
        n => format!("{n} bytes"),
    }
}

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

    #[test]
    fn display_says_what_and_the_hint_says_how_to_fix() {
        use crate::base::{Hint, one_line};
        let body = ErrorBody::parse(br#"{"message":"invalid token","code":401}"#).map(Box::new);
        let e = ApiError {
            method: "GET".into(),
            path: "/v1/enterprise/e/application/".into(),
            kind: ErrorKind::Status {
                status: 401,
                body,
                raw: String::new(),
                retry_after: None,
            },
        };
        assert_eq!(
            e.description(),
            "GET /v1/enterprise/e/application/ answered 401"
        );
        assert_eq!(e.server_message().as_deref(), Some("invalid token"));
        assert_eq!(
            e.to_string(),
            "GET /v1/enterprise/e/application/ answered 401: invalid token"
        );
        assert_eq!(
            one_line(&e),
            "GET /v1/enterprise/e/application/ answered 401: invalid token (check ESPER_API_KEY and that the key belongs to this tenant)"
        );
        let bare = ApiError {
            kind: ErrorKind::Status {
                status: 502,
                body: None,
                raw: "<html>bad gateway</html>".into(),
                retry_after: None,
            },
            ..e.clone()
        };
        assert_eq!(
            bare.server_message(),
            None,
            "an HTML page is not Esper's message"
        );
        assert!(
            bare.to_string()
                .ends_with("answered 502: <html>bad gateway</html>")
        );
        assert_eq!(bare.hint(), None);
        let refused = ApiError {
            kind: ErrorKind::Connect("connection refused".into()),
            ..e
        };
        assert_eq!(
            refused.to_string(),
            "GET /v1/enterprise/e/application/: cannot connect: connection refused"
        );
        assert_eq!(
            refused.hint().as_deref(),
            Some("check the base URL, proxy settings and network")
        );
    }
}

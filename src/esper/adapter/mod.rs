//! The adapter between the engine and the Esper client: the only part of `esper` that
//! knows the executor and the planner. It implements their traits over the client, which
//! itself speaks only the shared vocabulary of [`crate::base`]:
//!
//! - `dispatch`: the executor's [`Dispatch`](crate::exec::Dispatch) ([`EsperDispatch`]):
//!   one attempt of a task's write, and `follow` for tracking a command to its devices;
//! - `reconcile`: the read-backs by natural key that keep a retried create from making
//!   a duplicate;
//! - `inventory`: the planner's [`Inventory`](crate::plan::Inventory) ([`PlanReads`]:
//!   target reads, retried as the job's `retry:` says, and app version lookups);
//! - `serials`: CSV serial targets, looked up one by one when few, else a fleet scan;
//! - `access`: the one-read check that the key and the enterprise work, for a run that
//!   has read nothing before its first write;
//! - `verify`: after a followed INSTALL, which devices really have the version;
//! - `export`: export steps, each listing read page by page into the file sink;
//! - `paths`: the planner's [`Paths`](crate::plan::Paths), the client's path table as the
//!   review text shows it.
//!
//! This file maps the client's [`ApiError`] and [`ErrorClass`] onto the executor's
//! [`Failure`], so a failure stays typed from the HTTP answer to the report. Which answers
//! are worth retrying is the executor's call ([`Failure::retryable`]), not this one's.

mod access;
mod dispatch;
mod export;
mod follow;
mod inventory;
mod paths;
mod reconcile;
mod serials;
mod verify;

pub use access::check_access;
pub use dispatch::{EsperDispatch, PollSettings};
pub use export::{ExportEnv, rule_block};
pub use inventory::{ListingNote, PlanReads};
pub use paths::EsperPaths;

use crate::base::{FailureClass, Hint};
use crate::esper::{ApiError, ErrorClass};
use crate::exec::Failure;

/// The executor's class for a client error class: the same names, one vocabulary each.
fn failure_class(c: ErrorClass) -> FailureClass {
    match c {
        ErrorClass::RateLimited => FailureClass::RateLimited,
        ErrorClass::Server => FailureClass::Server,
        ErrorClass::Auth => FailureClass::Auth,
        ErrorClass::NotFound => FailureClass::NotFound,
        ErrorClass::Client => FailureClass::Client,
        ErrorClass::Connect => FailureClass::Connect,
        ErrorClass::Timeout => FailureClass::Timeout,
        ErrorClass::Transport => FailureClass::Transport,
        ErrorClass::Decode => FailureClass::Decode,
        ErrorClass::Build => FailureClass::Build,
        ErrorClass::Stopped => FailureClass::Stopped,
    }
}

impl From<&ApiError> for Failure {
    fn from(e: &ApiError) -> Failure {
        Failure {
            class: failure_class(e.class()),
            http_status: e.status(),
            esper_message: e.server_message(),
            hint: e.hint(),
            description: e.description(),
            retry_after: e.retry_after(),
            maybe_processed: e.maybe_processed(),
        }
    }
}

/// `ApiError` to `Failure`, for `map_err`.
fn fail(e: ApiError) -> Failure {
    Failure::from(&e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esper::ErrorKind;
    use crate::esper::page::PageError;

    fn err(method: &str, kind: ErrorKind) -> Failure {
        Failure::from(&ApiError {
            method: method.into(),
            path: "/x/".into(),
            kind,
        })
    }

    #[test]
    fn answers_no_retry_can_change_are_not_retried() {
        let page = || {
            ErrorKind::Page(PageError::RepeatedNext {
                next: "http://h/api/x/".into(),
            })
        };
        let decode = || ErrorKind::Decode("expected a list".into());
        let redirect = || ErrorKind::Redirect {
            status: 307,
            location: Some("http://elsewhere/".into()),
        };
        let big = || ErrorKind::TooLarge {
            status: 200,
            limit: 1024,
        };
        for (method, kind, retried, in_doubt) in [
            ("GET", page(), false, false),
            ("GET", decode(), false, false),
            ("GET", big(), false, false),
            ("GET", redirect(), false, false),
            ("POST", redirect(), false, false),
            // A create whose answer was garbled may have happened: read back, then retry.
            ("POST", decode(), true, true),
            ("POST", big(), true, true),
            ("GET", ErrorKind::Timeout, true, true),
        ] {
            let f = err(method, kind.clone());
            assert_eq!(
                (f.retryable(), f.maybe_processed),
                (retried, in_doubt),
                "{method} {kind:?}"
            );
        }
        let f = err("POST", redirect());
        assert_eq!((f.class, f.http_status), (FailureClass::Client, Some(307)));
        assert_eq!(
            f.description,
            "POST /x/ answered 307 redirecting to http://elsewhere/; redirects are not followed"
        );
        let f = err("GET", big());
        assert_eq!(
            f.description,
            "GET /x/: the response body is larger than the limit of 1 KiB"
        );
        assert_eq!(
            f.hint.as_deref(),
            Some("if the server really sends more, raise the limit with --max-body (now 1 KiB)")
        );
        let f = err("GET", page());
        assert_eq!(
            f.description,
            "GET /x/: the listing cannot be trusted: `next` leads back to http://h/api/x/, a page already read"
        );
    }
}

//! The adapter between the engine and the Esper client: the only part of `esper` that
//! knows the executor and the planner. It implements their traits over the client, which
//! itself speaks only the shared vocabulary of [`crate::base`]:
//!
//! - `dispatch`: the executor's [`Dispatch`](crate::exec::Dispatch) ([`EsperDispatch`]):
//!   one attempt of a task's write, and `follow` for tracking a command to its devices;
//! - `reconcile`: the read-backs by natural key that keep a retried create from making
//!   a duplicate;
//! - `inventory`: the planner's [`Inventory`](crate::plan::Inventory) (target reads,
//!   retried, and app version lookups);
//! - `paths`: the planner's [`Paths`](crate::plan::Paths), the client's path table as the
//!   review text shows it.
//!
//! This file maps the client's [`ApiError`] and [`ErrorClass`] onto the executor's
//! [`Failure`], so a failure stays typed from the HTTP answer to the report. Which answers
//! are worth retrying is the executor's call ([`Failure::retryable`]), not this one's.

mod dispatch;
mod follow;
mod inventory;
mod paths;
mod reconcile;

pub use dispatch::{EsperDispatch, PollSettings};
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

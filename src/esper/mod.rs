//! The typed Esper REST client: connection settings, models, pagination and errors.
//!
//! Each call makes exactly one HTTP attempt; deciding whether and when to retry belongs to
//! the executor. Every request passes the optional [`Throttle`](crate::base::Throttle) hook
//! first, which is how the executor's rate limiter sees pages, polls and read-backs as well
//! as writes. The client (`client` with its endpoints, `transport` for one attempt,
//! `paginate` for lists, `error` with `access` (what an error says about using the API
//! at all), `model`, `page`, `routes`) knows nothing of the executor
//! or the planner: it speaks the shared vocabulary of [`crate::base`], and `routes` is the
//! one table of paths, by [`Endpoint`](crate::base::Endpoint). The adapter that maps plan
//! operations onto these calls, and client errors onto executor failures, lives in
//! [`adapter`]; it is the only part of this module that imports `exec`, `plan` or `job`.

mod access;
pub mod adapter;
mod client;
mod error;
pub mod model;
pub mod page;
mod paginate;
mod routes;
mod transport;

pub use client::{
    ApiKey, BadSize, Client, ClientOptions, CommandFilter, Connection, DEFAULT_MAX_BODY,
    DeviceFilter, PageRetry, RawResponse, parse_size,
};
pub use error::{ApiError, ErrorBody, ErrorClass, ErrorKind, size_text};
pub use page::PageStyle;

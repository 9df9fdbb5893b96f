//! The typed Esper REST client: connection settings, models, pagination and errors.
//!
//! Each call makes exactly one HTTP attempt; deciding whether and when to retry belongs to
//! the executor. Every request passes the optional [`Throttle`] hook first, which is how the
//! executor's rate limiter sees pages, polls and read-backs as well as writes. The adapter
//! that maps plan operations onto these calls lives in [`dispatch`].

mod client;
pub mod dispatch;
mod error;
pub mod model;
pub mod page;

pub use client::{
    ApiKey, Client, ClientOptions, CommandFilter, Connection, DeviceFilter, Observation,
    RawResponse, RequestKind, Throttle,
};
pub use error::{ApiError, ErrorBody, ErrorClass, ErrorKind};
pub use page::PageStyle;

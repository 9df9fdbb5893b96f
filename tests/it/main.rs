//! The single integration-test binary. Everything talks to the in-process mock Esper on
//! 127.0.0.1:0; nothing reaches the internet.

mod api;
mod cli;
mod client;
mod coordinator;
mod daily;
mod diagnostics;
mod engine;
mod export;
mod files;
mod fixtures;
mod fleet;
mod fuzz;
mod fuzz_plans;
mod hostile;
mod jobs;
mod live;
mod mock;
mod notify;
mod ops;
mod reports;
mod resume;
mod scenarios;
mod schedule;
mod secrets;
mod subset;
mod support;
mod templates;
mod tidy;
mod truthful;
mod unix;
mod validate;

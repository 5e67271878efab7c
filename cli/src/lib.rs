//! The `aether` binary's library half: the roles, wired from the library crates, that the
//! binary's commands, the end-to-end tests and the benchmarks start.

pub mod logging;
pub mod moderator;
pub mod roles;
pub mod telemetry;
pub mod tracing_otel;

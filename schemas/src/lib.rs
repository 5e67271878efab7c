//! The public shape of AetherConnect's event log.
//!
//! Every event that leaves the event store — to the embedded log that projectors tail, or to a
//! Kafka topic that analytics consumers replay — travels as an [`EventEnvelope`]. This crate owns
//! that envelope, the metadata keys commands attach to events, the topic catalogue, and the
//! [`EventLog`] port that projectors read from.

pub mod audit;
pub mod envelope;
pub mod log;
pub mod topics;

pub use envelope::{EventEnvelope, LoggedEvent, Metadata};
pub use log::{EventLog, LogError};

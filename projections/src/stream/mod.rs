//! The distributed read side: projectors that consume the Kafka event topics into their own
//! stores (PostgreSQL, MongoDB), each in its own process.
//!
//! A projector owns its offsets (log rule 4 in docs/architecture.md): the next offset of every partition is part
//! of the read model and is written in the same store transaction as the rows a batch changed.
//! On start it seeks to that checkpoint; Kafka's consumer-group offsets are never used.

pub mod controls;
pub mod engine;
pub mod event_store;
pub mod metrics;
pub mod mongo;
pub mod postgres;
pub mod reactor;
pub mod registry;
pub mod role;
pub mod source;
mod sql_rows;
pub mod sqlite;
pub mod store;

pub use engine::{PoisonPolicy, ProjectorOptions, StreamProjector};
pub use metrics::ProjectorMetrics;
pub use source::{Checkpoint, KafkaSource, Lag, Payload, Polled, StreamEvent, TopicPartition};
pub use store::{Applied, DeadLetter, ReadStore, StoreError};

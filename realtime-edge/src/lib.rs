//! The realtime edge: GraphQL over HTTP and WebSocket (`graphql-transport-ws`), health and
//! readiness, and the embedded application that runs every role in one process.

pub mod app;
pub mod audience;
pub mod edge;
pub mod http;
pub mod oidc;
pub mod protocol;
pub mod ws;

pub use app::{start_distributed, start_embedded, DistributedConfig, EmbeddedConfig, Running};

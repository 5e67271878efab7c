//! The realtime edge, transport only: GraphQL over HTTP and WebSocket (`graphql-transport-ws`
//! and `graphql-ws`), fan-out of updates to subscribers, health and readiness, and the feeds
//! that bring updates and typing/presence signals from Kafka. The roles that use it are wired
//! in the `aether` binary's crate (`aether_cli::roles`).

pub mod audience;
pub mod edge;
pub mod http;
pub mod oidc;
pub mod protocol;
pub mod web;
pub mod ws;

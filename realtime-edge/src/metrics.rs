//! What the edge reports through the `metrics` facade: open WebSocket connections and
//! subscriptions (gauges held up by guards, so every way a connection or subscription ends
//! takes it off), updates delivered to subscribers, and slow clients let go.
//!
//! The handles are made once per router and cloned (an `Arc`) into each connection: a
//! delivery costs one atomic add.

use metrics::{Counter, Gauge, Unit};

pub const CONNECTIONS: &str = "aether_websocket_connections";
pub const SUBSCRIPTIONS: &str = "aether_subscriptions";
pub const DELIVERIES: &str = "aether_subscription_deliveries_total";
pub const SLOW_CLIENTS: &str = "aether_websocket_slow_client_disconnects_total";
pub const REFUSED_CONNECTIONS: &str = "aether_websocket_refused_connections_total";

pub fn describe() {
    metrics::describe_gauge!(
        CONNECTIONS,
        Unit::Count,
        "WebSocket connections open on this instance."
    );
    metrics::describe_gauge!(
        SUBSCRIPTIONS,
        Unit::Count,
        "GraphQL subscriptions running on this instance's WebSocket connections."
    );
    metrics::describe_counter!(
        DELIVERIES,
        Unit::Count,
        "Subscription results handed to WebSocket connections to send."
    );
    metrics::describe_counter!(
        SLOW_CLIENTS,
        Unit::Count,
        "WebSocket connections ended because the client read nothing for the whole send \
         deadline."
    );
    metrics::describe_counter!(
        REFUSED_CONNECTIONS,
        Unit::Count,
        "WebSocket upgrades refused because the instance holds its most connections."
    );
}

/// The edge's handles.
#[derive(Clone, Debug)]
pub struct EdgeMetrics {
    connections: Gauge,
    subscriptions: Gauge,
    pub deliveries: Counter,
    pub slow_clients: Counter,
    pub refused_connections: Counter,
}

impl EdgeMetrics {
    pub fn new() -> Self {
        Self {
            connections: metrics::gauge!(CONNECTIONS),
            subscriptions: metrics::gauge!(SUBSCRIPTIONS),
            deliveries: metrics::counter!(DELIVERIES),
            slow_clients: metrics::counter!(SLOW_CLIENTS),
            refused_connections: metrics::counter!(REFUSED_CONNECTIONS),
        }
    }

    /// Counts one open connection until the guard drops.
    pub fn connection(&self) -> Held {
        Held::new(self.connections.clone())
    }

    /// Counts one running subscription until the guard drops.
    pub fn subscription(&self) -> Held {
        Held::new(self.subscriptions.clone())
    }
}

impl Default for EdgeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// One unit of a gauge, given back when dropped.
#[derive(Debug)]
pub struct Held(Gauge);

impl Held {
    fn new(gauge: Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

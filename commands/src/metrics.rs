//! What the write side reports through the `metrics` facade: commands and their outcomes,
//! optimistic-concurrency conflicts, event-store appends, and the relay's outbox and lag. The
//! binary installs the recorder; without one these cost next to nothing.

use std::time::Duration;

use metrics::Unit;

use crate::error::ErrorCode;

pub const COMMANDS: &str = "aether_commands_total";
pub const CONFLICTS: &str = "aether_command_conflicts_total";
pub const APPEND_SECONDS: &str = "aether_event_store_append_duration_seconds";
pub const OUTBOX_DEPTH: &str = "aether_outbox_depth_events";
pub const RELAY_LAG_SECONDS: &str = "aether_relay_lag_seconds";
pub const RELAY_PUBLISHED: &str = "aether_relay_published_events_total";
pub const RELAY_ACTIVE: &str = "aether_relay_active";

pub fn describe() {
    metrics::describe_counter!(
        COMMANDS,
        Unit::Count,
        "Commands handled, by aggregate type and outcome (ok, or the refusal's error code)."
    );
    metrics::describe_counter!(
        CONFLICTS,
        Unit::Count,
        "Appends that lost an optimistic-concurrency race (another writer got there first); \
         the command is reloaded and decided again a few times before CONFLICT is answered."
    );
    metrics::describe_histogram!(
        APPEND_SECONDS,
        Unit::Seconds,
        "Time to append one command's events (and its outbox rows) to the event store."
    );
    metrics::describe_gauge!(
        OUTBOX_DEPTH,
        Unit::Count,
        "Events committed to the event store and not yet confirmed on Kafka (the relay's lag \
         in events)."
    );
    metrics::describe_gauge!(
        RELAY_LAG_SECONDS,
        Unit::Seconds,
        "Age of the oldest event waiting in the outbox, 0 when it is empty."
    );
    metrics::describe_counter!(
        RELAY_PUBLISHED,
        Unit::Count,
        "Events the relay published to Kafka and removed from the outbox."
    );
    metrics::describe_gauge!(
        RELAY_ACTIVE,
        Unit::Count,
        "1 while this relay instance holds the publishing lock, 0 while it stands by."
    );
}

/// The outcome label of a command: `ok`, or the code it was refused with (a fixed set).
pub(crate) fn outcome(result: Result<(), ErrorCode>) -> &'static str {
    match result {
        Ok(()) => "ok",
        Err(code) => code.as_str(),
    }
}

pub(crate) fn command(aggregate: &'static str, outcome: &'static str) {
    metrics::counter!(COMMANDS, "aggregate" => aggregate, "outcome" => outcome).increment(1);
}

pub(crate) fn register_conflicts(aggregate: &'static str) {
    metrics::counter!(CONFLICTS, "aggregate" => aggregate).increment(0);
}

pub(crate) fn conflict(aggregate: &'static str) {
    metrics::counter!(CONFLICTS, "aggregate" => aggregate).increment(1);
}

pub(crate) fn append(backend: &'static str, took: Duration) {
    metrics::histogram!(APPEND_SECONDS, "backend" => backend).record(took);
}

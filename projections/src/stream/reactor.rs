//! Reactors: processes that follow the log like projectors, but whose outcome is new events
//! (commands through the write side), not a read model. Their store keeps only what every
//! projection version keeps (checkpoint, applied sequences, dead letters), so operators list,
//! pause, resume and retry them with `aether projections` like projections. They are never
//! rebuilt, reset or switched: their decisions are already in the log, and replaying the whole
//! history would decide it all again.

use async_trait::async_trait;

use super::postgres::PgProjection;
use super::source::StreamEvent;
use super::store::StoreError;
use crate::projection::{Projection, ProjectionError};
use crate::updates::Update;
use aether_schemas::LoggedEvent;

/// The model stage of moderation (`aether serve --role moderator`, `aether dev --moderator`).
pub const MODERATOR: &str = "moderator";

/// Every reactor, and the event topics it follows.
pub const REACTORS: &[(&str, &[&str])] = &[(MODERATOR, &[aether_schemas::topics::MESSAGE_EVENTS])];

/// Whether `name` is a reactor's (its store holds bookkeeping only).
pub fn is_reactor(name: &str) -> bool {
    reactor(name).is_some()
}

/// Reactor `name`'s bookkeeping, if it is one.
pub fn reactor(name: &str) -> Option<Bookkeeping> {
    REACTORS
        .iter()
        .find(|(reactor, _)| *reactor == name)
        .map(|(reactor, _)| Bookkeeping(reactor))
}

/// What a reactor keeps in its store besides the bookkeeping every projection version has:
/// nothing. Applying an event records only that it was applied.
#[derive(Clone, Copy, Debug)]
pub struct Bookkeeping(&'static str);

impl Bookkeeping {
    /// The moderator's.
    pub const fn moderator() -> Self {
        Self(MODERATOR)
    }
}

#[async_trait]
impl Projection for Bookkeeping {
    fn name(&self) -> &'static str {
        self.0
    }

    fn tables(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    async fn apply(
        &self,
        _tx: &mut sqlx::SqliteConnection,
        _event: &LoggedEvent,
        _updates: &mut Vec<Update>,
    ) -> Result<(), ProjectionError> {
        Ok(())
    }
}

#[async_trait]
impl PgProjection for Bookkeeping {
    fn name(&self) -> &'static str {
        self.0
    }

    fn ddl(&self) -> &'static str {
        ""
    }

    fn dump_queries(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    async fn apply(
        &self,
        _tx: &mut sqlx::PgConnection,
        events: &[(usize, &StreamEvent)],
        _updates: &mut Vec<Update>,
    ) -> Result<usize, StoreError> {
        Ok(events.len())
    }
}

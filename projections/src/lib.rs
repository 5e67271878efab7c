//! The read side: projectors that tail the event log and keep read models, and the queries
//! over those read models.
//!
//! One projector engine ([`stream::StreamProjector`]) serves both modes: it reads a source (the
//! Kafka event topics, or the embedded event store's own log), applies a batch inside one
//! transaction of the read model's store (PostgreSQL, MongoDB, SQLite) together with the new
//! checkpoint, and only then publishes compact [`updates::Update`]s for the realtime edge.
//! Crashing anywhere in between replays the batch, and the per-aggregate sequence guard makes
//! the replay a no-op. Queries read the same stores through [`read::ReadModels`].

pub mod catalog;
pub mod projection;
pub mod read;
pub mod receipts;
pub mod rows;
pub mod sql;
pub mod stream;
pub mod timeline;
pub mod updates;

pub use projection::ProjectionError;
pub use read::ReadModels;
pub use read::Watermarks;
pub use updates::{Update, UpdateBus};

/// Applies the read-model migrations to an SQLite database.
pub async fn migrate(pool: &sqlx::SqlitePool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("./migrations/sqlite").run(pool).await
}

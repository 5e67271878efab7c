//! The read side: projectors that tail the event log and keep read models, and the queries
//! over those read models.
//!
//! A [`runtime::Projector`] reads the log after its checkpoint, applies a batch inside one
//! transaction of the read model's store together with the new checkpoint, and only then
//! publishes compact [`updates::Update`]s for the realtime edge. Crashing anywhere in between
//! replays the batch, and the per-aggregate version guard makes the replay a no-op.

pub mod catalog;
pub mod read;
pub mod receipts;
pub mod rows;
pub mod runtime;
pub mod sql;
pub mod stream;
pub mod timeline;
pub mod updates;

pub use read::ReadModels;
pub use runtime::{ProjectionError, Projector, ProjectorConfig, Watermarks};
pub use updates::{Update, UpdateBus};

/// Applies the read-model migrations to an SQLite database.
pub async fn migrate(pool: &sqlx::SqlitePool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("./migrations/sqlite").run(pool).await
}

//! The embedded mode's projection controls: which of its projections an operator paused, kept in
//! `projections.db` in the data directory. `aether projections pause|resume --data-dir` writes
//! it; a running `aether dev` reads it every [`CONTROLS_POLL`] and pauses or resumes its
//! projectors, and a pause outlives a restart, as the distributed registry's does.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

/// The file in the data directory.
pub const CONTROLS_FILE: &str = "projections.db";

/// How often a running embedded application reads the controls.
pub const CONTROLS_POLL: Duration = Duration::from_millis(500);

#[derive(Clone, Debug)]
pub struct EmbeddedControls {
    pool: SqlitePool,
}

impl EmbeddedControls {
    /// Opens (creating if needed) the controls of the data directory `dir`.
    pub async fn open(dir: &Path) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::new()
            .filename(dir.join(CONTROLS_FILE))
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS projection_controls (
                 name       TEXT    PRIMARY KEY,
                 paused     INTEGER NOT NULL,
                 updated_at TEXT    NOT NULL
             )",
        )
        .execute(&pool)
        .await?;
        Ok(Self { pool })
    }

    /// Whether each projection an operator ever paused or resumed is paused now.
    pub async fn paused(&self) -> Result<HashMap<String, bool>, sqlx::Error> {
        let rows: Vec<(String, bool)> =
            sqlx::query_as("SELECT name, paused FROM projection_controls")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().collect())
    }

    pub async fn set_paused(&self, name: &str, paused: bool) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO projection_controls (name, paused, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET paused = excluded.paused,
                 updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(paused)
        .bind(chrono::Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pause_is_kept_until_resumed_and_seen_by_another_opener() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let operator = EmbeddedControls::open(dir.path()).await?;
        assert!(operator.paused().await?.is_empty());
        operator.set_paused("catalog", true).await?;
        let running = EmbeddedControls::open(dir.path()).await?;
        assert_eq!(running.paused().await?.get("catalog"), Some(&true));
        operator.set_paused("catalog", false).await?;
        operator.set_paused("catalog", false).await?;
        assert_eq!(running.paused().await?.get("catalog"), Some(&false));
        assert_eq!(running.paused().await?.len(), 1);
        Ok(())
    }
}

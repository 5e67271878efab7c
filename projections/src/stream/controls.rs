//! The embedded mode's projection controls: which of its projections an operator paused, and
//! which version of each is live, kept in `projections.db` in the data directory.
//! `aether projections pause|resume|rebuild|switch --data-dir` write it; a running `aether dev`
//! reads it every [`CONTROLS_POLL`], pauses or resumes its projectors and moves to a new live
//! version, and both outlive a restart, as the distributed registry's settings do.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

/// The file in the data directory.
pub const CONTROLS_FILE: &str = "projections.db";

/// How often a running embedded application reads the controls.
pub const CONTROLS_POLL: Duration = Duration::from_millis(500);

/// What the operator set for one projection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Control {
    /// `None` until an operator pauses or resumes it.
    pub paused: Option<bool>,
    pub live_version: i32,
}

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
                 name         TEXT    PRIMARY KEY,
                 paused       INTEGER,
                 live_version INTEGER NOT NULL DEFAULT 1,
                 updated_at   TEXT    NOT NULL
             )",
        )
        .execute(&pool)
        .await?;
        Ok(Self { pool })
    }

    /// Every projection an operator ever paused, resumed or switched, and what they set.
    pub async fn read(&self) -> Result<HashMap<String, Control>, sqlx::Error> {
        let rows: Vec<(String, Option<bool>, i32)> =
            sqlx::query_as("SELECT name, paused, live_version FROM projection_controls")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(name, paused, live_version)| {
                (
                    name,
                    Control {
                        paused,
                        live_version,
                    },
                )
            })
            .collect())
    }

    /// The live version of `name` (1 until an operator switched it).
    pub async fn live_version(&self, name: &str) -> Result<i32, sqlx::Error> {
        Ok(self
            .read()
            .await?
            .get(name)
            .map_or(1, |control| control.live_version))
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

    pub async fn set_live(&self, name: &str, version: i32) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO projection_controls (name, live_version, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET live_version = excluded.live_version,
                 updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(version)
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
    async fn settings_are_kept_and_seen_by_another_opener() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let operator = EmbeddedControls::open(dir.path()).await?;
        assert!(operator.read().await?.is_empty());
        assert_eq!(operator.live_version("catalog").await?, 1);
        operator.set_paused("catalog", true).await?;
        let running = EmbeddedControls::open(dir.path()).await?;
        let set = |paused, live_version| Control {
            paused,
            live_version,
        };
        assert_eq!(
            running.read().await?.get("catalog"),
            Some(&set(Some(true), 1))
        );
        operator.set_live("catalog", 2).await?;
        operator.set_paused("catalog", false).await?;
        assert_eq!(
            running.read().await?.get("catalog"),
            Some(&set(Some(false), 2))
        );
        // Switching alone says nothing about pausing.
        operator.set_live("timeline", 3).await?;
        assert_eq!(running.read().await?.get("timeline"), Some(&set(None, 3)));
        assert_eq!(running.read().await?.len(), 2);
        Ok(())
    }
}

//! The projection registry: which version of each projection is live, which are being built,
//! and whether a projection is paused. It lives in PostgreSQL beside the read models, and
//! projector processes poll it, so an operator's command reaches every instance.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Row};

use super::postgres::unavailable;
use super::store::StoreError;

const TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS projection_registry (
    name         TEXT        PRIMARY KEY,
    live_version INTEGER     NOT NULL,
    paused       BOOLEAN     NOT NULL DEFAULT false,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS projection_builds (
    name        TEXT        NOT NULL,
    version     INTEGER     NOT NULL,
    state       TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    switched_at TIMESTAMPTZ,
    PRIMARY KEY (name, version)
);
"#;

/// The state of one version of a projection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionState {
    /// Being built beside the live version; nobody reads it yet.
    Building,
    /// The version readers use.
    Live,
    /// Replaced by a newer version; kept until an operator drops it.
    Retired,
    /// Its tables or collections are gone.
    Dropped,
}

impl VersionState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Building => "building",
            Self::Live => "live",
            Self::Retired => "retired",
            Self::Dropped => "dropped",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "live" => Self::Live,
            "retired" => Self::Retired,
            "dropped" => Self::Dropped,
            _ => Self::Building,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VersionEntry {
    pub version: i32,
    pub state: VersionState,
    pub created_at: DateTime<Utc>,
    pub switched_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProjectionEntry {
    pub name: String,
    pub live_version: i32,
    pub paused: bool,
    pub versions: Vec<VersionEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("version {version} of {name} is {state}, not {expected}")]
    WrongState {
        name: String,
        version: i32,
        state: &'static str,
        expected: &'static str,
    },
    #[error("{name} has no version {version}")]
    NoSuchVersion { name: String, version: i32 },
}

#[derive(Clone, Debug)]
pub struct Registry {
    pool: PgPool,
}

impl Registry {
    /// Opens the registry, creating its tables if needed.
    pub async fn open(pool: PgPool) -> Result<Self, StoreError> {
        let mut tx = pool.begin().await.map_err(unavailable)?;
        sqlx::query("SET LOCAL client_min_messages TO warning")
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('aether_projection_registry'))")
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        for statement in TABLES.split(';').filter(|s| !s.trim().is_empty()) {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The projection's entry; version 1 is registered live the first time it is asked for.
    pub async fn entry(&self, name: &str) -> Result<ProjectionEntry, StoreError> {
        sqlx::query(
            "WITH registered AS (INSERT INTO projection_registry (name, live_version) \
             VALUES ($1, 1) ON CONFLICT (name) DO NOTHING RETURNING name) \
             INSERT INTO projection_builds (name, version, state, switched_at) \
             SELECT name, 1, 'live', now() FROM registered ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        self.find(name).await?.ok_or_else(|| {
            StoreError::Unavailable(format!("projection {name} vanished from the registry"))
        })
    }

    /// The live version of every projection ever run.
    pub async fn live_versions(
        &self,
    ) -> Result<std::collections::HashMap<String, i32>, StoreError> {
        let rows: Vec<(String, i32)> =
            sqlx::query_as("SELECT name, live_version FROM projection_registry")
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
        Ok(rows.into_iter().collect())
    }

    /// The projection's entry, if it was ever run.
    pub async fn find(&self, name: &str) -> Result<Option<ProjectionEntry>, StoreError> {
        let Some(row) =
            sqlx::query("SELECT live_version, paused FROM projection_registry WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?
        else {
            return Ok(None);
        };
        let versions = sqlx::query(
            "SELECT version, state, created_at, switched_at FROM projection_builds \
             WHERE name = $1 ORDER BY version",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?
        .into_iter()
        .map(|row| VersionEntry {
            version: row.get(0),
            state: VersionState::parse(row.get(1)),
            created_at: row.get(2),
            switched_at: row.get(3),
        })
        .collect();
        Ok(Some(ProjectionEntry {
            name: name.to_owned(),
            live_version: row.get(0),
            paused: row.get(1),
            versions,
        }))
    }

    pub async fn set_paused(&self, name: &str, paused: bool) -> Result<(), StoreError> {
        self.entry(name).await?;
        sqlx::query(
            "UPDATE projection_registry SET paused = $2, updated_at = now() WHERE name = $1",
        )
        .bind(name)
        .bind(paused)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    /// Registers the next version as `building` and returns its number.
    pub async fn begin_build(&self, name: &str) -> Result<i32, StoreError> {
        self.entry(name).await?;
        let version: i32 = sqlx::query_scalar(
            "INSERT INTO projection_builds (name, version, state) \
             SELECT $1, COALESCE(MAX(version), 0) + 1, 'building' FROM projection_builds \
             WHERE name = $1 RETURNING version",
        )
        .bind(name)
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(version)
    }

    /// Makes `version` live and retires the previous live version, atomically: readers and
    /// projector processes see either the old or the new version, never neither.
    pub async fn switch(&self, name: &str, version: i32) -> Result<i32, RegistryError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let previous: i32 = sqlx::query_scalar(
            "SELECT live_version FROM projection_registry WHERE name = $1 FOR UPDATE",
        )
        .bind(name)
        .fetch_one(&mut *tx)
        .await
        .map_err(unavailable)?;
        let state: Option<String> = sqlx::query_scalar(
            "SELECT state FROM projection_builds WHERE name = $1 AND version = $2",
        )
        .bind(name)
        .bind(version)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        match state.as_deref().map(VersionState::parse) {
            None => {
                return Err(RegistryError::NoSuchVersion {
                    name: name.to_owned(),
                    version,
                })
            }
            Some(VersionState::Building | VersionState::Retired) => {}
            Some(state) => {
                return Err(RegistryError::WrongState {
                    name: name.to_owned(),
                    version,
                    state: state.as_str(),
                    expected: "building or retired",
                })
            }
        }
        sqlx::query(
            "UPDATE projection_builds SET state = 'retired' WHERE name = $1 AND version = $2",
        )
        .bind(name)
        .bind(previous)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        sqlx::query(
            "UPDATE projection_builds SET state = 'live', switched_at = now() \
             WHERE name = $1 AND version = $2",
        )
        .bind(name)
        .bind(version)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        sqlx::query(
            "UPDATE projection_registry SET live_version = $2, updated_at = now() WHERE name = $1",
        )
        .bind(name)
        .bind(version)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(previous)
    }

    /// Records that a version's tables are gone; the live version cannot be dropped.
    pub async fn mark_dropped(&self, name: &str, version: i32) -> Result<(), RegistryError> {
        let entry = self.entry(name).await?;
        let Some(found) = entry.versions.iter().find(|v| v.version == version) else {
            return Err(RegistryError::NoSuchVersion {
                name: name.to_owned(),
                version,
            });
        };
        if found.state == VersionState::Live {
            return Err(RegistryError::WrongState {
                name: name.to_owned(),
                version,
                state: "live",
                expected: "building or retired",
            });
        }
        sqlx::query(
            "UPDATE projection_builds SET state = 'dropped' WHERE name = $1 AND version = $2",
        )
        .bind(name)
        .bind(version)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }
}

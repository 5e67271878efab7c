//! Real servers for tests, isolated per test: a fresh PostgreSQL database and a fresh Kafka
//! topic prefix each time. `scripts/test.sh` starts the servers; these helpers only connect.
//!
//! Where they are: `AETHER_TEST_POSTGRES` (default
//! `postgres://postgres:postgres@127.0.0.1:5432/postgres`) and `AETHER_TEST_KAFKA` (default
//! `127.0.0.1:9092`).

use aether_kafka::KafkaConfig;
use sqlx::{Connection, PgConnection, PgPool};

pub fn postgres_admin_url() -> String {
    std::env::var("AETHER_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_owned())
}

pub fn kafka_bootstrap() -> String {
    std::env::var("AETHER_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// A database that exists only for one test.
#[derive(Debug)]
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    /// Creates `aether_test_<random>` and returns its URL.
    pub async fn create() -> Result<Self, sqlx::Error> {
        let admin_url = postgres_admin_url();
        let name = format!("aether_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(base, _)| base);
        Ok(Self {
            url: format!("{base}/{name}"),
            name,
        })
    }

    pub async fn pool(&self) -> Result<PgPool, sqlx::Error> {
        PgPool::connect(&self.url).await
    }

    /// Drops the database (after the test's pools are closed).
    pub async fn drop_database(self) -> Result<(), sqlx::Error> {
        let mut admin = PgConnection::connect(&postgres_admin_url()).await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await?;
        admin.close().await
    }
}

/// Kafka settings whose topics belong to this test alone.
pub fn kafka_config(partitions: i32) -> KafkaConfig {
    KafkaConfig {
        bootstrap: kafka_bootstrap(),
        topic_prefix: format!("t{}.", uuid::Uuid::new_v4().simple()),
        partitions,
        ..KafkaConfig::default()
    }
}

/// An event of the `GroupCommitProbe` test aggregate, for event-store tests that need raw
/// appends: `note` tells the writer apart.
pub fn probe_event(id: &str, sequence: usize, note: &str) -> cqrs_es::persist::SerializedEvent {
    cqrs_es::persist::SerializedEvent {
        aggregate_id: id.to_owned(),
        sequence,
        aggregate_type: "GroupCommitProbe".to_owned(),
        event_type: "Probed".to_owned(),
        event_version: "1".to_owned(),
        payload: serde_json::json!({ "Probed": { "note": note } }),
        metadata: serde_json::json!({}),
    }
}

//! `aether projections … --data-dir DIR`: the operator's view of the embedded mode's
//! projectors, whose read models are SQLite files in the data directory (one per projection
//! version) and whose source is the event store there (`events.db`).

use std::path::Path;
use std::sync::Arc;

use aether_projections::stream::source::EventLogSource;
use aether_projections::stream::sqlite::{embedded_projection, SqliteStore, EMBEDDED_PROJECTIONS};
use aether_projections::stream::ReadStore;
use anyhow::Context;
use sqlx::sqlite::SqliteConnectOptions;

use crate::projections::{print_dead_letters, retry, ProjectionsCommand, Refused};

/// The version every embedded projection runs.
const VERSION: i32 = 1;

pub async fn run(command: ProjectionsCommand, dir: &Path) -> anyhow::Result<()> {
    if !dir.join("events.db").exists() {
        return Err(Refused(format!(
            "{} holds no event store (events.db): is it `aether dev --data-dir`?",
            dir.display()
        ))
        .into());
    }
    match command {
        ProjectionsCommand::List { json, .. } => list(dir, json).await,
        ProjectionsCommand::DeadLetters { name, json, .. } => {
            let store = open(dir, &name).await?;
            print_dead_letters(&name, &store.dead_letters().await?, json)
        }
        ProjectionsCommand::Retry { name, .. } => {
            retry(&name, open(dir, &name).await?.as_ref()).await
        }
        ProjectionsCommand::Dump { name, version, .. } => {
            if version.is_some_and(|version| version != VERSION) {
                return Err(Refused(format!("the embedded mode keeps only v{VERSION}")).into());
            }
            let dump = open(dir, &name).await?.dump().await?;
            println!("{}", serde_json::to_string_pretty(&dump)?);
            Ok(())
        }
        ProjectionsCommand::Pause { .. }
        | ProjectionsCommand::Resume { .. }
        | ProjectionsCommand::Reset { .. }
        | ProjectionsCommand::Rebuild { .. }
        | ProjectionsCommand::Switch { .. }
        | ProjectionsCommand::Drop { .. } => Err(Refused(
            "the embedded mode keeps one version of each projection: to rebuild one, stop \
             `aether dev`, delete its file (e.g. DIR/catalog_v1.db) and start again; it is \
             rebuilt from events.db"
                .to_owned(),
        )
        .into()),
    }
}

async fn open(dir: &Path, name: &str) -> anyhow::Result<Arc<SqliteStore>> {
    let Some(projection) = embedded_projection(name) else {
        return Err(Refused(format!(
            "unknown projection {name:?}; the embedded mode keeps {}",
            EMBEDDED_PROJECTIONS.join(", ")
        ))
        .into());
    };
    let store = Arc::new(SqliteStore::new(dir, projection, VERSION));
    store.prepare().await?;
    Ok(store)
}

/// The newest position of the event store, read without writing to it.
async fn log_head(dir: &Path) -> anyhow::Result<i64> {
    let options = SqliteConnectOptions::new()
        .filename(dir.join("events.db"))
        .read_only(true);
    let pool = sqlx::SqlitePool::connect_with(options)
        .await
        .context("cannot open the event store")?;
    let head: Option<i64> = sqlx::query_scalar("SELECT max(position) FROM events")
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    Ok(head.unwrap_or(0))
}

#[derive(serde::Serialize)]
struct ListRow {
    name: &'static str,
    store: &'static str,
    version: i32,
    checkpoint: i64,
    lag_events: i64,
    dead_letters: usize,
}

async fn list(dir: &Path, json: bool) -> anyhow::Result<()> {
    let head = log_head(dir).await?;
    let mut rows = Vec::new();
    for name in EMBEDDED_PROJECTIONS {
        let store = open(dir, name).await?;
        let applied = EventLogSource::position(&store.checkpoint().await?);
        rows.push(ListRow {
            name,
            store: "SQLite",
            version: VERSION,
            checkpoint: applied,
            lag_events: (head - applied).max(0),
            dead_letters: store.dead_letters().await?.len(),
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<10} {:<7} {:>7} {:>11} {:>10} {:>12}",
        "NAME", "STORE", "VERSION", "CHECKPOINT", "LAG", "DEAD LETTERS"
    );
    for row in rows {
        println!(
            "{:<10} {:<7} {:>7} {:>11} {:>10} {:>12}",
            row.name,
            row.store,
            format!("v{}", row.version),
            row.checkpoint,
            row.lag_events,
            row.dead_letters
        );
    }
    Ok(())
}

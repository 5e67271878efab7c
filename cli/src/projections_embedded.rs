//! `aether projections … --data-dir DIR`: the operator's view of the embedded mode's
//! projectors, whose read models are SQLite files in the data directory (one per projection
//! version) and whose source is the event store there (`events.db`).

use std::path::Path;
use std::sync::Arc;

use aether_projections::stream::controls::EmbeddedControls;
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
        ProjectionsCommand::Pause { name, .. } => set_paused(dir, &name, true).await,
        ProjectionsCommand::Resume { name, .. } => set_paused(dir, &name, false).await,
        ProjectionsCommand::Reset { .. }
        | ProjectionsCommand::Rebuild { .. }
        | ProjectionsCommand::Switch { .. }
        | ProjectionsCommand::Drop { .. } => Err(Refused(
            "the embedded mode keeps one version of each projection (pause and resume work): to \
             rebuild one, stop `aether dev`, delete its file (e.g. DIR/catalog_v1.db) and start again; it is \
             rebuilt from events.db"
                .to_owned(),
        )
        .into()),
    }
}

/// Pauses or resumes `name` for the `aether dev` running on `dir` (within half a second) and
/// for its next start.
async fn set_paused(dir: &Path, name: &str, paused: bool) -> anyhow::Result<()> {
    known(name)?;
    let controls = EmbeddedControls::open(dir)
        .await
        .context("cannot open the projection controls")?;
    controls.set_paused(name, paused).await?;
    controls.close().await;
    if paused {
        println!(
            "{name}: paused (a running `aether dev` stops applying events within a second; \
             queries answer from what it had applied)"
        );
    } else {
        println!("{name}: resumed");
    }
    Ok(())
}

fn known(name: &str) -> anyhow::Result<Arc<dyn aether_projections::projection::Projection>> {
    embedded_projection(name).ok_or_else(|| {
        Refused(format!(
            "unknown projection {name:?}; the embedded mode keeps {}",
            EMBEDDED_PROJECTIONS.join(", ")
        ))
        .into()
    })
}

async fn open(dir: &Path, name: &str) -> anyhow::Result<Arc<SqliteStore>> {
    let projection = known(name)?;
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
    paused: bool,
    checkpoint: i64,
    lag_events: i64,
    dead_letters: usize,
}

async fn list(dir: &Path, json: bool) -> anyhow::Result<()> {
    let head = log_head(dir).await?;
    let controls = EmbeddedControls::open(dir)
        .await
        .context("cannot open the projection controls")?;
    let paused = controls.paused().await?;
    controls.close().await;
    let mut rows = Vec::new();
    for name in EMBEDDED_PROJECTIONS {
        let store = open(dir, name).await?;
        let applied = EventLogSource::position(&store.checkpoint().await?);
        rows.push(ListRow {
            name,
            store: "SQLite",
            version: VERSION,
            paused: paused.get(name).copied().unwrap_or(false),
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
        "{:<10} {:<7} {:>7} {:<7} {:>11} {:>10} {:>12}",
        "NAME", "STORE", "VERSION", "STATE", "CHECKPOINT", "LAG", "DEAD LETTERS"
    );
    for row in rows {
        println!(
            "{:<10} {:<7} {:>7} {:<7} {:>11} {:>10} {:>12}",
            row.name,
            row.store,
            format!("v{}", row.version),
            if row.paused { "paused" } else { "running" },
            row.checkpoint,
            row.lag_events,
            row.dead_letters
        );
    }
    Ok(())
}

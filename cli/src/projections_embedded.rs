//! `aether projections … --data-dir DIR`: the operator's view of the embedded mode's
//! projectors, whose read models are SQLite files in the data directory (one per projection
//! version) and whose source is the event store there (`events.db`).

use std::path::Path;
use std::sync::Arc;

use aether_commands::SqliteEventStore;
use aether_projections::stream::controls::EmbeddedControls;
use aether_projections::stream::engine::{NoUpdates, ProjectorOptions, StreamProjector};
use aether_projections::stream::reactor::{is_reactor, reactor, MODERATOR, REACTORS};
use aether_projections::stream::source::{EventLogSource, EventSource};
use aether_projections::stream::sqlite::{embedded_projection, SqliteStore, EMBEDDED_PROJECTIONS};
use aether_projections::stream::ProjectorMetrics;
use aether_projections::stream::ReadStore;
use anyhow::Context;
use sqlx::sqlite::SqliteConnectOptions;

use crate::projections::{print_dead_letters, retry, ProjectionsCommand, Refused};

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
            let store = open(dir, &name, None).await?;
            print_dead_letters(&name, &store.dead_letters().await?, json)
        }
        ProjectionsCommand::Retry { name, .. } => {
            retry(&name, open(dir, &name, None).await?.as_ref()).await
        }
        ProjectionsCommand::Dump { name, version, .. } => {
            let dump = open(dir, &name, version).await?.dump().await?;
            println!("{}", serde_json::to_string_pretty(&dump)?);
            Ok(())
        }
        ProjectionsCommand::Pause { name, .. } => set_paused(dir, &name, true).await,
        ProjectionsCommand::Resume { name, .. } => set_paused(dir, &name, false).await,
        ProjectionsCommand::Rebuild {
            name,
            batch,
            no_switch,
            ..
        } => rebuild(dir, &name, batch, no_switch).await,
        ProjectionsCommand::Switch { name, version, .. } => switch(dir, &name, version).await,
        ProjectionsCommand::Drop { name, version, .. } => drop_version(dir, &name, version).await,
        ProjectionsCommand::Reset { .. } => Err(Refused(
            "the embedded mode does not reset a live version in place: `aether projections \
             rebuild NAME --data-dir DIR` builds a new one beside it and switches"
                .to_owned(),
        )
        .into()),
    }
}

/// The versions of `name` that have a file in `dir`, in order.
fn versions_on_disk(dir: &Path, name: &str) -> anyhow::Result<Vec<i32>> {
    let prefix = format!("{name}_v");
    let mut versions: Vec<i32> = std::fs::read_dir(dir)?
        .filter_map(|entry| {
            let file = entry.ok()?.file_name().into_string().ok()?;
            file.strip_prefix(&prefix)?
                .strip_suffix(".db")?
                .parse()
                .ok()
        })
        .collect();
    versions.sort_unstable();
    Ok(versions)
}

async fn controls(dir: &Path) -> anyhow::Result<EmbeddedControls> {
    EmbeddedControls::open(dir)
        .await
        .context("cannot open the projection controls")
}

/// Builds a new version of `name` from `events.db` beside the live one (a running `aether dev`
/// keeps serving and applying to the live one), then makes it live unless `no_switch`: the
/// running application catches it up past the live version and moves its readers over.
async fn rebuild(dir: &Path, name: &str, batch: usize, no_switch: bool) -> anyhow::Result<()> {
    let projection = known(name)?;
    let controls = controls(dir).await?;
    let live = controls.live_version(name).await?;
    let version = versions_on_disk(dir, name)?
        .into_iter()
        .chain([live])
        .max()
        .unwrap_or(1)
        + 1;
    let store = Arc::new(SqliteStore::new(dir, projection, version));
    store.prepare().await?;
    eprintln!("{name}: building v{version} from events.db");
    let events = SqliteEventStore::open(&dir.join("events.db"))
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the event store: {e}"))?;
    let projector = StreamProjector::new(
        store.clone(),
        Arc::new(EventLogSource::new(Arc::new(events))) as Arc<dyn EventSource>,
        Arc::new(NoUpdates),
        ProjectorOptions {
            batch_size: batch.max(1),
            stop_when_caught_up: true,
            ..ProjectorOptions::default()
        },
        Arc::new(ProjectorMetrics::new(name, version)),
    );
    let (_paused, paused) = tokio::sync::watch::channel(false);
    projector
        .run(paused, tokio_util::sync::CancellationToken::new())
        .await?;
    let applied = EventLogSource::position(&store.checkpoint().await?);
    drop(store);
    if no_switch {
        println!(
            "{name} v{version}: built (up to position {applied}); switch with `aether projections \
             switch {name} {version} --data-dir {}`",
            dir.display()
        );
        return Ok(());
    }
    controls.set_live(name, version).await?;
    controls.close().await;
    println!(
        "{name}: v{version} is live (built up to position {applied}); a running `aether dev` \
         catches it up and moves its queries to it within a second; v{live} stays until \
         `aether projections drop {name} {live} --data-dir {}`",
        dir.display()
    );
    Ok(())
}

/// Makes `version` of `name` live (a built one, or an earlier one: rolls back too).
async fn switch(dir: &Path, name: &str, version: i32) -> anyhow::Result<()> {
    known(name)?;
    if !versions_on_disk(dir, name)?.contains(&version) {
        return Err(Refused(format!(
            "{name} has no version {version} in {}",
            dir.display()
        ))
        .into());
    }
    let controls = controls(dir).await?;
    let previous = controls.live_version(name).await?;
    controls.set_live(name, version).await?;
    controls.close().await;
    println!("{name}: v{version} is live (was v{previous})");
    Ok(())
}

/// Deletes a version of `name` that is not live.
async fn drop_version(dir: &Path, name: &str, version: i32) -> anyhow::Result<()> {
    let projection = known(name)?;
    let controls = controls(dir).await?;
    let live = controls.live_version(name).await?;
    controls.close().await;
    if version == live {
        return Err(Refused(format!("v{version} of {name} is live: switch first")).into());
    }
    if !versions_on_disk(dir, name)?.contains(&version) {
        return Err(Refused(format!(
            "{name} has no version {version} in {}",
            dir.display()
        ))
        .into());
    }
    let store = SqliteStore::new(dir, projection, version);
    let path = store.path().to_path_buf();
    for suffix in ["", "-wal", "-shm"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(error).with_context(|| format!("cannot delete {}", file.display()))
            }
        }
    }
    println!("{name}: v{version} dropped");
    Ok(())
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
    if paused && is_reactor(name) {
        println!(
            "{name}: paused (a running `aether dev` stops it within a second; messages are \
             delivered meanwhile and judged when it resumes)"
        );
    } else if paused {
        println!(
            "{name}: paused (a running `aether dev` stops applying events within a second; \
             queries answer from what it had applied)"
        );
    } else {
        println!("{name}: resumed");
    }
    Ok(())
}

/// Projection `name`, or reactor `name`'s bookkeeping.
fn known(name: &str) -> anyhow::Result<Arc<dyn aether_projections::projection::Projection>> {
    if let Some(bookkeeping) = reactor(name) {
        return Ok(Arc::new(bookkeeping));
    }
    embedded_projection(name).ok_or_else(|| {
        Refused(format!(
            "unknown projection {name:?}; the embedded mode keeps {} (and the {} reactor when \
             `aether dev --moderator` runs)",
            EMBEDDED_PROJECTIONS.join(", "),
            MODERATOR
        ))
        .into()
    })
}

/// Version `version` of `name` (the live one if `None`), which must exist.
async fn open(dir: &Path, name: &str, version: Option<i32>) -> anyhow::Result<Arc<SqliteStore>> {
    let projection = known(name)?;
    let version = match version {
        Some(version) => version,
        None => {
            let controls = controls(dir).await?;
            let live = controls.live_version(name).await?;
            controls.close().await;
            live
        }
    };
    if version != 1 && !versions_on_disk(dir, name)?.contains(&version) {
        return Err(Refused(format!(
            "{name} has no version {version} in {}",
            dir.display()
        ))
        .into());
    }
    let store = Arc::new(SqliteStore::new(dir, projection, version));
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
    let set = controls.read().await?;
    controls.close().await;
    let mut rows = Vec::new();
    // A reactor is listed once it has run here (its bookkeeping file exists).
    let reactors = REACTORS
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| dir.join(format!("{name}_v1.db")).exists());
    for name in EMBEDDED_PROJECTIONS.into_iter().chain(reactors) {
        let control = set.get(name);
        let version = control.map_or(1, |control| control.live_version);
        let store = open(dir, name, Some(version)).await?;
        let applied = EventLogSource::position(&store.checkpoint().await?);
        rows.push(ListRow {
            name,
            store: "SQLite",
            version,
            paused: control.and_then(|control| control.paused).unwrap_or(false),
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

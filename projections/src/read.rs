//! The read-model port: every query the API and the subscriptions make, answered from the
//! projectors' own stores and nothing else.
//!
//! - Embedded mode: one SQLite file holds the catalog, receipts and timeline tables.
//! - Distributed mode: PostgreSQL holds the catalog and receipts (each version in its own
//!   schema, `catalog_v2`), MongoDB the timeline (collections prefixed `timeline_v2_`). Which
//!   version is live comes from the projection registry, so a switch reaches every query
//!   within [`REGISTRY_TTL`] and no instance restarts.
//!
//! Every method answers from projected state only; callers decide what the asking user may
//! see, with [`ReadModels::channel_access`] and [`ReadModels::member_role`]. Read-your-own-write
//! is [`ReadModels::wait_applied`]: the stores' per-aggregate applied sequence, shared by every
//! instance.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use aether_domain::{ChannelAccess, ChannelFacts, ChannelId, MessageId, Role, ServerId, UserId};
use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use sqlx::PgPool;

use crate::receipts::{ReadStateRow, READ_POINTER_QUERY, UNREAD_QUERY};
use crate::rows::{
    parse_id, parse_optional_id, parse_role, BanRow, ChannelEventKind, ChannelEventRow, ChannelRow,
    ConversationRow, MemberRow, MessageRow, RowError, ServerEventRow, ServerRow, UserRow,
};
use crate::sql::{SqlReader, SqlRow, SqlValue};
use crate::stream::mongo::collection_prefix;
use crate::stream::mongo::timeline::{message_from_document, reaction_from_document};
use crate::stream::postgres::schema_name;
use crate::stream::registry::Registry;
use crate::stream::source::{Checkpoint, EventLogSource};
use crate::timeline::MESSAGE_COLUMNS;

/// Which end of a channel's history a page is taken from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageFrom {
    /// The oldest messages after the cursor.
    Start,
    /// The newest messages before the cursor.
    End,
}

/// One numbered run of messages in the timeline: the messages whose `key` column is `id`,
/// numbered by `seq`.
struct NumberedRun {
    key: &'static str,
    id: String,
    seq: &'static str,
    /// Leave out thread replies not also sent to the channel.
    in_channel_only: bool,
}

/// How long a distributed instance trusts its copy of the registry's live versions: the
/// longest a query may still read a version after an operator switched away from it.
pub const REGISTRY_TTL: Duration = Duration::from_millis(250);

/// The read models an API or edge instance queries.
#[derive(Clone, Debug)]
pub struct ReadModels {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Replaced when the embedded mode switches a projection's version.
    sql: RwLock<SqlReader>,
    layout: Layout,
    timeline: Timeline,
    /// Wakes read-your-own-write waits when an in-process projector commits.
    progress: Option<Watermarks>,
}

/// Where the SQL projections' tables are.
#[derive(Debug)]
enum Layout {
    /// SQLite: each projection's live version file attached under its version's name
    /// (`catalog_v1`), as PostgreSQL keeps each version in a schema of that name.
    Attached(Attached),
    /// One schema per version; the live one from the registry.
    Versioned(LiveVersions),
}

/// The embedded mode's files: which version of each projection is attached.
#[derive(Debug)]
struct Attached {
    dir: std::path::PathBuf,
    versions: RwLock<Versions>,
    /// Every (projection, version) file the pool attaches.
    files: tokio::sync::Mutex<std::collections::BTreeSet<(String, i32)>>,
    /// One switch at a time.
    switching: tokio::sync::Mutex<()>,
}

/// A pool of private in-memory databases with each projection's version file in `dir`
/// attached under its version's name. (With SQLite's in-memory open flag the attached files
/// would be in memory too.)
async fn attached_pool(
    dir: &std::path::Path,
    files: &std::collections::BTreeSet<(String, i32)>,
) -> Result<sqlx::SqlitePool, RowError> {
    let attach: Vec<(std::path::PathBuf, String)> = files
        .iter()
        .map(|(projection, version)| {
            let name = schema_name(projection, *version);
            let path = dir.join(format!("{name}.db"));
            let quoted = path.display().to_string().replace('\'', "''");
            (path, format!("ATTACH DATABASE '{quoted}' AS {name}"))
        })
        .collect();
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(":memory:")
        .busy_timeout(Duration::from_secs(5));
    Ok(sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(8)
        .after_connect(move |conn, _| {
            let attach = attach.clone();
            Box::pin(async move {
                // A version dropped since is left out: attaching a missing file would create
                // it again.
                for (path, statement) in &attach {
                    if path.exists() {
                        sqlx::query(statement).execute(&mut *conn).await?;
                    }
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await?)
}

#[derive(Debug)]
enum Timeline {
    /// Tables beside the others: the embedded files, or the live version's PostgreSQL schema.
    Sql,
    /// MongoDB collections of the live version.
    Mongo(mongodb::Database),
}

/// The projections a query depends on, by name (the registry's and the stores').
const CATALOG: &str = "catalog";
const RECEIPTS: &str = "receipts";
const TIMELINE: &str = "timeline";

/// The embedded mode's version of every projection.
const EMBEDDED_VERSION: i32 = 1;

/// The live version of each projection, by name.
type Versions = Arc<HashMap<String, i32>>;

tokio::task_local! {
    /// The live versions one request reads, set by its first read.
    static PINNED: Arc<std::sync::OnceLock<Versions>>;
}

/// Runs `request` (one query or mutation) with one view of the registry: every read it makes
/// uses the live versions its first read found, so a switch while it runs cannot answer one
/// field from the old version and another from the new one. The reads must run in this task
/// (async-graphql resolves a request's fields in the task that executes it).
pub async fn with_pinned_versions<F: std::future::Future>(request: F) -> F::Output {
    PINNED
        .scope(Arc::new(std::sync::OnceLock::new()), request)
        .await
}

/// The stream counterpart of [`with_pinned_versions`], for an operation that arrives over a
/// WebSocket: each item `stream` yields is produced with one view of the registry (its first
/// read's), and the next item reads the live versions afresh. Meant for queries and mutations
/// (one item); a subscription must not be pinned while it waits, or a switch and a drop of the
/// old version would leave it reading a dropped one.
pub fn with_pinned_versions_per_item<S: futures::Stream>(
    stream: S,
) -> impl futures::Stream<Item = S::Item> {
    let mut stream = Box::pin(stream);
    let mut pin = Arc::new(std::sync::OnceLock::new());
    futures::stream::poll_fn(move |cx| {
        let polled = PINNED.sync_scope(Arc::clone(&pin), || stream.as_mut().poll_next(cx));
        if polled.is_ready() {
            pin = Arc::new(std::sync::OnceLock::new());
        }
        polled
    })
}

/// The registry's live versions, cached for [`REGISTRY_TTL`].
#[derive(Debug)]
struct LiveVersions {
    registry: Registry,
    /// When they were read, and what they were.
    cached: RwLock<Option<(Instant, Versions)>>,
    refresh: tokio::sync::Mutex<()>,
}

impl LiveVersions {
    async fn version(&self, name: &str) -> Result<i32, RowError> {
        let versions = match PINNED.try_with(Arc::clone) {
            // Inside one request: the versions of its first read, for all of its reads.
            Ok(pin) => match pin.get() {
                Some(pinned) => pinned.clone(),
                None => {
                    let current = self.current().await?;
                    pin.get_or_init(|| current).clone()
                }
            },
            Err(_) => self.current().await?,
        };
        Ok(versions.get(name).copied().unwrap_or(1))
    }

    async fn current(&self) -> Result<Versions, RowError> {
        if let Some(fresh) = self.fresh() {
            return Ok(fresh);
        }
        // One caller refreshes; the others wait for its answer instead of asking too.
        let _turn = self.refresh.lock().await;
        if let Some(fresh) = self.fresh() {
            return Ok(fresh);
        }
        let versions = Arc::new(
            self.registry
                .live_versions()
                .await
                .map_err(|error| RowError::Unavailable(error.to_string()))?,
        );
        *self.cached.write().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), versions.clone()));
        Ok(versions)
    }

    fn fresh(&self) -> Option<Versions> {
        let cached = self.cached.read().unwrap_or_else(|p| p.into_inner());
        cached
            .as_ref()
            .filter(|(at, _)| at.elapsed() < REGISTRY_TTL)
            .map(|(_, versions)| versions.clone())
    }
}

fn text(value: impl ToString) -> SqlValue {
    SqlValue::Text(value.to_string())
}

fn all<T>(rows: &[SqlRow], map: fn(&SqlRow) -> Result<T, RowError>) -> Result<Vec<T>, RowError> {
    rows.iter().map(map).collect()
}

fn mongo_error(error: mongodb::error::Error) -> RowError {
    RowError::Unavailable(error.to_string())
}

impl ReadModels {
    /// The embedded mode's read models: the SQLite files the in-process projectors keep in
    /// `dir` (`catalog_v1.db`, `receipts_v1.db`, `timeline_v1.db`), whose checkpoints wake
    /// read-your-own-write waits.
    pub async fn embedded(dir: &std::path::Path, progress: Watermarks) -> Result<Self, RowError> {
        Self::embedded_versions(dir, &HashMap::new(), progress).await
    }

    /// As [`Self::embedded`], reading version `versions[name]` of each projection named there
    /// (1 for the others).
    pub async fn embedded_versions(
        dir: &std::path::Path,
        versions: &HashMap<String, i32>,
        progress: Watermarks,
    ) -> Result<Self, RowError> {
        let versions: HashMap<String, i32> = [CATALOG, RECEIPTS, TIMELINE]
            .iter()
            .map(|name| {
                let version = versions.get(*name).copied().unwrap_or(EMBEDDED_VERSION);
                ((*name).to_owned(), version)
            })
            .collect();
        let files = versions
            .iter()
            .map(|(name, version)| (name.clone(), *version))
            .collect();
        let pool = attached_pool(dir, &files).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                sql: RwLock::new(SqlReader::Sqlite(pool)),
                layout: Layout::Attached(Attached {
                    dir: dir.to_path_buf(),
                    versions: RwLock::new(Arc::new(versions)),
                    files: tokio::sync::Mutex::new(files),
                    switching: tokio::sync::Mutex::new(()),
                }),
                timeline: Timeline::Sql,
                progress: Some(progress),
            }),
        })
    }

    /// Embedded mode: from now on, queries read `version` of `projection` (its file in the
    /// data directory, which must exist). Queries under way finish on the version they began
    /// with; the previous version's file is let go.
    pub async fn switch_embedded(&self, projection: &str, version: i32) -> Result<(), RowError> {
        let Layout::Attached(attached) = &self.inner.layout else {
            return Err(RowError::Unavailable(
                "only the embedded mode switches versions in process".to_owned(),
            ));
        };
        let _turn = attached.switching.lock().await;
        let mut versions =
            HashMap::clone(&attached.versions.read().unwrap_or_else(|p| p.into_inner()));
        versions.insert(projection.to_owned(), version);
        // The new pool keeps every version attached so far: a query that read the version just
        // before the switch still finds its tables, whichever pool it then runs on. The old
        // pool is not closed under queries that hold it; it goes when the last of them is done.
        let mut files = attached.files.lock().await;
        files.insert((projection.to_owned(), version));
        let pool = attached_pool(&attached.dir, &files).await?;
        *self.inner.sql.write().unwrap_or_else(|p| p.into_inner()) = SqlReader::Sqlite(pool);
        *attached.versions.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(versions);
        Ok(())
    }

    /// The distributed mode's read models: the projector processes' PostgreSQL schemas and
    /// MongoDB collections, whichever versions the registry says are live. The timeline is read
    /// from `mongo` when given, else from PostgreSQL (`timeline_vN`) like the others.
    pub async fn distributed(
        postgres: PgPool,
        mongo: Option<mongodb::Database>,
    ) -> Result<Self, RowError> {
        let registry = Registry::open(postgres.clone())
            .await
            .map_err(|error| RowError::Unavailable(error.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                sql: RwLock::new(SqlReader::Postgres(postgres)),
                layout: Layout::Versioned(LiveVersions {
                    registry,
                    cached: RwLock::new(None),
                    refresh: tokio::sync::Mutex::new(()),
                }),
                timeline: mongo.map_or(Timeline::Sql, Timeline::Mongo),
                progress: None,
            }),
        })
    }

    /// Closes the pools this value owns (the embedded mode's attached files).
    pub async fn close(&self) {
        if matches!(self.inner.layout, Layout::Attached(_)) {
            self.reader().close().await;
        }
    }

    /// Forgets the cached live versions, so the next query asks the registry.
    pub fn forget_live_versions(&self) {
        if let Layout::Versioned(live) = &self.inner.layout {
            *live.cached.write().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    /// The prefix that qualifies `projection`'s tables: `name_vN.`, the live version's
    /// schema (PostgreSQL) or attached file (SQLite).
    async fn tables(&self, projection: &str) -> Result<String, RowError> {
        Ok(format!(
            "{}.",
            schema_name(projection, self.version(projection).await?)
        ))
    }

    async fn version(&self, projection: &str) -> Result<i32, RowError> {
        match &self.inner.layout {
            Layout::Attached(attached) => Ok(attached
                .versions
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(projection)
                .copied()
                .unwrap_or(EMBEDDED_VERSION)),
            Layout::Versioned(live) => live.version(projection).await,
        }
    }

    /// A collection of the live timeline version.
    async fn collection(
        &self,
        database: &mongodb::Database,
        name: &str,
    ) -> Result<mongodb::Collection<Document>, RowError> {
        let version = self.version(TIMELINE).await?;
        Ok(database.collection(&format!("{}{name}", collection_prefix(TIMELINE, version))))
    }

    /// The pool queries run on now.
    fn reader(&self) -> SqlReader {
        self.inner
            .sql
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn one(&self, sql: &str, values: Vec<SqlValue>) -> Result<Option<SqlRow>, RowError> {
        Ok(self.reader().one(sql, values).await?)
    }

    async fn rows(&self, sql: &str, values: Vec<SqlValue>) -> Result<Vec<SqlRow>, RowError> {
        Ok(self.reader().all(sql, values).await?)
    }

    pub async fn user(&self, id: UserId) -> Result<Option<UserRow>, RowError> {
        let c = self.tables(CATALOG).await?;
        let sql = format!("SELECT id, username, display_name, avatar_url, status_text FROM {c}users WHERE id = $1");
        let row = self.one(&sql, vec![text(id)]).await?;
        row.as_ref().map(UserRow::from_row).transpose()
    }

    /// The people `user` has blocked, oldest block first.
    pub async fn blocked_by(&self, user: UserId) -> Result<Vec<UserId>, RowError> {
        let c = self.tables(CATALOG).await?;
        let sql = format!(
            "SELECT blocked_id FROM {c}blocks WHERE user_id = $1 ORDER BY blocked_at, blocked_id"
        );
        let rows = self.rows(&sql, vec![text(user)]).await?;
        all(&rows, |row| {
            crate::rows::parse_id(row, "blocked_id", UserId::parse)
        })
    }

    /// `id` as `viewer` may look them up: themselves, or someone they share a server or a
    /// conversation with. `None` for anyone else, as for nobody.
    pub async fn acquaintance(
        &self,
        viewer: UserId,
        id: UserId,
    ) -> Result<Option<UserRow>, RowError> {
        if viewer == id {
            return self.user(id).await;
        }
        let c = self.tables(CATALOG).await?;
        let sql = format!(
            "SELECT u.id, u.username, u.display_name, u.avatar_url, u.status_text FROM {c}users u \
             WHERE u.id = $1 AND u.id IN ({})",
            acquaintances(&c, 2)
        );
        let values = vec![text(id), text(viewer), text(viewer), text(viewer)];
        let row = self.one(&sql, values).await?;
        row.as_ref().map(UserRow::from_row).transpose()
    }

    /// The people `viewer` shares a server or a conversation with (themselves included) whose
    /// username or display name starts with `prefix` (letter case aside), by username, at most
    /// `limit`.
    pub async fn search_acquaintances(
        &self,
        viewer: UserId,
        prefix: &str,
        limit: i64,
    ) -> Result<Vec<UserRow>, RowError> {
        let c = self.tables(CATALOG).await?;
        let sql = format!(
            "SELECT u.id, u.username, u.display_name, u.avatar_url, u.status_text FROM {c}users u WHERE u.id IN ({}) \
             AND (lower(u.username) LIKE $4 ESCAPE '\\' OR lower(u.display_name) LIKE $5 ESCAPE '\\') \
             ORDER BY u.username LIMIT $6",
            acquaintances(&c, 1)
        );
        let pattern = format!("{}%", like_escaped(&prefix.to_lowercase()));
        let values = vec![
            text(viewer),
            text(viewer),
            text(viewer),
            pattern.clone().into(),
            pattern.into(),
            limit.into(),
        ];
        all(&self.rows(&sql, values).await?, UserRow::from_row)
    }

    /// The servers `user` is a member of, oldest membership first.
    pub async fn servers_of(&self, user: UserId) -> Result<Vec<ServerRow>, RowError> {
        let c = self.tables(CATALOG).await?;
        let sql = format!(
            "SELECT s.id, s.name, s.owner_id, s.content_policy, s.moderation_threshold \
             FROM {c}servers s JOIN {c}members m \
             ON m.server_id = s.id WHERE m.user_id = $1 ORDER BY m.position"
        );
        all(
            &self.rows(&sql, vec![text(user)]).await?,
            ServerRow::from_row,
        )
    }

    pub async fn server(&self, id: ServerId) -> Result<Option<ServerRow>, RowError> {
        let c = self.tables(CATALOG).await?;
        let sql = format!(
            "SELECT id, name, owner_id, content_policy, moderation_threshold FROM {c}servers \
             WHERE id = $1"
        );
        let row = self.one(&sql, vec![text(id)]).await?;
        row.as_ref().map(ServerRow::from_row).transpose()
    }

    pub async fn member_role(
        &self,
        server: ServerId,
        user: UserId,
    ) -> Result<Option<Role>, RowError> {
        let c = self.tables(CATALOG).await?;
        let sql = format!("SELECT role FROM {c}members WHERE server_id = $1 AND user_id = $2");
        let row = self.one(&sql, vec![text(server), text(user)]).await?;
        row.as_ref().map(parse_role).transpose()
    }

    pub async fn channels(&self, server: ServerId) -> Result<Vec<ChannelRow>, RowError> {
        let c = self.tables(CATALOG).await?;
        let sql = format!(
            "SELECT id, server_id, name, kind, private, archived, topic, category FROM {c}channels \
             WHERE server_id = $1 ORDER BY position, id"
        );
        all(
            &self.rows(&sql, vec![text(server)]).await?,
            ChannelRow::from_row,
        )
    }

    pub async fn channel(&self, id: ChannelId) -> Result<Option<ChannelRow>, RowError> {
        let c = self.tables(CATALOG).await?;
        let sql = format!(
            "SELECT id, server_id, name, kind, private, archived, topic, category FROM {c}channels \
             WHERE id = $1"
        );
        let row = self.one(&sql, vec![text(id)]).await?;
        row.as_ref().map(ChannelRow::from_row).transpose()
    }

    /// The events of `server` numbered after `after`, oldest first, at most `limit`.
    pub async fn server_events_after(
        &self,
        server: ServerId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ServerEventRow>, RowError> {
        let c = self.tables(CATALOG).await?;
        let sql = format!(
            "SELECT server_id, seq, kind, channel_id, private, data, occurred_at \
             FROM {c}server_events WHERE server_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        );
        all(
            &self
                .rows(&sql, vec![text(server), after.into(), limit.into()])
                .await?,
            ServerEventRow::from_row,
        )
    }

    /// The number of `server`'s latest event; 0 before any.
    pub async fn server_head(&self, server: ServerId) -> Result<i64, RowError> {
        let c = self.tables(CATALOG).await?;
        let sql = format!(
            "SELECT COALESCE(MAX(seq), 0) AS head FROM {c}server_events WHERE server_id = $1"
        );
        match self.one(&sql, vec![text(server)]).await? {
            Some(row) => Ok(row.get("head")?),
            None => Ok(0),
        }
    }

    /// `user`'s standing in a channel, from the catalog: the same rule the write side applies.
    pub async fn channel_access(
        &self,
        channel: &ChannelRow,
        user: UserId,
    ) -> Result<ChannelAccess, RowError> {
        Ok(match self.member_role(channel.server_id, user).await? {
            None => ChannelAccess::NotAMember {
                server_id: channel.server_id,
            },
            Some(role) => ChannelAccess::Member {
                server_id: channel.server_id,
                role,
                channel: ChannelFacts {
                    kind: channel.kind,
                    private: channel.private,
                    archived: channel.archived,
                },
            },
        })
    }

    /// A direct conversation and its participants.
    pub async fn conversation(&self, id: ChannelId) -> Result<Option<ConversationRow>, RowError> {
        let c = self.tables(CATALOG).await?;
        let sql = format!(
            "SELECT id, opened_by, opened_at, is_group, name, owner_id FROM {c}conversations \
             WHERE id = $1"
        );
        let Some(row) = self.one(&sql, vec![text(id)]).await? else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT user_id FROM {c}conversation_participants WHERE conversation_id = $1 \
             ORDER BY user_id"
        );
        let participants = self.rows(&sql, vec![text(id)]).await?;
        Ok(Some(ConversationRow {
            id: parse_id(&row, "id", ChannelId::parse)?,
            opened_by: parse_id(&row, "opened_by", UserId::parse)?,
            participants: all(&participants, |row| parse_id(row, "user_id", UserId::parse))?,
            opened_at: row.get("opened_at")?,
            group: row.get("is_group")?,
            owner: parse_optional_id(&row, "owner_id", UserId::parse)?,
            name: row.get("name")?,
        }))
    }

    /// The ids of the conversations `user` is in, most recently opened first, at most `limit`.
    pub async fn conversations_of(
        &self,
        user: UserId,
        limit: i64,
    ) -> Result<Vec<ChannelId>, RowError> {
        let c = self.tables(CATALOG).await?;
        let sql = format!(
            "SELECT c.id FROM {c}conversations c \
             JOIN {c}conversation_participants p ON p.conversation_id = c.id \
             WHERE p.user_id = $1 ORDER BY c.opened_at DESC, c.id LIMIT $2"
        );
        let rows = self.rows(&sql, vec![text(user), limit.into()]).await?;
        all(&rows, |row| parse_id(row, "id", ChannelId::parse))
    }

    /// Members in join order: `limit` of them after the first `offset`, and how many members
    /// the server has. Both come from one statement, so a member joining meanwhile cannot make
    /// the count disagree with the page.
    pub async fn members(
        &self,
        server: ServerId,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<MemberRow>, i64), RowError> {
        let c = self.tables(CATALOG).await?;
        let sql = format!(
            "SELECT server_id, user_id, role, joined_at, COUNT(*) OVER () AS total \
             FROM {c}members WHERE server_id = $1 ORDER BY position LIMIT $2 OFFSET $3"
        );
        let rows = self
            .rows(&sql, vec![text(server), limit.into(), offset.into()])
            .await?;
        let total = match rows.first() {
            Some(row) => row.get("total")?,
            // A page past the end has no row to carry the count.
            None => self.member_count(server).await?,
        };
        Ok((all(&rows, MemberRow::from_row)?, total))
    }

    /// The bans in force in `server`, newest first, at most `limit`.
    pub async fn bans(&self, server: ServerId, limit: i64) -> Result<Vec<BanRow>, RowError> {
        let c = self.tables(CATALOG).await?;
        let sql = format!(
            "SELECT user_id, banned_by, reason, banned_at FROM {c}bans WHERE server_id = $1 \
             ORDER BY banned_at DESC, user_id LIMIT $2"
        );
        let rows = self.rows(&sql, vec![text(server), limit.into()]).await?;
        all(&rows, BanRow::from_row)
    }

    /// Whether another member of `server` shows the same display name as `user` (letter case
    /// aside): then `user` is shown with their username beside it, so that a copied name cannot
    /// pass for its owner.
    pub async fn display_name_shared(
        &self,
        server: ServerId,
        user: UserId,
    ) -> Result<bool, RowError> {
        let c = self.tables(CATALOG).await?;
        let sql = format!(
            "SELECT COUNT(*) AS n FROM {c}members m JOIN {c}users u ON u.id = m.user_id \
             JOIN {c}users me ON me.id = $2 \
             WHERE m.server_id = $1 AND m.user_id <> $2 \
             AND lower(u.display_name) = lower(me.display_name)"
        );
        match self.one(&sql, vec![text(server), text(user)]).await? {
            Some(row) => Ok(row.get::<i64>("n")? > 0),
            None => Ok(false),
        }
    }

    pub async fn member_count(&self, server: ServerId) -> Result<i64, RowError> {
        let c = self.tables(CATALOG).await?;
        let sql = format!("SELECT COUNT(*) AS n FROM {c}members WHERE server_id = $1");
        match self.one(&sql, vec![text(server)]).await? {
            Some(row) => Ok(row.get("n")?),
            None => Ok(0),
        }
    }

    /// `user`'s read pointer in `channel` and what is unread after it.
    pub async fn read_state(
        &self,
        user: UserId,
        channel: ChannelId,
    ) -> Result<ReadStateRow, RowError> {
        let r = self.tables(RECEIPTS).await?;
        let pointer = self
            .one(
                &READ_POINTER_QUERY.replace("{r}", &r),
                vec![text(user), text(channel)],
            )
            .await?;
        let (last_read_seq, last_read) = match &pointer {
            Some(row) => (
                row.get::<i64>("last_read_seq")?,
                Some((
                    parse_id(row, "message_id", MessageId::parse)?,
                    row.get("read_at")?,
                )),
            ),
            None => (0, None),
        };
        let counts = self
            .one(
                &UNREAD_QUERY.replace("{r}", &r),
                vec![
                    text(channel),
                    last_read_seq.into(),
                    text(user),
                    text(channel),
                    last_read_seq.into(),
                    text(user),
                    text(user),
                ],
            )
            .await?
            .ok_or(RowError::Malformed {
                column: "unread",
                value: "no row".to_owned(),
            })?;
        Ok(ReadStateRow {
            user_id: user,
            channel_id: channel,
            last_read,
            last_read_seq,
            unread: counts.get("unread")?,
            mentions: counts.get("mentions")?,
        })
    }

    pub async fn message(&self, id: MessageId) -> Result<Option<MessageRow>, RowError> {
        match &self.inner.timeline {
            Timeline::Sql => {
                let t = self.tables(TIMELINE).await?;
                let sql = format!("SELECT {MESSAGE_COLUMNS} FROM {t}messages WHERE id = $1");
                let row = self.one(&sql, vec![text(id)]).await?;
                row.as_ref().map(MessageRow::from_row).transpose()
            }
            Timeline::Mongo(database) => {
                let messages = self.collection(database, "messages").await?;
                let found = messages
                    .find_one(doc! { "_id": id.to_string() })
                    .await
                    .map_err(mongo_error)?;
                found.as_ref().map(message_document).transpose()
            }
        }
    }

    /// A page of `server`'s moderation queue: its messages with an open flag or report, after
    /// the message `after` (ids are time ordered, so the oldest message comes first), at most
    /// `limit`.
    pub async fn review_queue(
        &self,
        server: ServerId,
        after: Option<MessageId>,
        limit: i64,
    ) -> Result<Vec<MessageRow>, RowError> {
        let after = after.map(|id| id.to_string()).unwrap_or_default();
        match &self.inner.timeline {
            Timeline::Sql => {
                let t = self.tables(TIMELINE).await?;
                let sql = format!(
                    "SELECT {MESSAGE_COLUMNS} FROM {t}messages WHERE server_id = $1 \
                     AND review_open AND id > $2 ORDER BY id LIMIT $3"
                );
                let values = vec![text(server), after.into(), limit.into()];
                all(&self.rows(&sql, values).await?, MessageRow::from_row)
            }
            Timeline::Mongo(database) => {
                let messages = self.collection(database, "messages").await?;
                let documents = find_all(
                    &messages,
                    doc! {
                        "server_id": server.to_string(),
                        "review_open": true,
                        "_id": { "$gt": after },
                    },
                    Some((doc! { "_id": 1 }, limit)),
                )
                .await?;
                documents
                    .iter()
                    .map(message_document)
                    .collect::<Result<_, _>>()
            }
        }
    }

    /// A page of a channel's messages strictly between `after` and `before` (message sequence
    /// numbers), `limit` long, taken from `from`, returned oldest first.
    pub async fn messages(
        &self,
        channel: ChannelId,
        after: Option<i64>,
        before: Option<i64>,
        limit: i64,
        from: PageFrom,
    ) -> Result<Vec<MessageRow>, RowError> {
        // A thread reply not also sent to the channel is read in its thread only.
        let run = NumberedRun {
            key: "channel_id",
            id: channel.to_string(),
            seq: "channel_seq",
            in_channel_only: true,
        };
        self.message_page(run, after, before, limit, from).await
    }

    /// A page of one numbered run of messages (a channel's, a thread's) strictly between
    /// `after` and `before`, `limit` long, taken from `from`, returned oldest first.
    async fn message_page(
        &self,
        run: NumberedRun,
        after: Option<i64>,
        before: Option<i64>,
        limit: i64,
        from: PageFrom,
    ) -> Result<Vec<MessageRow>, RowError> {
        let NumberedRun {
            key,
            id,
            seq,
            in_channel_only,
        } = run;
        let (after, before) = (after.unwrap_or(0), before.unwrap_or(i64::MAX));
        let mut page = match &self.inner.timeline {
            Timeline::Sql => {
                let t = self.tables(TIMELINE).await?;
                let order = match from {
                    PageFrom::Start => "ASC",
                    PageFrom::End => "DESC",
                };
                let in_channel = if in_channel_only {
                    " AND in_channel"
                } else {
                    ""
                };
                let sql = format!(
                    "SELECT {MESSAGE_COLUMNS} FROM {t}messages WHERE {key} = $1 \
                     AND {seq} > $2 AND {seq} < $3{in_channel} \
                     ORDER BY {seq} {order} LIMIT $4"
                );
                let values = vec![text(id), after.into(), before.into(), limit.into()];
                all(&self.rows(&sql, values).await?, MessageRow::from_row)?
            }
            Timeline::Mongo(database) => {
                let order = match from {
                    PageFrom::Start => 1,
                    PageFrom::End => -1,
                };
                let mut filter = doc! { key: id, seq: { "$gt": after, "$lt": before } };
                if in_channel_only {
                    filter.insert("in_channel", doc! { "$ne": false });
                }
                let messages = self.collection(database, "messages").await?;
                let documents =
                    find_all(&messages, filter, Some((doc! { seq: order }, limit))).await?;
                documents
                    .iter()
                    .map(message_document)
                    .collect::<Result<_, _>>()?
            }
        };
        if from == PageFrom::End {
            page.reverse();
        }
        Ok(page)
    }

    /// The messages pinned in a channel or conversation, the latest pin first (at most
    /// `limit`).
    pub async fn pinned_messages(
        &self,
        channel: ChannelId,
        limit: i64,
    ) -> Result<Vec<MessageRow>, RowError> {
        match &self.inner.timeline {
            Timeline::Sql => {
                let t = self.tables(TIMELINE).await?;
                let sql = format!(
                    "SELECT {MESSAGE_COLUMNS} FROM {t}messages WHERE channel_id = $1 \
                     AND pinned_at IS NOT NULL ORDER BY pinned_at DESC, id DESC LIMIT $2"
                );
                all(
                    &self.rows(&sql, vec![text(channel), limit.into()]).await?,
                    MessageRow::from_row,
                )
            }
            Timeline::Mongo(database) => {
                let messages = self.collection(database, "messages").await?;
                let documents = find_all(
                    &messages,
                    doc! { "channel_id": channel.to_string(), "pinned": { "$type": "object" } },
                    Some((doc! { "pinned.pinned_at": -1, "_id": -1 }, limit)),
                )
                .await?;
                documents
                    .iter()
                    .map(message_document)
                    .collect::<Result<_, _>>()
            }
        }
    }

    /// A page of the replies in `root`'s thread strictly between `after` and `before` (thread
    /// positions), `limit` long, taken from `from`, returned oldest first.
    pub async fn thread_replies(
        &self,
        root: MessageId,
        after: Option<i64>,
        before: Option<i64>,
        limit: i64,
        from: PageFrom,
    ) -> Result<Vec<MessageRow>, RowError> {
        let run = NumberedRun {
            key: "thread_root_id",
            id: root.to_string(),
            seq: "thread_seq",
            in_channel_only: false,
        };
        self.message_page(run, after, before, limit, from).await
    }

    /// The channel's changes after `after`, in order, each with its message as it stands now
    /// (a deleted message has no body, whatever the change was).
    pub async fn channel_events_after(
        &self,
        channel: ChannelId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ChannelEventRow>, RowError> {
        match &self.inner.timeline {
            Timeline::Sql => {
                let t = self.tables(TIMELINE).await?;
                let columns = MESSAGE_COLUMNS
                    .split(", ")
                    .map(|column| format!("m.{column}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = format!(
                    "SELECT e.seq, e.kind, e.reaction, {columns} FROM {t}channel_events e \
                     JOIN {t}messages m ON m.id = e.message_id \
                     WHERE e.channel_id = $1 AND e.seq > $2 ORDER BY e.seq LIMIT $3"
                );
                let rows = self
                    .rows(&sql, vec![text(channel), after.into(), limit.into()])
                    .await?;
                rows.iter()
                    .map(|row| {
                        let kind: String = row.get("kind")?;
                        let reaction: Option<String> = row.get("reaction")?;
                        with_reaction(ChannelEventRow {
                            channel_id: channel,
                            seq: row.get("seq")?,
                            kind: event_kind(kind)?,
                            message: Box::new(MessageRow::from_row(row)?),
                            reaction: reaction
                                .map(|text| {
                                    serde_json::from_str(&text).map_err(|_| RowError::Malformed {
                                        column: "reaction",
                                        value: text,
                                    })
                                })
                                .transpose()?,
                        })
                    })
                    .collect()
            }
            Timeline::Mongo(database) => {
                let events = find_all(
                    &self.collection(database, "channel_events").await?,
                    doc! { "channel_id": channel.to_string(), "seq": { "$gt": after } },
                    Some((doc! { "seq": 1 }, limit)),
                )
                .await?;
                if events.is_empty() {
                    return Ok(Vec::new());
                }
                let ids: Vec<&str> = events
                    .iter()
                    .filter_map(|event| event.get_str("message_id").ok())
                    .collect();
                let messages = find_all(
                    &self.collection(database, "messages").await?,
                    doc! { "_id": { "$in": ids } },
                    None,
                )
                .await?;
                let mut by_id = HashMap::new();
                for document in &messages {
                    let row = message_document(document)?;
                    by_id.insert(row.id.to_string(), row);
                }
                events
                    .iter()
                    .map(|event| {
                        let malformed = || RowError::Malformed {
                            column: "channel_events",
                            value: event.to_string(),
                        };
                        let message_id = event.get_str("message_id").map_err(|_| malformed())?;
                        let kind = event.get_str("kind").map_err(|_| malformed())?;
                        let reaction = match event.get("reaction") {
                            Some(mongodb::bson::Bson::Document(reaction)) => Some(Box::new(
                                reaction_from_document(reaction).ok_or_else(malformed)?,
                            )),
                            Some(mongodb::bson::Bson::Null) | None => None,
                            Some(_) => return Err(malformed()),
                        };
                        with_reaction(ChannelEventRow {
                            channel_id: channel,
                            seq: event.get_i64("seq").map_err(|_| malformed())?,
                            kind: event_kind(kind.to_owned())?,
                            message: Box::new(
                                by_id.get(message_id).cloned().ok_or_else(malformed)?,
                            ),
                            reaction,
                        })
                    })
                    .collect()
            }
        }
    }

    /// The last change number of a channel (0 if none).
    pub async fn channel_head(&self, channel: ChannelId) -> Result<i64, RowError> {
        match &self.inner.timeline {
            Timeline::Sql => {
                let t = self.tables(TIMELINE).await?;
                let sql = format!("SELECT last_event FROM {t}channel_heads WHERE channel_id = $1");
                match self.one(&sql, vec![text(channel)]).await? {
                    Some(row) => Ok(row.get("last_event")?),
                    None => Ok(0),
                }
            }
            Timeline::Mongo(database) => {
                let head = self
                    .collection(database, "channel_heads")
                    .await?
                    .find_one(doc! { "_id": channel.to_string() })
                    .await
                    .map_err(mongo_error)?;
                Ok(head
                    .and_then(|head| head.get_i64("last_event").ok())
                    .unwrap_or(0))
            }
        }
    }

    /// Whether every read model the queries read has applied event `sequence` of aggregate
    /// `aggregate_id`.
    pub async fn has_applied(&self, aggregate_id: &str, sequence: i64) -> Result<bool, RowError> {
        // The stores track every aggregate their source carries, whether it changes them or not.
        for projection in [CATALOG, RECEIPTS] {
            let p = self.tables(projection).await?;
            let sql = format!("SELECT sequence FROM {p}projector_versions WHERE aggregate_id = $1");
            let row = self.one(&sql, vec![text(aggregate_id)]).await?;
            if !applied(row, sequence)? {
                return Ok(false);
            }
        }
        match &self.inner.timeline {
            Timeline::Sql => {
                let t = self.tables(TIMELINE).await?;
                let sql =
                    format!("SELECT sequence FROM {t}projector_versions WHERE aggregate_id = $1");
                let row = self.one(&sql, vec![text(aggregate_id)]).await?;
                applied(row, sequence)
            }
            Timeline::Mongo(database) => {
                let stored = self
                    .collection(database, "versions")
                    .await?
                    .find_one(doc! { "_id": aggregate_id })
                    .await
                    .map_err(mongo_error)?;
                Ok(stored
                    .and_then(|stored| stored.get_i64("sequence").ok())
                    .is_some_and(|at| at >= sequence))
            }
        }
    }

    /// Waits until [`Self::has_applied`] holds; `false` once `timeout` passed first. A store
    /// that cannot be asked counts as not there yet.
    pub async fn wait_applied(&self, aggregate_id: &str, sequence: i64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = POLL_FIRST;
        loop {
            match self.has_applied(aggregate_id, sequence).await {
                Ok(true) => return true,
                Ok(false) => {}
                Err(error) => {
                    tracing::debug!(%error, "cannot ask the read models how far they are")
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            // In-process projectors say when they commit; other processes' are polled, each
            // pause twice the last up to POLL_MAX.
            let wake = tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + pause));
            match &self.inner.progress {
                Some(progress) => {
                    tokio::select! {
                        _ = wake => {}
                        _ = progress.changed() => {}
                    }
                }
                None => wake.await,
            }
            pause = (pause * 2).min(POLL_MAX);
        }
    }
}

/// The first pause of a read-your-own-write wait on another process's projectors.
const POLL_FIRST: Duration = Duration::from_millis(2);
/// The longest pause between two looks.
const POLL_MAX: Duration = Duration::from_millis(25);

fn applied(row: Option<SqlRow>, sequence: i64) -> Result<bool, RowError> {
    Ok(match row {
        Some(row) => row.get::<i64>("sequence")? >= sequence,
        None => false,
    })
}

/// Every document of `collection` that matches `filter`, sorted and limited if asked.
async fn find_all(
    collection: &mongodb::Collection<Document>,
    filter: Document,
    sorted: Option<(Document, i64)>,
) -> Result<Vec<Document>, RowError> {
    let find = collection.find(filter);
    let cursor = match sorted {
        Some((order, limit)) => find.sort(order).limit(limit).await,
        None => find.await,
    };
    cursor
        .map_err(mongo_error)?
        .try_collect()
        .await
        .map_err(mongo_error)
}

/// `row`, refused if it is a `ReactionChanged` without its reaction (every store writes one).
fn with_reaction(row: ChannelEventRow) -> Result<ChannelEventRow, RowError> {
    if row.kind == ChannelEventKind::ReactionChanged && row.reaction.is_none() {
        return Err(RowError::Malformed {
            column: "reaction",
            value: format!(
                "change {} of channel {} names no reaction",
                row.seq, row.channel_id
            ),
        });
    }
    Ok(row)
}

fn event_kind(kind: String) -> Result<ChannelEventKind, RowError> {
    ChannelEventKind::parse(&kind).ok_or(RowError::Malformed {
        column: "kind",
        value: kind,
    })
}

fn message_document(document: &Document) -> Result<MessageRow, RowError> {
    message_from_document(document).ok_or_else(|| RowError::Malformed {
        column: "messages",
        value: document.to_string(),
    })
}

/// The checkpoints of the in-process projectors: readiness shows the lowest, and
/// read-your-own-write waits wake when any moves.
#[derive(Clone, Debug, Default)]
pub struct Watermarks {
    checkpoints: Vec<tokio::sync::watch::Receiver<Checkpoint>>,
}

impl Watermarks {
    pub fn new(checkpoints: Vec<tokio::sync::watch::Receiver<Checkpoint>>) -> Self {
        Self { checkpoints }
    }

    /// The lowest log position every projector has applied.
    pub fn low(&self) -> i64 {
        self.checkpoints
            .iter()
            .map(|checkpoint| EventLogSource::position(&checkpoint.borrow()))
            .min()
            .unwrap_or(0)
    }

    /// Resolves once any projector's checkpoint moves (never, without projectors).
    pub async fn changed(&self) {
        if self.checkpoints.is_empty() {
            return std::future::pending().await;
        }
        let waits = self.checkpoints.iter().map(|checkpoint| {
            let mut checkpoint = checkpoint.clone();
            Box::pin(async move {
                if checkpoint.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            })
        });
        futures::future::select_all(waits).await;
    }
}

/// The ids of the people a viewer may look up, as a subquery of the catalog tables `{c}`:
/// themselves, and whoever shares a server or a conversation with them. The viewer's id is
/// bound three times, as `$first`, `$first + 1` and `$first + 2`.
fn acquaintances(c: &str, first: usize) -> String {
    let (a, b, d) = (first, first + 1, first + 2);
    format!(
        "SELECT m2.user_id FROM {c}members m1 JOIN {c}members m2 ON m2.server_id = m1.server_id \
         WHERE m1.user_id = ${a} \
         UNION SELECT p2.user_id FROM {c}conversation_participants p1 \
         JOIN {c}conversation_participants p2 ON p2.conversation_id = p1.conversation_id \
         WHERE p1.user_id = ${b} \
         UNION SELECT id FROM {c}users WHERE id = ${d}"
    )
}

/// `text` with the wildcards of `LIKE` (and the escape character `\`) escaped by `\`.
fn like_escaped(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

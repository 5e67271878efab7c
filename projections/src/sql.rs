//! One statement text for both SQL stores. Read-model statements are written once, with `$N`
//! placeholders (PostgreSQL's form, which sqlx also binds for SQLite) and values from
//! [`SqlValue`], and run on whichever connection the store holds.

use aether_schemas::{EventEnvelope, LoggedEvent};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, SqliteConnection};

use crate::projection::ProjectionError;
use crate::stream::postgres::event_error;
use crate::stream::store::StoreError;

/// Why an event could not be applied by statements shared between the SQL stores.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{event_type} cannot be decoded: {reason}")]
    Decode { event_type: String, reason: String },
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    #[error(transparent)]
    Row(#[from] crate::rows::RowError),
}

impl ApplyError {
    pub fn decode(envelope: &EventEnvelope, reason: &dyn std::fmt::Display) -> Self {
        Self::Decode {
            event_type: envelope.event_type.clone(),
            reason: reason.to_string(),
        }
    }

    /// As the embedded projector reports it.
    pub fn for_event(self, event: &LoggedEvent) -> ProjectionError {
        match self {
            ApplyError::Sql(error) => ProjectionError::Store(error),
            ApplyError::Row(error) => ProjectionError::Row(error),
            decode @ ApplyError::Decode { .. } => ProjectionError::decode(event, decode),
        }
    }

    /// As a stream store reports it, blaming the batch's event at `index`.
    pub fn at(self, index: usize) -> StoreError {
        match self {
            ApplyError::Sql(error) | ApplyError::Row(crate::rows::RowError::Database(error)) => {
                event_error(index, error)
            }
            other @ (ApplyError::Decode { .. } | ApplyError::Row(_)) => StoreError::Event {
                index,
                reason: other.to_string(),
            },
        }
    }
}

/// A value bound to a placeholder.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    Text(String),
    Int(i64),
    Bool(bool),
    Time(DateTime<Utc>),
    OptionalText(Option<String>),
    OptionalInt(Option<i64>),
    OptionalTime(Option<DateTime<Utc>>),
}

impl From<&str> for SqlValue {
    fn from(value: &str) -> Self {
        Self::Text(value.to_owned())
    }
}

impl From<String> for SqlValue {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}

impl From<i64> for SqlValue {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl From<bool> for SqlValue {
    fn from(value: bool) -> Self {
        Self::Bool(value)
    }
}

impl From<DateTime<Utc>> for SqlValue {
    fn from(value: DateTime<Utc>) -> Self {
        Self::Time(value)
    }
}

impl From<Option<String>> for SqlValue {
    fn from(value: Option<String>) -> Self {
        Self::OptionalText(value)
    }
}

impl From<Option<i64>> for SqlValue {
    fn from(value: Option<i64>) -> Self {
        Self::OptionalInt(value)
    }
}

impl From<Option<DateTime<Utc>>> for SqlValue {
    fn from(value: Option<DateTime<Utc>>) -> Self {
        Self::OptionalTime(value)
    }
}

/// A connection a read-model statement can run on.
#[async_trait]
pub trait SqlWrite: Send {
    async fn write(&mut self, sql: &'static str, values: Vec<SqlValue>) -> Result<(), sqlx::Error>;

    /// Runs `sql` and answers its first row, if any (a `RETURNING` clause, a look-up).
    async fn fetch_optional(
        &mut self,
        sql: &str,
        values: Vec<SqlValue>,
    ) -> Result<Option<SqlRow>, sqlx::Error>;
}

macro_rules! bind_all {
    ($query:expr, $values:expr) => {{
        let mut query = $query;
        for value in $values {
            query = match value {
                SqlValue::Text(v) => query.bind(v),
                SqlValue::Int(v) => query.bind(v),
                SqlValue::Bool(v) => query.bind(v),
                SqlValue::Time(v) => query.bind(v),
                SqlValue::OptionalText(v) => query.bind(v),
                SqlValue::OptionalInt(v) => query.bind(v),
                SqlValue::OptionalTime(v) => query.bind(v),
            };
        }
        query
    }};
}

#[async_trait]
impl SqlWrite for PgConnection {
    async fn write(&mut self, sql: &'static str, values: Vec<SqlValue>) -> Result<(), sqlx::Error> {
        bind_all!(sqlx::query(sql), values)
            .execute(&mut *self)
            .await?;
        Ok(())
    }

    async fn fetch_optional(
        &mut self,
        sql: &str,
        values: Vec<SqlValue>,
    ) -> Result<Option<SqlRow>, sqlx::Error> {
        let row = bind_all!(sqlx::query(sql), values)
            .fetch_optional(&mut *self)
            .await?;
        Ok(row.map(SqlRow::Postgres))
    }
}

#[async_trait]
impl SqlWrite for SqliteConnection {
    async fn write(&mut self, sql: &'static str, values: Vec<SqlValue>) -> Result<(), sqlx::Error> {
        bind_all!(sqlx::query(sql), values)
            .execute(&mut *self)
            .await?;
        Ok(())
    }

    async fn fetch_optional(
        &mut self,
        sql: &str,
        values: Vec<SqlValue>,
    ) -> Result<Option<SqlRow>, sqlx::Error> {
        let row = bind_all!(sqlx::query(sql), values)
            .fetch_optional(&mut *self)
            .await?;
        Ok(row.map(SqlRow::Sqlite))
    }
}

/// A pool read-model queries run on: the embedded mode's SQLite file or the distributed mode's
/// PostgreSQL database. Query texts are shared, as for [`SqlWrite`].
#[derive(Clone, Debug)]
pub enum SqlReader {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// A row of either SQL store.
pub enum SqlRow {
    Sqlite(sqlx::sqlite::SqliteRow),
    Postgres(sqlx::postgres::PgRow),
}

impl std::fmt::Debug for SqlRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SqlRow::Sqlite(_) => "SqlRow::Sqlite",
            SqlRow::Postgres(_) => "SqlRow::Postgres",
        })
    }
}

/// A column type both SQL stores decode.
pub trait SqlColumn:
    for<'r> sqlx::Decode<'r, sqlx::Sqlite>
    + sqlx::Type<sqlx::Sqlite>
    + for<'r> sqlx::Decode<'r, sqlx::Postgres>
    + sqlx::Type<sqlx::Postgres>
{
}

impl<T> SqlColumn for T where
    T: for<'r> sqlx::Decode<'r, sqlx::Sqlite>
        + sqlx::Type<sqlx::Sqlite>
        + for<'r> sqlx::Decode<'r, sqlx::Postgres>
        + sqlx::Type<sqlx::Postgres>
{
}

impl SqlRow {
    pub fn get<T: SqlColumn>(&self, column: &str) -> Result<T, sqlx::Error> {
        use sqlx::Row;
        match self {
            SqlRow::Sqlite(row) => row.try_get(column),
            SqlRow::Postgres(row) => row.try_get(column),
        }
    }
}

impl SqlReader {
    /// Every row `sql` selects.
    pub async fn all(&self, sql: &str, values: Vec<SqlValue>) -> Result<Vec<SqlRow>, sqlx::Error> {
        Ok(match self {
            SqlReader::Sqlite(pool) => bind_all!(sqlx::query(sql), values)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(SqlRow::Sqlite)
                .collect(),
            SqlReader::Postgres(pool) => bind_all!(sqlx::query(sql), values)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(SqlRow::Postgres)
                .collect(),
        })
    }

    /// The first row `sql` selects, if any.
    pub async fn one(
        &self,
        sql: &str,
        values: Vec<SqlValue>,
    ) -> Result<Option<SqlRow>, sqlx::Error> {
        Ok(match self {
            SqlReader::Sqlite(pool) => bind_all!(sqlx::query(sql), values)
                .fetch_optional(pool)
                .await?
                .map(SqlRow::Sqlite),
            SqlReader::Postgres(pool) => bind_all!(sqlx::query(sql), values)
                .fetch_optional(pool)
                .await?
                .map(SqlRow::Postgres),
        })
    }

    pub async fn close(&self) {
        match self {
            SqlReader::Sqlite(pool) => pool.close().await,
            SqlReader::Postgres(pool) => pool.close().await,
        }
    }
}

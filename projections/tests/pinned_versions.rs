//! One request reads one set of live versions: a switch while it runs cannot answer one of its
//! fields from the old version and another from the new one (PostgreSQL).

use std::sync::Arc;

use aether_domain::UserId;
use aether_projections::read::{with_pinned_versions, with_pinned_versions_per_item};
use aether_projections::stream::postgres::{CatalogProjection, PgStore};
use aether_projections::stream::registry::Registry;
use aether_projections::stream::ReadStore;
use aether_projections::ReadModels;
use aether_test_support::TestDatabase;
use futures::StreamExt;

/// A catalog with versions 1 and 2 that know the same user by different display names, v1 live.
async fn two_versions() -> anyhow::Result<(TestDatabase, sqlx::PgPool, UserId, ReadModels)> {
    let db = TestDatabase::create().await?;
    let pool = db.pool().await?;
    Registry::open(pool.clone()).await?;
    let user = UserId::new();
    // The same user as two versions of the catalog know them.
    for version in [1, 2] {
        PgStore::new(pool.clone(), Arc::new(CatalogProjection), version)
            .prepare()
            .await?;
        sqlx::query(&format!(
            "INSERT INTO catalog_v{version}.users (id, username, display_name, registered_at) \
             VALUES ($1, 'alice', $2, now())"
        ))
        .bind(user.to_string())
        .bind(format!("as of v{version}"))
        .execute(&pool)
        .await?;
    }
    sqlx::query("INSERT INTO projection_registry (name, live_version) VALUES ('catalog', 1)")
        .execute(&pool)
        .await?;
    let read = ReadModels::distributed(pool.clone(), None).await?;
    Ok((db, pool, user, read))
}

fn name(row: Option<aether_projections::rows::UserRow>) -> String {
    row.map(|row| row.display_name).unwrap_or_default()
}

async fn switch_to_v2(pool: &sqlx::PgPool, read: &ReadModels) -> anyhow::Result<()> {
    sqlx::query("UPDATE projection_registry SET live_version = 2 WHERE name = 'catalog'")
        .execute(pool)
        .await?;
    read.forget_live_versions();
    Ok(())
}

#[tokio::test]
async fn a_request_keeps_the_versions_of_its_first_read_across_a_switch() -> anyhow::Result<()> {
    let (db, pool, user, read) = two_versions().await?;
    let (first, second) = with_pinned_versions(async {
        let first = name(read.user(user).await?);
        switch_to_v2(&pool, &read).await?;
        let second = name(read.user(user).await?);
        anyhow::Ok((first, second))
    })
    .await?;
    assert_eq!(first, "as of v1");
    assert_eq!(second, "as of v1", "the same request still reads v1");
    // The next request reads the new version.
    assert_eq!(name(read.user(user).await?), "as of v2");
    assert_eq!(
        name(with_pinned_versions(read.user(user)).await?),
        "as of v2"
    );
    pool.close().await;
    db.drop_database().await?;
    Ok(())
}

#[tokio::test]
async fn an_operation_over_a_websocket_keeps_its_versions_per_response() -> anyhow::Result<()> {
    let (db, pool, user, read) = two_versions().await?;
    // Two responses of one stream (as a WebSocket operation's): the switch lands in the middle
    // of the first, which still answers from v1 throughout; the second reads v2.
    let responses = with_pinned_versions_per_item(futures::stream::unfold(0, |step| {
        let (pool, read) = (pool.clone(), read.clone());
        async move {
            match step {
                0 => {
                    let before = name(read.user(user).await.ok()?);
                    switch_to_v2(&pool, &read).await.ok()?;
                    tokio::task::yield_now().await;
                    let after = name(read.user(user).await.ok()?);
                    Some(((before, after), 1))
                }
                1 => {
                    let again = name(read.user(user).await.ok()?);
                    Some(((again.clone(), again), 2))
                }
                _ => None,
            }
        }
    }))
    .collect::<Vec<_>>()
    .await;
    assert_eq!(
        responses,
        [
            ("as of v1".to_owned(), "as of v1".to_owned()),
            ("as of v2".to_owned(), "as of v2".to_owned())
        ]
    );
    pool.close().await;
    db.drop_database().await?;
    Ok(())
}

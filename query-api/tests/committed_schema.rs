//! The served GraphQL schema and the committed `schema.graphql` stay the same: a change to the
//! API shows up in review as a change to that file (and in the changelog beside it).

use std::path::PathBuf;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("schema.graphql")
}

#[test]
fn the_served_schema_is_the_committed_one() {
    let served = aether_query_api::sdl();
    let path = committed_path();
    if std::env::var_os("AETHER_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &served).expect("write schema.graphql");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != served {
        let first_difference = committed
            .lines()
            .zip(served.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(served.lines().count()));
        panic!(
            "the GraphQL schema changed without schema.graphql (first difference at line {}):\n\
             committed: {:?}\nserved:    {:?}\n\
             Review the change, note it in docs/api-changelog.md, then run\n\
             `AETHER_UPDATE_SCHEMA=1 cargo test -p aether-query-api --test committed_schema` \
             (or `aether schema > schema.graphql`).",
            first_difference + 1,
            committed.lines().nth(first_difference),
            served.lines().nth(first_difference),
        );
    }
}

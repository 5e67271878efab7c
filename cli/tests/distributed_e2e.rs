//! The distributed mode against real PostgreSQL, a Kafka-compatible broker (tansu) and a
//! MongoDB-compatible server (SecantusDB): two stateless API instances, commands through
//! PostgreSQL, the relay to Kafka, the projectors' read models answering both instances'
//! queries, and subscriptions fed from `aether.updates.v1`.

mod common;

use common::{community, newest, send, Client, Cluster, Subscriber, CHANNEL_EVENTS};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_instances_share_one_log() -> anyhow::Result<()> {
    let cluster = Cluster::start(2).await?;
    let one = cluster.instance(common::unlimited(), true).await?;
    let two = cluster.instance(common::unlimited(), false).await?;

    // Alice works against instance one, bob against instance two.
    let mut anonymous_one = Client::new(one.local_addr);
    let mut anonymous_two = Client::new(two.local_addr);
    let (mut alice, _) = anonymous_one.register("alice").await?;
    let (mut bob, bob_id) = anonymous_two.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    // Bob's instance has caught up with the join before bob subscribes there.
    bob.ok("{ me { id } }", json!({})).await?;

    let mut subscriber =
        Subscriber::connect(two.local_addr, bob.token.as_deref().unwrap_or("")).await?;
    subscriber
        .subscribe(
            "1",
            CHANNEL_EVENTS,
            json!({ "c": place.channel_id, "after": "0" }),
        )
        .await?;
    let message_id = send(&mut alice, &place.channel_id, "across instances").await?;
    let event = subscriber.next_event("1").await?;
    assert_eq!(event["__typename"], "MessageSent");
    assert_eq!(event["message"]["id"], message_id.as_str());
    assert_eq!(event["message"]["author"]["username"], "alice");

    // Bob reads alice's write on his own instance with alice's consistency token.
    bob.consistency = newest(&None, &alice.consistency);
    let history = bob
        .ok(
            "query($c: ID!) { channel(id: $c) { messages { edges { node { body } } } } }",
            json!({ "c": place.channel_id }),
        )
        .await?;
    assert_eq!(
        history["channel"]["messages"]["edges"],
        json!([{ "node": { "body": "across instances" } }])
    );

    // A direct conversation opened on instance one reaches bob on instance two through the
    // log: its opening, then a message in it.
    let opened = alice
        .ok(
            "mutation($u: [ID!]!) { openDirectConversation(userIds: $u) { id } }",
            json!({ "u": [bob_id] }),
        )
        .await?;
    let conversation = opened["openDirectConversation"]["id"].clone();
    bob.consistency = newest(&None, &alice.consistency);
    let seen = bob
        .ok(
            "query($c: ID!) { conversation(id: $c) { participants { username } } }",
            json!({ "c": conversation }),
        )
        .await?;
    let mut people: Vec<&str> = seen["conversation"]["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|person| person["username"].as_str())
        .collect();
    people.sort_unstable();
    assert_eq!(people, ["alice", "bob"], "{seen}");
    subscriber
        .subscribe(
            "2",
            "subscription($c: ID!) { conversationEvents(conversationId: $c, after: \"0\") { \
             ... on MessageSent { message { body conversationId } } } }",
            json!({ "c": conversation }),
        )
        .await?;
    alice
        .ok(
            "mutation($c: ID!) { sendMessage(input: {conversationId: $c, body: \"psst\"}) { id } }",
            json!({ "c": conversation }),
        )
        .await?;
    let event = subscriber.next_message().await?;
    assert_eq!(event["id"], "2", "{event}");
    let message = &event["payload"]["data"]["conversationEvents"]["message"];
    assert_eq!(message["body"], "psst", "{event}");
    assert_eq!(message["conversationId"], conversation);

    cluster.stop(vec![one, two]).await
}

/// A query in time order: the history of a channel, newest page.
const HISTORY: &str = "query($c: ID!) { channel(id: $c) { messages { edges { node { body } } } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_projector_leaves_queries_answering_and_an_unreachable_store_fails_fast(
) -> anyhow::Result<()> {
    let cluster = Cluster::start(2).await?;
    let api = cluster.instance(common::unlimited(), true).await?;
    let mut anonymous = Client::new(api.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    send(&mut alice, &place.channel_id, "before the outage").await?;
    let before = alice.ok(HISTORY, json!({ "c": place.channel_id })).await?;

    // Every projector stops: queries still answer from the last applied state, at once.
    cluster.projectors.cancel();
    alice.consistency = None;
    let started = std::time::Instant::now();
    let during = alice.ok(HISTORY, json!({ "c": place.channel_id })).await?;
    assert_eq!(during, before);
    assert!(started.elapsed() < std::time::Duration::from_secs(2));

    // An instance whose MongoDB-compatible server cannot be reached answers UNAVAILABLE for
    // the history within seconds, and still answers what PostgreSQL holds.
    let options = mongodb::options::ClientOptions::builder()
        .hosts(vec![mongodb::options::ServerAddress::Tcp {
            host: "127.0.0.1".to_owned(),
            port: Some(1),
        }])
        .server_selection_timeout(std::time::Duration::from_millis(500))
        .build();
    let unreachable = mongodb::Client::with_options(options)?.database("nowhere");
    let cut_off = cluster
        .instance_on(common::unlimited(), false, unreachable)
        .await?;
    let mut alice_there =
        Client::new(cut_off.local_addr).with_token(&alice.token.clone().unwrap_or_default());
    let started = std::time::Instant::now();
    let code = alice_there
        .error_code(HISTORY, json!({ "c": place.channel_id }))
        .await?;
    assert_eq!(code, "UNAVAILABLE");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let me = alice_there.ok("{ me { username } }", json!({})).await?;
    assert_eq!(me["me"]["username"], "alice");
    cluster.stop(vec![api, cut_off]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_loses_postgresql_answers_unavailable_within_seconds() -> anyhow::Result<()>
{
    let cluster = Cluster::start(2).await?;
    let api = cluster.instance(common::unlimited(), true).await?;
    let mut anonymous = Client::new(api.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    send(&mut alice, &place.channel_id, "hello").await?;

    // A second instance reaches PostgreSQL through a relay the test can cut.
    // postgres://user:password@host:port/database
    let url = &cluster.db.url;
    let (credentials, rest) = url.split_once('@').unwrap_or((url, ""));
    let (host_port, database) = rest.split_once('/').unwrap_or((rest, ""));
    let upstream: std::net::SocketAddr = tokio::net::lookup_host(host_port)
        .await?
        .next()
        .ok_or_else(|| anyhow::anyhow!("cannot resolve {host_port}"))?;
    let relay = common::Cuttable::to(upstream).await?;
    let through = format!("{credentials}@{}/{database}", relay.addr);
    let postgres = aether_commands::postgres::PgEventStore::connect(
        &through,
        4,
        std::time::Duration::from_secs(2),
    )
    .await?;
    let cut_off = cluster
        .instance_with(
            common::unlimited(),
            false,
            postgres,
            Some(cluster.mongo.clone()),
        )
        .await?;
    let token = alice.token.clone().unwrap_or_default();
    let mut alice_there = Client::new(cut_off.local_addr).with_token(&token);
    let servers = alice_there.ok("{ servers { id } }", json!({})).await?;
    assert_eq!(servers["servers"].as_array().map(Vec::len), Some(1));

    relay.cut();
    for query in ["{ servers { id } }", "{ me { username } }"] {
        let started = std::time::Instant::now();
        let code = alice_there.error_code(query, json!({})).await?;
        assert_eq!(code, "UNAVAILABLE", "{query}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{query} took {:?}",
            started.elapsed()
        );
    }
    // The instance that still reaches PostgreSQL answers as before.
    let servers = alice.ok("{ servers { id } }", json!({})).await?;
    assert_eq!(servers["servers"].as_array().map(Vec::len), Some(1));
    cluster.stop(vec![api, cut_off]).await
}

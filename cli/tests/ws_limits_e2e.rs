//! WebSocket message limits: a client message larger than the connection's small read buffer
//! (`--ws-read-buffer-bytes`) still arrives whole, and one larger than
//! `--max-ws-message-bytes` ends the connection without touching anyone else's.

mod common;

use std::time::Duration;

use aether_realtime_edge::http::DEFAULT_WS_READ_BUFFER_BYTES;
use common::{community, send, start, Client, Subscriber, CHANNEL_EVENTS};
use serde_json::json;

/// `CHANNEL_EVENTS` grown to about `size` bytes by a GraphQL comment.
fn padded_subscription(size: usize) -> String {
    format!("# {}\n{CHANNEL_EVENTS}", "x".repeat(size))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_larger_than_the_read_buffer_arrives_and_one_over_the_limit_closes(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    alice.consistency = bob.consistency.clone();
    let token = bob.token.clone().unwrap_or_default();

    // Ten times the read buffer, well under the 64 KiB message limit.
    let large = padded_subscription(10 * DEFAULT_WS_READ_BUFFER_BYTES);
    let mut roomy = Subscriber::connect(app.local_addr, &token).await?;
    roomy
        .subscribe("1", &large, json!({ "c": place.channel_id }))
        .await?;
    let mut bystander = Subscriber::connect(app.local_addr, &token).await?;
    bystander
        .subscribe("1", CHANNEL_EVENTS, json!({ "c": place.channel_id }))
        .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    send(&mut alice, &place.channel_id, "first").await?;
    assert_eq!(
        roomy.next_event("1").await?["message"]["body"],
        "first",
        "a 40 KiB subscribe was not served"
    );
    assert_eq!(bystander.next_event("1").await?["message"]["body"], "first");

    // Over 64 KiB: this connection ends, the bystander's goes on.
    let mut greedy = Subscriber::connect(app.local_addr, &token).await?;
    greedy
        .subscribe(
            "1",
            &padded_subscription(65 * 1024),
            json!({ "c": place.channel_id }),
        )
        .await?;
    let outcome = greedy.next_message().await;
    let closed = format!("{:?}", outcome.as_ref().err());
    assert!(
        closed.contains("Size") && closed.contains("message too big"),
        "a 65 KiB message did not close the connection with 1009, message too big: {outcome:?}"
    );
    send(&mut alice, &place.channel_id, "second").await?;
    assert_eq!(
        bystander.next_event("1").await?["message"]["body"],
        "second"
    );
    assert_eq!(roomy.next_event("1").await?["message"]["body"], "second");
    app.stop().await?;
    Ok(())
}

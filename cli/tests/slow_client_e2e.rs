//! A WebSocket client that stops reading is disconnected once a message has waited for it
//! longer than the send timeout, and told why (1008) if it reads again soon after, while the
//! other subscribers of the same channel keep up.

mod common;

use std::time::Duration;

use aether_realtime_edge::http::HttpLimits;
use anyhow::Context;
use common::{
    community, sample, scrape, send, start_with_http, unlimited, Client, Subscriber,
    CHANNEL_EVENTS, PATIENCE,
};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Subscriptions the stalled client holds to the channel, so that each message costs it many
/// times its size and the socket buffers fill quickly.
const STALLED_SUBSCRIPTIONS: usize = 50;
const MESSAGES: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected_and_the_others_keep_up() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let http = HttpLimits {
        ws_send_timeout: Duration::from_millis(500),
        ..unlimited().http
    };
    let app = start_with_http(dir.path(), http).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    alice.consistency = bob.consistency.clone();
    let token = bob.token.clone().unwrap_or_default();

    let mut healthy = Subscriber::connect(app.local_addr, &token).await?;
    healthy
        .subscribe("1", CHANNEL_EVENTS, json!({ "c": place.channel_id }))
        .await?;

    // The stalled client: a small receive buffer, many subscriptions, then it never reads again.
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let stream = socket.connect(app.local_addr).await?;
    let mut request = format!("ws://{}/graphql", app.local_addr).into_client_request()?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
    let (mut stalled, _) = tokio_tungstenite::client_async(request, stream).await?;
    let init = json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } });
    stalled.send(Message::text(init.to_string())).await?;
    let ack = tokio::time::timeout(PATIENCE, stalled.next()).await?;
    anyhow::ensure!(
        matches!(&ack, Some(Ok(Message::Text(text))) if text.contains("connection_ack")),
        "{ack:?}"
    );
    for id in 0..STALLED_SUBSCRIPTIONS {
        let subscribe = json!({ "id": id.to_string(), "type": "subscribe",
            "payload": { "query": CHANNEL_EVENTS, "variables": { "c": place.channel_id } } });
        stalled.send(Message::text(subscribe.to_string())).await?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let body = "x".repeat(3990);
    for n in 0..MESSAGES {
        send(&mut alice, &place.channel_id, &format!("{n} {body}")).await?;
    }
    // The healthy subscriber gets every message, in order, however stuck the other one is.
    for n in 0..MESSAGES {
        let event = healthy.next_event("1").await?;
        let text = event["message"]["body"].as_str().unwrap_or_default();
        assert!(text.starts_with(&format!("{n} ")), "message {n}: {event}");
    }

    // Still reading nothing, the stalled client is let go once a send has waited for it for
    // the whole deadline (the healthy subscriber may finish before that).
    // As an operator sees it: the instance's /metrics counts it.
    let addr = app.local_addr;
    let disconnected = || async move {
        let text = scrape(addr).await?;
        anyhow::Ok(sample(
            &text,
            "aether_websocket_slow_client_disconnects_total",
        ))
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while disconnected().await? == 0.0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        disconnected().await?,
        1.0,
        "the stalled client was not disconnected"
    );

    // The stalled connection was closed by the server: what it can still read ends.
    // A client that reads again soon after, as a phone waking up would, learns why.
    let mut read = 0usize;
    let mut close = None;
    let drained = tokio::time::timeout(PATIENCE, async {
        while let Some(Ok(frame)) = stalled.next().await {
            read += 1;
            if let Message::Close(frame) = frame {
                close = frame;
            }
        }
    })
    .await;
    assert!(
        drained.is_ok(),
        "the stalled connection is still open after {read} frames"
    );
    assert!(
        read < STALLED_SUBSCRIPTIONS * MESSAGES,
        "the stalled client received everything ({read} frames): it was never stalled"
    );
    let close = close.context("the stalled client was not told why it was disconnected")?;
    assert_eq!(u16::from(close.code), 1008, "{close:?}");
    assert!(close.reason.starts_with("too slow"), "{close:?}");
    app.stop().await?;
    Ok(())
}

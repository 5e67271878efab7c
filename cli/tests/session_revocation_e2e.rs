//! Sessions end everywhere at once: after `logout`, `logoutEverywhere` or a reused refresh
//! token, the session's access tokens are refused on HTTP and its WebSockets (both
//! subprotocols) are closed with 4403, on every instance; a socket whose access token expires
//! is closed with 4403 unless the client handed over a fresh token in time.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use common::{Client, Cluster, Subscriber, PATIENCE};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const LOGIN: &str = "mutation($u: String!) { login(input: {username: $u, password: \"correct horse\"}) { accessToken refreshToken } }";
const REFRESH: &str =
    "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken refreshToken } }";
const ME: &str = "{ me { username } }";

fn code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

/// A sign-in: (access token, refresh token).
async fn login(anonymous: &mut Client, username: &str) -> anyhow::Result<(String, String)> {
    let body = anonymous.raw(LOGIN, json!({ "u": username })).await?;
    pair(&body, "login")
}

fn pair(body: &Value, field: &str) -> anyhow::Result<(String, String)> {
    let payload = &body["data"][field];
    Ok((
        payload["accessToken"]
            .as_str()
            .with_context(|| format!("no access token: {body}"))?
            .to_owned(),
        payload["refreshToken"]
            .as_str()
            .with_context(|| format!("no refresh token: {body}"))?
            .to_owned(),
    ))
}

/// `me` over HTTP with `token`: the username, or the error code.
async fn me(addr: SocketAddr, token: &str) -> anyhow::Result<Result<String, String>> {
    let body = Client::new(addr)
        .with_token(token)
        .raw(ME, json!({}))
        .await?;
    Ok(match body["data"]["me"]["username"].as_str() {
        Some(name) => Ok(name.to_owned()),
        None => Err(code(&body).unwrap_or("none").to_owned()),
    })
}

/// A connection of the older `graphql-ws` (subscriptions-transport-ws) protocol.
struct Legacy {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Legacy {
    async fn connect(addr: SocketAddr, token: &str) -> anyhow::Result<Self> {
        let mut request = format!("ws://{addr}/graphql").into_client_request()?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", "graphql-ws".parse()?);
        let (socket, _) =
            tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(request)).await??;
        let mut legacy = Self { socket };
        legacy.init(token).await?;
        Ok(legacy)
    }

    async fn send(&mut self, message: Value) -> anyhow::Result<()> {
        self.socket
            .send(WsMessage::text(message.to_string()))
            .await?;
        Ok(())
    }

    /// `connection_init` with `token`, answered by `connection_ack`.
    async fn init(&mut self, token: &str) -> anyhow::Result<()> {
        self.send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } }))
            .await?;
        let ack = self.next().await?;
        if ack["type"] != "connection_ack" {
            bail!("expected connection_ack, got {ack}");
        }
        Ok(())
    }

    async fn next(&mut self) -> anyhow::Result<Value> {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.socket.next())
                .await
                .context("nothing arrived in time")?
                .context("the connection closed")??;
            match frame {
                WsMessage::Text(text) => return Ok(serde_json::from_str(text.as_str())?),
                WsMessage::Close(frame) => bail!("closed: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// Runs `me` over the socket: the username.
    async fn me(&mut self, id: &str) -> anyhow::Result<String> {
        self.send(json!({ "type": "start", "id": id, "payload": { "query": ME } }))
            .await?;
        let data = self.next().await?;
        data["payload"]["data"]["me"]["username"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("expected me, got {data}"))
    }

    async fn close_code(&mut self) -> anyhow::Result<u16> {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.socket.next())
                .await
                .context("the server did not close in time")?
                .context("the connection ended without a close frame")??;
            match frame {
                WsMessage::Close(Some(frame)) => return Ok(frame.code.into()),
                // A `complete` of a finished operation may still be on its way.
                WsMessage::Text(_) => continue,
                other => bail!("expected a close frame, got {other:?}"),
            }
        }
    }
}

/// Runs `me` over a `graphql-transport-ws` socket: the username.
async fn me_over(subscriber: &mut Subscriber, id: &str) -> anyhow::Result<String> {
    subscriber.subscribe(id, ME, json!({})).await?;
    let data = subscriber.next_data(id, "me").await?;
    data["username"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("expected me, got {data}"))
}

/// The close code of a `graphql-transport-ws` socket, skipping what arrives before it.
async fn closed_with(subscriber: &mut Subscriber) -> anyhow::Result<u16> {
    loop {
        match subscriber.close_frame().await {
            Ok((code, _)) => return Ok(code),
            Err(error) if error.to_string().contains("expected a close frame") => continue,
            Err(error) => return Err(error),
        }
    }
}

#[tokio::test]
async fn an_ended_session_is_refused_on_http_and_its_sockets_close_with_4403() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let app = common::start(dir.path()).await?;
    let addr = app.local_addr;
    let mut anonymous = Client::new(addr);
    anonymous.register("alice").await?;
    let (phone, _) = login(&mut anonymous, "alice").await?;
    let (laptop, _) = login(&mut anonymous, "alice").await?;
    let (tablet, tablet_refresh) = login(&mut anonymous, "alice").await?;

    // Signing out on the phone: its token is refused on HTTP at once, and its sockets, on
    // either protocol, close with 4403; the laptop's session goes on.
    let mut phone_socket = Subscriber::connect(addr, &phone).await?;
    let mut phone_legacy = Legacy::connect(addr, &phone).await?;
    assert_eq!(me_over(&mut phone_socket, "1").await?, "alice");
    assert_eq!(phone_legacy.me("1").await?, "alice");
    let mut laptop_socket = Subscriber::connect(addr, &laptop).await?;
    Client::new(addr)
        .with_token(&phone)
        .ok("mutation { logout }", json!({}))
        .await?;
    assert_eq!(me(addr, &phone).await?, Err("UNAUTHENTICATED".to_owned()));
    assert_eq!(closed_with(&mut phone_socket).await?, 4403);
    assert_eq!(phone_legacy.close_code().await?, 4403);
    // A new socket with the ended session's token is refused at its start.
    let mut again = Subscriber::open(addr).await?;
    again
        .send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {phone}") } }))
        .await?;
    assert_eq!(again.close_frame().await?.0, 4403);
    assert_eq!(me(addr, &laptop).await?, Ok("alice".to_owned()));
    assert_eq!(me_over(&mut laptop_socket, "2").await?, "alice");

    // A reused refresh token ends the tablet's session: its access token and its socket too.
    let mut tablet_socket = Subscriber::connect(addr, &tablet).await?;
    let rotated = anonymous
        .raw(REFRESH, json!({ "t": tablet_refresh }))
        .await?;
    assert_eq!(code(&rotated), None, "{rotated}");
    let reused = anonymous
        .raw(REFRESH, json!({ "t": tablet_refresh }))
        .await?;
    assert_eq!(code(&reused), Some("UNAUTHENTICATED"), "{reused}");
    assert_eq!(me(addr, &tablet).await?, Err("UNAUTHENTICATED".to_owned()));
    assert_eq!(closed_with(&mut tablet_socket).await?, 4403);

    // Signing out everywhere, sent over the laptop's own socket: the laptop's session ends
    // too, its socket closes, and mutations over it are no longer possible.
    laptop_socket
        .subscribe("3", "mutation { logoutEverywhere }", json!({}))
        .await?;
    assert_eq!(closed_with(&mut laptop_socket).await?, 4403);
    assert_eq!(me(addr, &laptop).await?, Err("UNAUTHENTICATED".to_owned()));
    // A sign-in after it works.
    let (later, _) = login(&mut anonymous, "alice").await?;
    assert_eq!(me(addr, &later).await?, Ok("alice".to_owned()));
    app.stop().await?;

    // The ended sessions stay ended across a restart (read back from the log at start).
    let app = common::start(dir.path()).await?;
    assert_eq!(
        me(app.local_addr, &phone).await?,
        Err("UNAUTHENTICATED".to_owned())
    );
    assert_eq!(
        me(app.local_addr, &laptop).await?,
        Err("UNAUTHENTICATED".to_owned())
    );
    assert_eq!(me(app.local_addr, &later).await?, Ok("alice".to_owned()));
    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn changing_the_password_ends_every_session_but_the_new_one() -> anyhow::Result<()> {
    const CHANGE: &str = "mutation($c: String!, $n: String!) { changePassword(input: {currentPassword: $c, newPassword: $n}) { accessToken refreshToken user { username } } }";
    let dir = tempfile::tempdir()?;
    let app = common::start(dir.path()).await?;
    let addr = app.local_addr;
    let mut anonymous = Client::new(addr);
    anonymous.register("alice").await?;
    let (phone, _) = login(&mut anonymous, "alice").await?;
    let (laptop, laptop_refresh) = login(&mut anonymous, "alice").await?;
    let mut laptop_socket = Subscriber::connect(addr, &laptop).await?;
    assert_eq!(me_over(&mut laptop_socket, "1").await?, "alice");
    let mut phone_client = Client::new(addr).with_token(&phone);

    // A wrong current password, a new one that is too short, or no token at all change
    // nothing: every session goes on.
    let wrong = phone_client
        .raw(
            CHANGE,
            json!({ "c": "not my password", "n": "battery staple" }),
        )
        .await?;
    assert_eq!(code(&wrong), Some("BAD_USER_INPUT"), "{wrong}");
    let short = phone_client
        .raw(CHANGE, json!({ "c": "correct horse", "n": "short" }))
        .await?;
    assert_eq!(code(&short), Some("BAD_USER_INPUT"), "{short}");
    let anonymous_change = anonymous
        .raw(
            CHANGE,
            json!({ "c": "correct horse", "n": "battery staple" }),
        )
        .await?;
    assert_eq!(
        code(&anonymous_change),
        Some("UNAUTHENTICATED"),
        "{anonymous_change}"
    );
    assert_eq!(me(addr, &laptop).await?, Ok("alice".to_owned()));
    assert_eq!(me(addr, &phone).await?, Ok("alice".to_owned()));

    // The change: the phone gets a new session; every older one ends at once, the phone's
    // own included, and the laptop's socket closes with 4403.
    let changed = phone_client
        .raw(
            CHANGE,
            json!({ "c": "correct horse", "n": "battery staple" }),
        )
        .await?;
    assert_eq!(code(&changed), None, "{changed}");
    assert_eq!(
        changed["data"]["changePassword"]["user"]["username"],
        "alice"
    );
    let (fresh, _) = pair(&changed, "changePassword")?;
    assert_eq!(me(addr, &fresh).await?, Ok("alice".to_owned()));
    assert_eq!(me(addr, &phone).await?, Err("UNAUTHENTICATED".to_owned()));
    assert_eq!(me(addr, &laptop).await?, Err("UNAUTHENTICATED".to_owned()));
    assert_eq!(closed_with(&mut laptop_socket).await?, 4403);
    let refreshed = anonymous
        .raw(REFRESH, json!({ "t": laptop_refresh }))
        .await?;
    assert_eq!(code(&refreshed), Some("UNAUTHENTICATED"), "{refreshed}");

    // The old password signs in no more; the new one does.
    let old = anonymous.raw(LOGIN, json!({ "u": "alice" })).await?;
    assert_eq!(code(&old), Some("UNAUTHENTICATED"), "{old}");
    let new = anonymous
        .raw(
            "mutation { login(input: {username: \"alice\", password: \"battery staple\"}) { accessToken refreshToken } }",
            json!({}),
        )
        .await?;
    let (signed_in, _) = pair(&new, "login")?;
    app.stop().await?;

    // Across a restart: the ended sessions stay ended, the new ones hold.
    let app = common::start(dir.path()).await?;
    assert_eq!(
        me(app.local_addr, &laptop).await?,
        Err("UNAUTHENTICATED".to_owned())
    );
    assert_eq!(me(app.local_addr, &fresh).await?, Ok("alice".to_owned()));
    assert_eq!(
        me(app.local_addr, &signed_in).await?,
        Ok("alice".to_owned())
    );
    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_socket_lives_as_long_as_its_access_token_unless_a_fresh_one_comes() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let config = aether_cli::roles::EmbeddedConfig {
        data_dir: dir.path().to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        shutdown_grace: Duration::from_secs(2),
        access_token_ttl: Duration::from_secs(8),
        ..common::unlimited()
    };
    let app = aether_cli::roles::start_embedded(config).await?;
    let addr = app.local_addr;
    let mut anonymous = Client::new(addr);
    anonymous.register("alice").await?;
    let (first, refresh) = login(&mut anonymous, "alice").await?;
    let (other_session, _) = login(&mut anonymous, "alice").await?;

    let mut left_alone = Subscriber::connect(addr, &first).await?;
    let mut renewed = Subscriber::connect(addr, &first).await?;
    let mut renewed_legacy = Legacy::connect(addr, &first).await?;
    let mut hijacked = Subscriber::connect(addr, &first).await?;

    // A token of another session is not a fresh token of this one: the socket closes.
    hijacked
        .send(json!({ "type": "ping", "payload": { "authorization": format!("Bearer {other_session}") } }))
        .await?;
    assert_eq!(closed_with(&mut hijacked).await?, 4403);

    // Half-way through the token's life, the client refreshes and hands the fresh token over:
    // in a ping's payload, or, in the older protocol, in a repeated connection_init.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let body = anonymous.raw(REFRESH, json!({ "t": refresh })).await?;
    let (fresh, _) = pair(&body, "refreshToken")?;
    renewed
        .send(json!({ "type": "ping", "payload": { "authorization": format!("Bearer {fresh}") } }))
        .await?;
    let pong = renewed.next_message().await?;
    assert_eq!(pong["type"], "pong", "{pong}");
    renewed_legacy.init(&fresh).await?;

    // The first token lapses: the socket left alone closes with 4403...
    assert_eq!(closed_with(&mut left_alone).await?, 4403);
    // ...while the renewed ones still answer, on both protocols.
    assert_eq!(me_over(&mut renewed, "1").await?, "alice");
    assert_eq!(renewed_legacy.me("1").await?, "alice");
    // And once the fresh token lapses too, they close as well.
    assert_eq!(closed_with(&mut renewed).await?, 4403);
    assert_eq!(renewed_legacy.close_code().await?, 4403);
    app.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_on_one_instance_ends_on_every_instance() -> anyhow::Result<()> {
    let cluster = Cluster::start(2).await?;
    let one = cluster.instance(common::unlimited(), true).await?;
    let two = cluster.instance(common::unlimited(), false).await?;
    let mut anonymous = Client::new(one.local_addr);
    anonymous.register("alice").await?;
    let (phone, _) = login(&mut anonymous, "alice").await?;
    let (laptop, _) = login(&mut anonymous, "alice").await?;
    assert_eq!(me(two.local_addr, &phone).await?, Ok("alice".to_owned()));
    let mut socket_two = Subscriber::connect(two.local_addr, &phone).await?;

    // Signed out through instance one: instance two closes the socket and refuses the token
    // once the log brings the event (no restart, no shared memory).
    Client::new(one.local_addr)
        .with_token(&phone)
        .ok("mutation { logout }", json!({}))
        .await?;
    assert_eq!(
        me(one.local_addr, &phone).await?,
        Err("UNAUTHENTICATED".to_owned())
    );
    assert_eq!(closed_with(&mut socket_two).await?, 4403);
    assert_eq!(
        me(two.local_addr, &phone).await?,
        Err("UNAUTHENTICATED".to_owned())
    );
    assert_eq!(me(two.local_addr, &laptop).await?, Ok("alice".to_owned()));

    // An instance started afterwards knows it too (read from the event store as it starts).
    let three = cluster.instance(common::unlimited(), false).await?;
    assert_eq!(
        me(three.local_addr, &phone).await?,
        Err("UNAUTHENTICATED".to_owned())
    );
    assert_eq!(me(three.local_addr, &laptop).await?, Ok("alice".to_owned()));
    cluster.stop(vec![one, two, three]).await
}

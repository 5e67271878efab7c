//! Sessions end to end through the embedded application: refresh tokens rotate on every use,
//! a reused one ends its whole family, and signing out (here or everywhere) stops refreshes.

mod common;

use common::{start, Client};
use serde_json::{json, Value};

const REFRESH: &str =
    "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken refreshToken user { username } } }";
const LOGIN: &str =
    "mutation($u: String!) { login(input: {username: $u, password: \"correct horse\"}) { accessToken refreshToken } }";

async fn refresh(client: &mut Client, token: &str) -> anyhow::Result<Value> {
    client.raw(REFRESH, json!({ "t": token })).await
}

fn code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

fn tokens(body: &Value, field: &str) -> (String, String) {
    let payload = &body["data"][field];
    (
        payload["accessToken"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        payload["refreshToken"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_ends_the_family() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    anonymous.register("alice").await?;
    let login = anonymous.raw(LOGIN, json!({ "u": "alice" })).await?;
    let (_, first) = tokens(&login, "login");

    // Each refresh answers with the next token; the previous one is spent.
    let rotated = refresh(&mut anonymous, &first).await?;
    assert_eq!(code(&rotated), None, "{rotated}");
    assert_eq!(rotated["data"]["refreshToken"]["user"]["username"], "alice");
    let (access, second) = tokens(&rotated, "refreshToken");
    assert_ne!(first, second);
    let mut signed_in = Client::new(app.local_addr).with_token(&access);
    signed_in.ok("{ me { username } }", json!({})).await?;

    // The spent token comes back (a thief, or the victim after the thief): refused, and the
    // whole session ends, so the newest token is refused too.
    let reused = refresh(&mut anonymous, &first).await?;
    assert_eq!(code(&reused), Some("UNAUTHENTICATED"), "{reused}");
    assert!(reused["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("already used"));
    let after = refresh(&mut anonymous, &second).await?;
    assert_eq!(code(&after), Some("UNAUTHENTICATED"), "{after}");

    // Signing in again starts a new family.
    let again = anonymous.raw(LOGIN, json!({ "u": "alice" })).await?;
    let (_, fresh) = tokens(&again, "login");
    assert_eq!(code(&refresh(&mut anonymous, &fresh).await?), None);

    // An access token is not a refresh token, and garbage is not a token.
    assert_eq!(
        code(&refresh(&mut anonymous, &access).await?),
        Some("UNAUTHENTICATED")
    );
    assert_eq!(
        code(&refresh(&mut anonymous, "not.a.token").await?),
        Some("UNAUTHENTICATED")
    );
    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn signing_out_here_or_everywhere_stops_refreshes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    anonymous.register("alice").await?;
    let phone = anonymous.raw(LOGIN, json!({ "u": "alice" })).await?;
    let laptop = anonymous.raw(LOGIN, json!({ "u": "alice" })).await?;
    let tablet = anonymous.raw(LOGIN, json!({ "u": "alice" })).await?;
    let (phone_access, phone_refresh) = tokens(&phone, "login");
    let (laptop_access, laptop_refresh) = tokens(&laptop, "login");
    let (_, tablet_refresh) = tokens(&tablet, "login");

    // Signing out on the phone ends the phone's session only.
    let mut on_phone = Client::new(app.local_addr).with_token(&phone_access);
    assert_eq!(
        on_phone.ok("mutation { logout }", json!({})).await?["logout"],
        true
    );
    assert_eq!(
        code(&refresh(&mut anonymous, &phone_refresh).await?),
        Some("UNAUTHENTICATED")
    );
    let laptop_next = refresh(&mut anonymous, &laptop_refresh).await?;
    assert_eq!(code(&laptop_next), None, "{laptop_next}");
    let (_, laptop_refresh) = tokens(&laptop_next, "refreshToken");

    // Signing out everywhere ends the laptop's and the tablet's sessions too.
    let mut on_laptop = Client::new(app.local_addr).with_token(&laptop_access);
    let everywhere = on_laptop
        .ok("mutation { logoutEverywhere }", json!({}))
        .await?;
    assert_eq!(everywhere["logoutEverywhere"], true);
    for token in [&laptop_refresh, &tablet_refresh] {
        assert_eq!(
            code(&refresh(&mut anonymous, token).await?),
            Some("UNAUTHENTICATED")
        );
    }
    // A sign-in after it works.
    let later = anonymous.raw(LOGIN, json!({ "u": "alice" })).await?;
    let (_, later_refresh) = tokens(&later, "login");
    assert_eq!(code(&refresh(&mut anonymous, &later_refresh).await?), None);

    // Signed out, nothing to sign out of.
    let anonymous_logout = anonymous.raw("mutation { logout }", json!({})).await?;
    assert_eq!(code(&anonymous_logout), Some("UNAUTHENTICATED"));
    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn security_events_are_in_the_log() -> anyhow::Result<()> {
    use aether_schemas::EventLog;

    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    anonymous.register("alice").await?;
    let wrong = anonymous
        .raw(
            "mutation { login(input: {username: \"alice\", password: \"wrong horse\"}) { accessToken } }",
            json!({}),
        )
        .await?;
    assert_eq!(code(&wrong), Some("UNAUTHENTICATED"));
    // An unknown account leaves nothing: there is no one to record it for.
    anonymous
        .raw(
            "mutation { login(input: {username: \"nobody\", password: \"wrong horse\"}) { accessToken } }",
            json!({}),
        )
        .await?;
    let login = anonymous.raw(LOGIN, json!({ "u": "alice" })).await?;
    let (_, first) = tokens(&login, "login");
    refresh(&mut anonymous, &first).await?;
    refresh(&mut anonymous, &first).await?;
    app.stop().await?;

    let log = aether_commands::SqliteEventStore::open(&dir.path().join("events.db")).await?;
    let events = log.read_after(0, 10_000).await?;
    let types: Vec<&str> = events
        .iter()
        .map(|event| event.envelope.event_type.as_str())
        .collect();
    assert_eq!(
        types.iter().filter(|t| **t == "LoginFailed").count(),
        1,
        "{types:?}"
    );
    let reuse = events
        .iter()
        .find(|event| event.envelope.event_type == "SessionEnded")
        .map(|event| event.envelope.data.clone())
        .unwrap_or_default();
    assert_eq!(reuse["reason"], "REFRESH_TOKEN_REUSED");
    assert_eq!(reuse["presented_generation"], 0);
    log.close().await;
    Ok(())
}

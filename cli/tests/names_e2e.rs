//! Names that cannot deceive, through GraphQL: display, server and channel names are
//! normalised (NFC) and lose zero-width and direction-changing characters, a name of nothing
//! else is refused, as is a body of nothing else; a member whose display name copies another
//! member's is shown with their username beside it.

mod common;

use common::{community, start, Client};
use serde_json::{json, Value};

const PROFILE: &str = "mutation($n: String!) { updateProfile(displayName: $n) { displayName } }";

fn code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

#[tokio::test]
async fn invisible_characters_do_not_make_a_name() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut bob, _) = anonymous.register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;

    // Nothing visible: refused, for every kind of name and for a body.
    let invisible = "\u{200B}\u{202E}\u{2066}\u{FEFF}";
    let register = anonymous
        .raw(
            "mutation($n: String!) { register(input: {username: \"ghost\", password: \"correct horse\", displayName: $n}) { user { id } } }",
            json!({ "n": invisible }),
        )
        .await?;
    assert_eq!(code(&register), Some("BAD_USER_INPUT"), "{register}");
    for (query, variables) in [
        (PROFILE, json!({ "n": invisible })),
        (
            "mutation($n: String!) { createServer(input: {name: $n}) { id } }",
            json!({ "n": invisible }),
        ),
        (
            "mutation($s: ID!, $n: String!) { createChannel(input: {serverId: $s, name: $n}) { id } }",
            json!({ "s": place.server_id, "n": invisible }),
        ),
        (
            "mutation($c: ID!, $n: String!) { sendMessage(input: {channelId: $c, body: $n}) { id } }",
            json!({ "c": place.channel_id, "n": invisible }),
        ),
    ] {
        let body = alice.raw(query, variables).await?;
        assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{query}: {body}");
    }

    // Hidden characters are removed, and the same name typed two ways is one name.
    let stripped = alice
        .ok(PROFILE, json!({ "n": "Al\u{200B}ice\u{202E}" }))
        .await?;
    assert_eq!(stripped["updateProfile"]["displayName"], "Alice");
    let composed = bob.ok(PROFILE, json!({ "n": "Ame\u{301}lie" })).await?;
    assert_eq!(composed["updateProfile"]["displayName"], "Am\u{e9}lie");
    let channel = alice
        .ok(
            "mutation($s: ID!) { createChannel(input: {serverId: $s, name: \"ne\u{301}ws\u{200D}\"}) { name } }",
            json!({ "s": place.server_id }),
        )
        .await?;
    assert_eq!(channel["createChannel"]["name"], "n\u{e9}ws");
    app.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_copied_display_name_is_shown_with_the_username() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let app = start(dir.path()).await?;
    let mut anonymous = Client::new(app.local_addr);
    let (mut alice, _) = anonymous.register("alice").await?;
    let (mut mallory, _) = anonymous.register("mallory").await?;
    let place = community(&mut alice, &mut mallory).await?;
    alice.ok(PROFILE, json!({ "n": "Alice" })).await?;
    let members = "query($s: ID!) { server(id: $s) { members { edges { node { displayLabel user { username displayName } } } } } }";
    let labels = |data: &Value| -> Vec<(String, String)> {
        data["server"]["members"]["edges"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|edge| {
                (
                    edge["node"]["user"]["username"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    edge["node"]["displayLabel"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect()
    };
    mallory.consistency = alice.consistency.clone();
    let before = mallory.ok(members, json!({ "s": place.server_id })).await?;
    assert_eq!(
        labels(&before),
        [
            ("alice".to_owned(), "Alice".to_owned()),
            ("mallory".to_owned(), "mallory".to_owned())
        ]
    );

    // Mallory copies alice's name (and even hides a zero-width space in it): both are shown
    // with their usernames, so nobody can pass for the other.
    mallory.ok(PROFILE, json!({ "n": "alic\u{200B}e" })).await?;
    alice.consistency = mallory.consistency.clone();
    let after = alice.ok(members, json!({ "s": place.server_id })).await?;
    assert_eq!(
        labels(&after),
        [
            ("alice".to_owned(), "Alice (@alice)".to_owned()),
            ("mallory".to_owned(), "alice (@mallory)".to_owned())
        ]
    );
    app.stop().await?;
    Ok(())
}

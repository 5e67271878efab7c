//! The web client's files served beside the API (`--web-dir`): the page and its hashed assets
//! with their content types and cache headers, the page again for any client route (a reload
//! deep inside the app), a 404 for a missing asset, and the API routes untouched.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use aether_cli::roles::{start_embedded, EmbeddedConfig};

#[tokio::test]
async fn the_client_is_served_at_root_and_the_api_stays_at_graphql() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let web = tempfile::tempdir()?;
    std::fs::create_dir(web.path().join("assets"))?;
    std::fs::write(
        web.path().join("index.html"),
        "<!doctype html><title>Aether</title>",
    )?;
    std::fs::write(web.path().join("assets/index-abc123.js"), "console.log(1)")?;
    // What the build leaves beside it (the bytes need not be real gzip for this test).
    std::fs::write(web.path().join("assets/index-abc123.js.gz"), "gzipped")?;
    let running = start_embedded(EmbeddedConfig {
        data_dir: data.path().to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        shutdown_grace: Duration::from_secs(2),
        web_dir: Some(web.path().to_path_buf()),
        ..common::unlimited()
    })
    .await?;
    let base = format!("http://{}", running.local_addr);
    let http = reqwest::Client::new();

    let page = http.get(format!("{base}/")).send().await?;
    assert_eq!(page.status(), 200);
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(header(&page, "content-type").starts_with("text/html"));
    assert_eq!(header(&page, "cache-control"), "no-cache");
    assert!(header(&page, "content-security-policy").contains("script-src 'self'"));
    assert!(page.text().await?.contains("<title>Aether</title>"));

    let script = http
        .get(format!("{base}/assets/index-abc123.js"))
        .send()
        .await?;
    assert_eq!(script.status(), 200);
    assert!(header(&script, "content-type").contains("javascript"));
    assert!(header(&script, "cache-control").contains("immutable"));

    // A client route, reloaded: the page, so the client can route it.
    let deep = http
        .get(format!("{base}/servers/123/channels/456"))
        .send()
        .await?;
    assert_eq!(deep.status(), 200);
    assert!(header(&deep, "content-type").starts_with("text/html"));

    let missing = http
        .get(format!("{base}/assets/index-old.js"))
        .send()
        .await?;
    assert_eq!(missing.status(), 404);
    assert_eq!(header(&missing, "cache-control"), "no-cache");

    let api = http
        .post(format!("{base}/graphql"))
        .json(&serde_json::json!({ "query": "{ __typename }" }))
        .send()
        .await?;
    assert_eq!(api.status(), 200);
    assert!(header(&api, "content-type").starts_with("application/json"));
    assert_eq!(api.text().await?, r#"{"data":{"__typename":"QueryRoot"}}"#);
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await?
            .text()
            .await?,
        "ok"
    );

    running.shutdown.cancel();
    running.wait().await?;
    Ok(())
}

//! What browsers and proxies see of every answer: CORS for the allowed origins only (none in the
//! distributed mode's default, pages of this machine in the embedded mode's), a request id that
//! is the client's when it sent one, and headers that stop content sniffing and referrer leaks.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use aether_cli::roles::{start_embedded, EmbeddedConfig, Running};
use aether_realtime_edge::http::{AllowedOrigins, HttpLimits};
use reqwest::{Client, Method, Response};

async fn start(origins: AllowedOrigins) -> anyhow::Result<(tempfile::TempDir, Running)> {
    let data = tempfile::tempdir()?;
    let defaults = common::unlimited();
    let running = start_embedded(EmbeddedConfig {
        data_dir: data.path().to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        shutdown_grace: Duration::from_secs(2),
        http: HttpLimits {
            allowed_origins: origins,
            ..defaults.http.clone()
        },
        ..defaults
    })
    .await?;
    Ok((data, running))
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A browser's preflight for a POST with a bearer token from a page of `origin`.
async fn preflight(http: &Client, base: &str, origin: &str) -> anyhow::Result<Response> {
    Ok(http
        .request(Method::OPTIONS, format!("{base}/graphql"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,x-consistency-token",
        )
        .send()
        .await?)
}

/// A query from a page of `origin`.
async fn query(http: &Client, base: &str, origin: &str) -> anyhow::Result<Response> {
    Ok(http
        .post(format!("{base}/graphql"))
        .header("origin", origin)
        .json(&serde_json::json!({ "query": "{ __typename }" }))
        .send()
        .await?)
}

#[tokio::test]
async fn only_the_named_origins_may_read_answers() -> anyhow::Result<()> {
    let (_data, running) = start(AllowedOrigins::List(vec![
        "https://chat.example.com".to_owned()
    ]))
    .await?;
    let base = format!("http://{}", running.local_addr);
    let http = Client::new();

    let allowed = preflight(&http, &base, "https://chat.example.com").await?;
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(
        header(&allowed, "access-control-allow-origin").as_deref(),
        Some("https://chat.example.com")
    );
    let headers = header(&allowed, "access-control-allow-headers").unwrap_or_default();
    for needed in ["authorization", "content-type", "x-consistency-token"] {
        assert!(headers.contains(needed), "{needed} not allowed: {headers}");
    }
    let methods = header(&allowed, "access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains("POST"), "{methods}");
    let answer = query(&http, &base, "https://chat.example.com").await?;
    assert_eq!(
        header(&answer, "access-control-allow-origin").as_deref(),
        Some("https://chat.example.com")
    );
    assert!(header(&answer, "access-control-expose-headers")
        .unwrap_or_default()
        .contains("x-request-id"));

    // Another origin, or a look-alike, gets no CORS headers: the browser keeps the answer from
    // the page (the request itself is answered; CORS is the browser's rule).
    for origin in [
        "https://evil.example",
        "https://chat.example.com.evil.example",
        "http://chat.example.com",
    ] {
        let refused = preflight(&http, &base, origin).await?;
        assert_eq!(
            header(&refused, "access-control-allow-origin"),
            None,
            "{origin}"
        );
        let answer = query(&http, &base, origin).await?;
        assert_eq!(
            header(&answer, "access-control-allow-origin"),
            None,
            "{origin}"
        );
    }

    running.shutdown.cancel();
    running.wait().await?;
    Ok(())
}

#[tokio::test]
async fn the_embedded_default_allows_pages_of_this_machine_and_the_distributed_default_none(
) -> anyhow::Result<()> {
    let http = Client::new();
    let (_data, local) = start(AllowedOrigins::Localhost).await?;
    let base = format!("http://{}", local.local_addr);
    for origin in [
        "http://localhost:5173",
        "http://127.0.0.1:3000",
        "http://[::1]:8080",
        "http://localhost",
    ] {
        let answer = query(&http, &base, origin).await?;
        assert_eq!(
            header(&answer, "access-control-allow-origin").as_deref(),
            Some(origin)
        );
    }
    for origin in [
        "http://localhost.evil.example",
        "http://127.0.0.1.evil.example:80",
        "https://example.com",
        "null",
    ] {
        let answer = query(&http, &base, origin).await?;
        assert_eq!(
            header(&answer, "access-control-allow-origin"),
            None,
            "{origin}"
        );
    }
    local.shutdown.cancel();
    local.wait().await?;

    let (_data, none) = start(AllowedOrigins::None).await?;
    let base = format!("http://{}", none.local_addr);
    for origin in ["http://localhost:5173", "https://chat.example.com"] {
        let answer = query(&http, &base, origin).await?;
        assert_eq!(header(&answer, "access-control-allow-origin"), None);
        let refused = preflight(&http, &base, origin).await?;
        assert_eq!(header(&refused, "access-control-allow-origin"), None);
    }
    none.shutdown.cancel();
    none.wait().await?;
    Ok(())
}

#[tokio::test]
async fn every_answer_names_its_request_and_forbids_sniffing() -> anyhow::Result<()> {
    let (_data, running) = start(AllowedOrigins::None).await?;
    let base = format!("http://{}", running.local_addr);
    let http = Client::new();

    let mut ids = Vec::new();
    for path in ["/graphql", "/healthz", "/readyz", "/.well-known/jwks.json"] {
        let answer = if path == "/graphql" {
            query(&http, &base, "https://x.example").await?
        } else {
            http.get(format!("{base}{path}")).send().await?
        };
        assert_eq!(
            header(&answer, "x-content-type-options").as_deref(),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            header(&answer, "referrer-policy").as_deref(),
            Some("no-referrer"),
            "{path}"
        );
        let id = header(&answer, "x-request-id").unwrap_or_default();
        assert_eq!(id.len(), 36, "{path}: a UUID, not {id:?}");
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "each request its own id");

    // A proxy's (or client's) id is kept, so one request can be followed through both logs.
    let answer = http
        .get(format!("{base}/healthz"))
        .header("x-request-id", "lb-7f3a")
        .send()
        .await?;
    assert_eq!(header(&answer, "x-request-id").as_deref(), Some("lb-7f3a"));

    running.shutdown.cancel();
    running.wait().await?;
    Ok(())
}

#[test]
fn an_origin_that_is_not_one_is_refused_at_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aether"))
        .args(["dev", "--cors-origins", "https://chat.example.com/app"])
        .output()
        .expect("aether runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--cors-origins") && stderr.contains("no path"),
        "{stderr}"
    );
}

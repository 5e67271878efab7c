//! GraphQL over HTTP as its specification has it: queries over GET with URL-encoded variables,
//! mutations never over GET, `application/graphql-response+json` for clients that ask for it
//! (request errors then a 4xx), and no `data` entry when nothing was executed.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use aether_cli::roles::{start_embedded, EmbeddedConfig};
use reqwest::{Client, Response};
use serde_json::{json, Value};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

fn content_type(response: &Response) -> String {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn post(http: &Client, base: &str, accept: &str, body: Value) -> anyhow::Result<Response> {
    Ok(http
        .post(format!("{base}/graphql"))
        .header("accept", accept)
        .json(&body)
        .send()
        .await?)
}

#[tokio::test]
async fn queries_over_get_mutations_only_over_post_and_request_errors_by_media_type(
) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let running = start_embedded(EmbeddedConfig {
        data_dir: data.path().to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        shutdown_grace: Duration::from_secs(2),
        ..common::unlimited()
    })
    .await?;
    let base = format!("http://{}", running.local_addr);
    let http = Client::new();

    // A query over GET, with its variables as URL-encoded JSON.
    let answer = http
        .get(format!("{base}/graphql"))
        .query(&[
            (
                "query",
                "query Q($id: ID!) { channel(id: $id) { id } __typename }",
            ),
            (
                "variables",
                r#"{"id":"00000000-0000-0000-0000-000000000000"}"#,
            ),
            ("operationName", "Q"),
        ])
        .send()
        .await?;
    assert_eq!(answer.status(), 200);
    assert!(content_type(&answer).starts_with("application/json"));
    let body: Value = answer.json().await?;
    assert_eq!(body["data"]["__typename"], "QueryRoot", "{body}");

    // A mutation over GET is refused and changes nothing.
    let mutation = "mutation { register(input: { username: \"getter\", password: \"a long enough password\" }) { accessToken } }";
    let refused = http
        .get(format!("{base}/graphql"))
        .header("accept", GRAPHQL_RESPONSE)
        .query(&[("query", mutation)])
        .send()
        .await?;
    assert_eq!(refused.status(), 405);
    assert_eq!(
        refused.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    let login = post(
        &http,
        &base,
        "application/json",
        json!({ "query": "mutation { login(input: { username: \"getter\", password: \"a long enough password\" }) { accessToken } }" }),
    )
    .await?
    .json::<Value>()
    .await?;
    assert!(
        login["errors"].is_array(),
        "no account was made over GET: {login}"
    );

    // Asked for the GraphQL response type: a success is 200 of that type...
    let ok = post(
        &http,
        &base,
        GRAPHQL_RESPONSE,
        json!({ "query": "{ __typename }" }),
    )
    .await?;
    assert_eq!(ok.status(), 200);
    assert!(content_type(&ok).starts_with(GRAPHQL_RESPONSE));
    // ...and a document that does not parse or validate is a 400 with no data entry.
    for document in [
        "{ __typename",
        "{ noSuchField }",
        "query { me { id } } query { me { id } }",
    ] {
        let answer = post(&http, &base, GRAPHQL_RESPONSE, json!({ "query": document })).await?;
        assert_eq!(answer.status(), 400, "{document}");
        assert!(content_type(&answer).starts_with(GRAPHQL_RESPONSE));
        let body: Value = answer.json().await?;
        assert!(body.get("data").is_none(), "{document}: {body}");
        assert!(body["errors"][0]["message"].is_string(), "{body}");
        // The same as plain JSON: 200, as older clients expect, still with no data entry.
        let answer = post(
            &http,
            &base,
            "application/json",
            json!({ "query": document }),
        )
        .await?;
        assert_eq!(answer.status(), 200, "{document}");
        let body: Value = answer.json().await?;
        assert!(body.get("data").is_none(), "{document}: {body}");
    }
    // An error while executing keeps its data entry and 200: the request itself was good.
    let partial = post(
        &http,
        &base,
        GRAPHQL_RESPONSE,
        json!({ "query": "{ me { id } }" }),
    )
    .await?;
    assert_eq!(partial.status(), 200);
    let body: Value = partial.json().await?;
    assert!(body.get("data").is_some(), "{body}");

    // Not a GraphQL request at all: 400 whatever the type.
    let not_json = http
        .post(format!("{base}/graphql"))
        .header("content-type", "application/json")
        .body("{ not json")
        .send()
        .await?;
    assert_eq!(not_json.status(), 400);
    let untyped = http
        .post(format!("{base}/graphql"))
        .body(r#"{"query": "{ __typename }"}"#)
        .send()
        .await?;
    assert_eq!(untyped.status(), 415, "a POST must say it carries JSON");
    let no_query = http
        .get(format!("{base}/graphql"))
        .header("accept", "application/json")
        .send()
        .await?;
    assert_eq!(no_query.status(), 400);
    // A browser asking for a page still gets one.
    let page = http
        .get(format!("{base}/graphql"))
        .header("accept", "text/html")
        .send()
        .await?;
    assert_eq!(page.status(), 200);
    assert!(content_type(&page).starts_with("text/html"));

    running.shutdown.cancel();
    running.wait().await?;
    Ok(())
}

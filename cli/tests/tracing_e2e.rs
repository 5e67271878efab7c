//! One trace per message across every process: a message sent to an API process with a W3C
//! `traceparent` header yields, in that trace, the API's request span, the relay's publish,
//! each projector's apply and the edge's delivery, linked parent to child, as OTLP/HTTP
//! exports them to a collector (here a small one in the test). And in the embedded mode, one
//! process's trace of the same path: request, command, append, apply, delivery.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use common::processes::{Deployment, PATIENCE};
use common::{community, Client, Subscriber};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;
use serde_json::json;

const TYPING: &str = "subscription($c: ID!) { typing(channelId: $c) { typing user { id } } }";

/// The longest the test waits for the whole trace to have arrived.
const TRACE_WAIT: Duration = Duration::from_secs(30);

/// One span as the collector received it (ids in lowercase hex).
#[derive(Clone, Debug)]
struct Received {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

/// An OTLP/HTTP collector that keeps every span it is sent.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

impl Collector {
    async fn start() -> anyhow::Result<(Self, SocketAddr)> {
        let collector = Self::default();
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(receive))
            .with_state(collector.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((collector, addr))
    }

    fn trace(&self, trace_id: &str) -> Vec<Received> {
        self.spans
            .lock()
            .map(|spans| {
                spans
                    .iter()
                    .filter(|span| span.trace_id == trace_id)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

async fn receive(State(collector): State<Collector>, body: Bytes) -> StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|resource| &resource.attributes)
            .find(|attribute| attribute.key == "service.name")
            .and_then(|attribute| attribute.value.as_ref())
            .and_then(|value| match &value.value {
                Some(any_value::Value::StringValue(name)) => Some(name.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                received.push(Received {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                });
            }
        }
    }
    if let Ok(mut spans) = collector.spans.lock() {
        spans.extend(received);
    }
    StatusCode::OK
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// What is still missing from `trace` for it to be the whole path of one message, linked:
/// `None` once it is complete.
fn missing(trace: &[Received], client_span: &str) -> Option<String> {
    let has = |service: &dyn Fn(&str) -> bool, name: &str| {
        trace
            .iter()
            .any(|span| service(&span.service) && span.name == name)
    };
    for (service, name, found) in [
        (
            "aether-api",
            "graphql Send",
            has(&|s| s == "aether-api", "graphql Send"),
        ),
        (
            "aether-relay",
            "relay publish",
            has(&|s| s == "aether-relay", "relay publish"),
        ),
        (
            "aether-projector-*",
            "apply",
            has(&|s| s.starts_with("aether-projector-"), "apply"),
        ),
        (
            "aether-edge",
            "deliver",
            has(&|s| s == "aether-edge", "deliver"),
        ),
    ] {
        if !found {
            return Some(format!("no {name:?} span of {service}"));
        }
    }
    let ids: HashSet<&str> = trace.iter().map(|span| span.span_id.as_str()).collect();
    for span in trace {
        if span.parent_span_id != client_span && !ids.contains(span.parent_span_id.as_str()) {
            return Some(format!(
                "the parent of {:?} of {} is not in the trace (yet)",
                span.name, span.service
            ));
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_follows_a_message_from_the_api_through_the_relay_and_projectors_to_the_edge(
) -> anyhow::Result<()> {
    let (collector, collector_addr) = Collector::start().await?;
    let mut deployment = Deployment::start("tracing_e2e", PATIENCE * 2).await?;
    deployment.env = vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
            format!("http://{collector_addr}"),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "100".to_owned()),
    ];
    let mut processes = deployment.background().await?;
    let (api_home, edge_home) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (api_process, api) = deployment.instance("api", "api", api_home.path()).await?;
    processes.push(api_process);
    let (edge_process, edge) = deployment
        .instance("edge", "edge", edge_home.path())
        .await?;
    processes.push(edge_process);

    let (mut alice, _) = Client::new(api).register("alice").await?;
    let (mut bob, _) = Client::new(api).register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    let mut subscriber =
        Subscriber::connect_to_process(edge, bob.token.as_deref().unwrap_or("")).await?;
    subscriber.watch_channel("1", &place.channel_id).await?;

    // The client's own span: the API's request span is its child.
    let client_span = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    let (trace_id, message_id) = send_traced(
        &alice,
        &format!("http://{api}/graphql"),
        &place.channel_id,
        &client_span,
    )
    .await?;
    let event = subscriber.next_process_event("1").await?;
    assert_eq!(event["message"]["id"], message_id, "{event}");

    let started = Instant::now();
    loop {
        let trace = collector.trace(&trace_id);
        match missing(&trace, &client_span) {
            None => {
                let by_service: HashMap<&str, Vec<&str>> =
                    trace.iter().fold(HashMap::new(), |mut map, span| {
                        map.entry(span.service.as_str())
                            .or_default()
                            .push(span.name.as_str());
                        map
                    });
                eprintln!("the message's trace: {by_service:?}");
                // The request's span is the root of the server side, under the client's.
                let roots: Vec<&Received> = trace
                    .iter()
                    .filter(|span| span.parent_span_id == client_span)
                    .collect();
                assert_eq!(roots.len(), 1, "{roots:?}");
                assert_eq!(roots[0].service, "aether-api");
                break;
            }
            Some(what) if started.elapsed() > TRACE_WAIT => {
                bail!("the trace was not complete within {TRACE_WAIT:?}: {what}; got {trace:#?}")
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }

    // Each hop's span is the child of the previous process's.
    let trace = collector.trace(&trace_id);
    let parent_of = |span: &Received| {
        trace
            .iter()
            .find(|other| other.span_id == span.parent_span_id)
            .map(|other| (other.service.as_str(), other.name.as_str()))
    };
    for span in &trace {
        let parent = parent_of(span);
        match span.name.as_str() {
            "relay publish" => assert_eq!(parent.map(|p| p.0), Some("aether-api"), "{span:?}"),
            "apply" => assert_eq!(parent, Some(("aether-relay", "relay publish")), "{span:?}"),
            "deliver" if span.service == "aether-edge" => assert!(
                parent.is_some_and(|(service, name)| {
                    service.starts_with("aether-projector-") && name == "apply"
                }),
                "{span:?} under {parent:?}"
            ),
            _ => {}
        }
    }

    // A typing signal's trace: the request on the API, its delivery on the edge.
    subscriber
        .subscribe("t", TYPING, json!({ "c": place.channel_id }))
        .await?;
    // The edge has set the subscription up once it answers a query on the same socket.
    subscriber.execute("q", "{ __typename }", json!({})).await?;
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let client_span = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    let typed: serde_json::Value = alice
        .http
        .post(format!("http://{api}/graphql"))
        .bearer_auth(alice.token.as_deref().unwrap_or(""))
        .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
        .json(&json!({
            "query": "mutation Typing($c: ID!) { startTyping(channelId: $c) }",
            "variables": { "c": place.channel_id },
            "operationName": "Typing",
        }))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(typed["data"]["startTyping"], true, "{typed}");
    let started = Instant::now();
    loop {
        let trace = collector.trace(&trace_id);
        let request = trace
            .iter()
            .find(|span| span.service == "aether-api" && span.name == "graphql Typing");
        let delivered = trace
            .iter()
            .find(|span| span.service == "aether-edge" && span.name == "deliver");
        if let (Some(request), Some(delivered)) = (request, delivered) {
            assert_eq!(delivered.parent_span_id, request.span_id, "{trace:#?}");
            break;
        }
        if started.elapsed() > TRACE_WAIT {
            bail!("the typing signal's trace was not complete within {TRACE_WAIT:?}: {trace:#?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    subscriber.disconnect().await?;
    processes.reverse();
    deployment.finish(processes).await
}

/// Sends a message as `client` with a `traceparent` header that starts a trace of its own
/// under `client_span`: the trace's id and the message's.
async fn send_traced(
    client: &Client,
    url: &str,
    channel: &str,
    client_span: &str,
) -> anyhow::Result<(String, String)> {
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let sent: serde_json::Value = client
        .http
        .post(url)
        .bearer_auth(client.token.as_deref().unwrap_or(""))
        .header("traceparent", format!("00-{trace_id}-{client_span}-01"))
        .json(&json!({
            "query": "mutation Send($c: ID!) { sendMessage(input: {channelId: $c, body: \"traced\"}) { id } }",
            "variables": { "c": channel },
            "operationName": "Send",
        }))
        .send()
        .await?
        .json()
        .await?;
    let message_id = sent["data"]["sendMessage"]["id"]
        .as_str()
        .with_context(|| format!("no message id in {sent}"))?;
    Ok((trace_id, message_id.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_embedded_mode_one_trace_follows_a_message_from_the_request_to_its_delivery(
) -> anyhow::Result<()> {
    let (collector, collector_addr) = Collector::start().await?;
    let dir = tempfile::tempdir()?;
    let endpoint = format!("http://{collector_addr}");
    let dev = common::dev_process::spawn_dev_with_env(
        dir.path(),
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )?;
    let addr: SocketAddr = dev
        .url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .parse()?;
    let (mut alice, _) = Client::new(addr).register("alice").await?;
    let (mut bob, _) = Client::new(addr).register("bob").await?;
    let place = community(&mut alice, &mut bob).await?;
    let mut subscriber = Subscriber::connect(addr, bob.token.as_deref().unwrap_or("")).await?;
    subscriber.watch_channel("1", &place.channel_id).await?;

    let client_span = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    let url = format!("http://{addr}/graphql");
    let (trace_id, message_id) = send_traced(&alice, &url, &place.channel_id, &client_span).await?;
    let event = subscriber.next_event("1").await?;
    assert_eq!(event["message"]["id"], message_id.as_str(), "{event}");

    // Every hop, in one process, each span the child of the one before.
    let path = ["graphql Send", "command", "apply", "deliver"];
    let started = Instant::now();
    let trace = loop {
        let trace = collector.trace(&trace_id);
        let linked = |name: &str| {
            trace
                .iter()
                .any(|span| span.name == name && span.service == "aether-dev")
        };
        if path.iter().all(|name| linked(name)) {
            break trace;
        }
        if started.elapsed() > TRACE_WAIT {
            bail!("the trace was not complete within {TRACE_WAIT:?}: {trace:#?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let find = |name: &str| trace.iter().find(|span| span.name == name);
    let parent_name = |name: &str| {
        let span = find(name)?;
        trace
            .iter()
            .find(|other| other.span_id == span.parent_span_id)
            .map(|other| other.name.clone())
    };
    assert_eq!(
        find("graphql Send").map(|span| span.parent_span_id.clone()),
        Some(client_span)
    );
    assert_eq!(parent_name("command").as_deref(), Some("graphql Send"));
    assert_eq!(
        parent_name("event store append").as_deref(),
        Some("command")
    );
    assert_eq!(parent_name("deliver").as_deref(), Some("apply"));
    assert_applied_under(&trace, "graphql Send");

    // A mutation sent over the WebSocket is traced the same way, under the `traceparent` the
    // client put in the operation's `extensions`.
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let client_span = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    let mut socket = Subscriber::connect(addr, alice.token.as_deref().unwrap_or("")).await?;
    socket
        .send(json!({ "id": "w", "type": "subscribe", "payload": {
            "query": "mutation SendOverSocket($c: ID!) { sendMessage(input: {channelId: $c, body: \"traced\"}) { id } }",
            "variables": { "c": place.channel_id },
            "operationName": "SendOverSocket",
            "extensions": { "traceparent": format!("00-{trace_id}-{client_span}-01") },
        } }))
        .await?;
    let sent = socket.next_data("w", "sendMessage").await?;
    let event = subscriber.next_event("1").await?;
    assert_eq!(event["message"]["id"], sent["id"], "{event}");
    let started = Instant::now();
    let trace = loop {
        let trace = collector.trace(&trace_id);
        let names: HashSet<&str> = trace.iter().map(|span| span.name.as_str()).collect();
        if ["graphql SendOverSocket", "command", "apply", "deliver"]
            .iter()
            .all(|name| names.contains(name))
        {
            break trace;
        }
        if started.elapsed() > TRACE_WAIT {
            bail!("the socket's trace was not complete within {TRACE_WAIT:?}: {trace:#?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let request = trace
        .iter()
        .find(|span| span.name == "graphql SendOverSocket")
        .context("no request span")?;
    assert_eq!(request.parent_span_id, client_span);
    assert_applied_under(&trace, "graphql SendOverSocket");
    drop(socket);
    drop(subscriber);
    drop(dev);
    Ok(())
}

/// Asserts each projector's apply in `trace` continues the trace the request (span `request`)
/// stored with the event.
fn assert_applied_under(trace: &[Received], request: &str) {
    for apply in trace.iter().filter(|span| span.name == "apply") {
        let parent = trace
            .iter()
            .find(|other| other.span_id == apply.parent_span_id);
        assert_eq!(parent.map(|p| p.name.as_str()), Some(request), "{trace:#?}");
    }
}

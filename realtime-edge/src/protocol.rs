//! GraphQL over WebSocket: `graphql-transport-ws`, and the older `graphql-ws`
//! (subscriptions-transport-ws) for existing clients.
//!
//! The edge speaks the protocols itself rather than through the GraphQL library's transport so
//! that an update (a channel event, a typing signal, a presence change) reaches every
//! subscriber of an audience as the same serialized payload
//! (see [`crate::audience`]): the library serializes every message once per subscription.
//! Everything else (validation, authorization, catch-up, errors) is the schema's, unchanged.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aether_query_api::revocation::{Holder, Revocations};
use aether_query_api::{AetherSchema, EventTap, PresetEvent, Tapped};
use async_graphql::http::{ClientMessage, WebSocketProtocols};
use async_graphql::parser::types::{
    ExecutableDocument, OperationDefinition, OperationType, Selection,
};
use async_graphql::Positioned;
use async_graphql::{Data, Request, Response, ServerError, Variables};
use axum::extract::ws::{CloseFrame, Message};
use axum::http::HeaderMap;
use futures::stream::BoxStream;
use futures::{Sink, SinkExt, Stream, StreamExt};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::StreamMap;

use crate::audience::Audiences;
use crate::metrics::EdgeMetrics;
use crate::ws::SlowClient;

/// Events a subscription's resolver may hand over before the connection takes them: the
/// resolver waits while the connection is sending, so a slow client holds back only this many.
const TAPPED_EVENTS: usize = 32;

/// The protocol a WebSocket upgrade asks for: the first one the edge speaks among those of
/// `Sec-WebSocket-Protocol`, or none.
pub fn negotiate(headers: &HeaderMap) -> Option<WebSocketProtocols> {
    headers
        .get(axum::http::header::SEC_WEBSOCKET_PROTOCOL)?
        .to_str()
        .ok()?
        .split(',')
        .find_map(|protocol| protocol.trim().parse().ok())
}

/// What every connection of an instance shares.
#[derive(Clone)]
pub struct Transport {
    pub schema: AetherSchema,
    pub audiences: Arc<Audiences>,
    /// How long a connection may go without `connection_init`.
    pub init_timeout: Duration,
    /// Ended sessions: a connection of one is closed (4403).
    pub revocations: Arc<Revocations>,
    /// Largest result payload sent; a larger one is replaced by a `BAD_USER_INPUT` error.
    pub max_response_bytes: usize,
    /// Where subscriptions and deliveries are counted.
    pub metrics: EdgeMetrics,
}

/// Who a signed-in connection speaks for, and until when its access token is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub holder: Holder,
    /// The access token's `exp` (seconds since the epoch): valid through that second.
    pub expires_at: i64,
}

/// What `connection_init` (or a fresh token) established.
pub struct Authorized {
    /// The connection's data (who the caller is, its budgets).
    pub data: Data,
    /// `None` for an anonymous connection (or a token the edge does not expire).
    pub lease: Option<Lease>,
}

/// The close code of a connection whose session ended or whose access token expired.
pub const SESSION_ENDED: u16 = 4403;

/// How a connection ended, for the caller to finish it.
#[derive(Debug)]
pub enum Ended {
    /// The client closed it, or it broke.
    Client,
    /// The client read nothing for longer than the send deadline.
    TooSlow(SlowClient),
    /// The edge closed it, with this close frame sent.
    Closed,
}

/// Serves one WebSocket connection until the client leaves, breaks the protocol, or cannot be
/// sent to. `authorize` turns `connection_init`'s payload into the connection's data (who the
/// caller is); its error refuses the connection. It is asked again when the client hands over
/// a fresh access token (a `ping` whose payload carries `authorization`, or, in the older
/// protocol, a repeated `connection_init`): the token must be of the same session, and moves
/// the connection's expiry. A connection whose session ends, or whose access token expires
/// without a fresh one, is closed with 4403.
pub async fn serve<Si, St, Auth, Fut>(
    transport: Transport,
    protocol: WebSocketProtocols,
    sink: &mut Si,
    stream: St,
    authorize: Auth,
) -> Ended
where
    Si: Sink<Message, Error = axum::Error> + Unpin,
    St: Stream<Item = Result<Message, axum::Error>>,
    Auth: Fn(serde_json::Value) -> Fut,
    Fut: Future<Output = async_graphql::Result<Authorized>>,
{
    let stream = std::pin::pin!(stream);
    let mut connection = Connection {
        transport,
        protocol,
        data: None,
        authorize,
        initialised: false,
        lease: None,
        revoked: None,
        subscriptions: StreamMap::new(),
    };
    connection.run(sink, stream).await
}

struct Connection<Auth> {
    transport: Transport,
    protocol: WebSocketProtocols,
    data: Option<Arc<Data>>,
    authorize: Auth,
    initialised: bool,
    lease: Option<Lease>,
    /// Woken when a session of the connection's user may have ended; `None` until a lease,
    /// and once the set of ended sessions is gone (shutdown).
    revoked: Option<tokio::sync::watch::Receiver<u64>>,
    subscriptions: StreamMap<String, BoxStream<'static, Message>>,
}

/// The next change of `revoked`; never, without one.
async fn revoked_changed(
    revoked: &mut Option<tokio::sync::watch::Receiver<u64>>,
) -> Result<(), tokio::sync::watch::error::RecvError> {
    match revoked {
        Some(receiver) => receiver.changed().await,
        None => std::future::pending().await,
    }
}

/// When an access token that expires at `expires_at` (seconds) is no longer valid.
fn lapse(expires_at: i64) -> tokio::time::Instant {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let lapse_ms = expires_at.saturating_add(1).saturating_mul(1_000);
    let left = u64::try_from(lapse_ms.saturating_sub(now_ms)).unwrap_or(0);
    tokio::time::Instant::now() + Duration::from_millis(left)
}

/// What to do after a client's message.
enum Next {
    Continue,
    Send(Message),
    /// Send this, then end the connection.
    Finish(Message),
    Leave,
}

impl<Auth, Fut> Connection<Auth>
where
    Auth: Fn(serde_json::Value) -> Fut,
    Fut: Future<Output = async_graphql::Result<Authorized>>,
{
    async fn run<Si, St>(&mut self, sink: &mut Si, mut stream: std::pin::Pin<&mut St>) -> Ended
    where
        Si: Sink<Message, Error = axum::Error> + Unpin,
        St: Stream<Item = Result<Message, axum::Error>>,
    {
        // One timer for the connection's whole wait for `connection_init`, dropped once it
        // came: a timer made anew on every pass would take the runtime's timer lock on each
        // message sent.
        let mut init_timer = Some(Box::pin(tokio::time::sleep(self.transport.init_timeout)));
        // When the access token lapses; reset when a fresh one comes.
        let mut expiry = Box::pin(tokio::time::sleep(Duration::from_secs(3600)));
        let mut expiry_of: Option<i64> = None;
        loop {
            if self.initialised {
                init_timer = None;
            }
            let expires_at = self.lease.map(|lease| lease.expires_at);
            if expires_at != expiry_of {
                if let Some(at) = expires_at {
                    expiry.as_mut().reset(lapse(at));
                }
                expiry_of = expires_at;
            }
            let init_expired = async {
                match init_timer.as_mut() {
                    Some(timer) => timer.as_mut().await,
                    None => std::future::pending().await,
                }
            };
            let leased = self.lease.is_some();
            let next = tokio::select! {
                incoming = stream.next() => match incoming {
                    Some(Ok(Message::Text(text))) => self.handle(text.as_bytes()).await,
                    Some(Ok(Message::Binary(bytes))) => self.handle(&bytes).await,
                    // Pings are answered by the WebSocket library itself.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => Next::Continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => Next::Leave,
                },
                Some((_, frame)) = self.subscriptions.next(), if !self.subscriptions.is_empty() => {
                    Next::Send(frame)
                }
                _ = init_expired => {
                    Next::Finish(close(4408, "connection initialisation timeout"))
                }
                changed = revoked_changed(&mut self.revoked) => match changed {
                    Ok(()) => self.still_valid().map_or(Next::Continue, Next::Finish),
                    // The set is gone (shutting down): nothing more to watch; the expiry still
                    // holds.
                    Err(_) => {
                        self.revoked = None;
                        Next::Continue
                    }
                },
                _ = expiry.as_mut(), if leased => {
                    self.still_valid().map_or(Next::Continue, Next::Finish)
                }
            };
            match next {
                Next::Continue => {}
                Next::Send(message) => {
                    if let Err(error) = sink.send(message).await {
                        return match SlowClient::of(&error) {
                            Some(slow) => Ended::TooSlow(slow.clone()),
                            None => Ended::Client,
                        };
                    }
                }
                Next::Finish(message) => {
                    let _ = sink.send(message).await;
                    return Ended::Closed;
                }
                Next::Leave => return Ended::Client,
            }
        }
    }

    /// `None` while the connection's session is live and its access token valid; otherwise
    /// the close frame that ends it.
    fn still_valid(&self) -> Option<Message> {
        let lease = self.lease?;
        if self.transport.revocations.is_revoked(&lease.holder) {
            return Some(close(SESSION_ENDED, "the session has ended; sign in again"));
        }
        if chrono::Utc::now().timestamp() > lease.expires_at {
            return Some(close(
                SESSION_ENDED,
                "the access token expired; send a fresh one in a ping's payload before it does",
            ));
        }
        None
    }

    /// A fresh access token for the connection: of the same session, it moves the expiry;
    /// anything else ends the connection.
    async fn renew(&mut self, payload: serde_json::Value) -> Option<Message> {
        let refused = |reason: &str| Some(close(SESSION_ENDED, reason));
        match Box::pin((self.authorize)(payload)).await {
            Ok(Authorized {
                lease: Some(fresh), ..
            }) => match self.lease {
                Some(lease)
                    if lease.holder.user == fresh.holder.user
                        && lease.holder.session == fresh.holder.session =>
                {
                    self.lease = Some(Lease {
                        expires_at: fresh.expires_at.max(lease.expires_at),
                        ..lease
                    });
                    None
                }
                _ => refused("a fresh token must be of the connection's own session"),
            },
            Ok(Authorized { lease: None, .. }) => {
                refused("a fresh token must be of the connection's own session")
            }
            Err(error) => refused(&error.message),
        }
    }

    async fn handle(&mut self, bytes: &[u8]) -> Next {
        let message = match ClientMessage::from_bytes(bytes) {
            Ok(message) => message,
            Err(error) => {
                let reason = format!("not a {} message: {error}", self.name());
                return Next::Finish(close(self.protocol_error(), &reason));
            }
        };
        match message {
            ClientMessage::ConnectionInit { payload } => {
                if self.initialised {
                    // The older protocol has no ping: a repeated `connection_init` hands over
                    // a fresh token there.
                    if matches!(self.protocol, WebSocketProtocols::SubscriptionsTransportWS)
                        && self.lease.is_some()
                    {
                        return match self.renew(payload.unwrap_or_default()).await {
                            None => Next::Send(text(&json_message("connection_ack", None, None))),
                            Some(close) => Next::Finish(close),
                        };
                    }
                    return self.refuse(4429, "too many initialisation requests");
                }
                self.initialised = true;
                // Boxed: the future lives only while it runs, not in every connection's state.
                match Box::pin((self.authorize)(payload.unwrap_or_default())).await {
                    Ok(authorized) => {
                        self.data = Some(Arc::new(authorized.data));
                        self.lease = authorized.lease;
                        // Watch before the first check: an end in between is not missed.
                        self.revoked = authorized
                            .lease
                            .map(|lease| self.transport.revocations.changes_of(lease.holder.user));
                        if let Some(close) = self.still_valid() {
                            return Next::Finish(close);
                        }
                        Next::Send(text(&json_message("connection_ack", None, None)))
                    }
                    Err(error) => self.refuse(4403, &error.message),
                }
            }
            ClientMessage::Start { id, payload } => {
                let Some(data) = self.data.clone() else {
                    return Next::Finish(close(4401, "unauthorized: send connection_init first"));
                };
                // Whatever the notifications say, nothing runs for an ended session.
                if let Some(close) = self.still_valid() {
                    return Next::Finish(close);
                }
                if self.subscriptions.contains_key(&id) {
                    let reason = format!("subscriber for {id} already exists");
                    return Next::Finish(close(4409, &reason));
                }
                let frames = subscription(
                    self.transport.clone(),
                    self.protocol,
                    id.clone(),
                    payload,
                    data,
                );
                self.subscriptions.insert(id, frames);
                Next::Continue
            }
            ClientMessage::Stop { id } => match self.subscriptions.remove(&id) {
                Some(_) => Next::Send(text(&json_message("complete", Some(&id), None))),
                None => Next::Continue,
            },
            ClientMessage::ConnectionTerminate => Next::Leave,
            ClientMessage::Ping { payload } => {
                let fresh = payload.filter(|payload| {
                    payload.get("authorization").is_some() || payload.get("Authorization").is_some()
                });
                if let (Some(payload), true) = (fresh, self.lease.is_some()) {
                    if let Some(close) = self.renew(payload).await {
                        return Next::Finish(close);
                    }
                }
                Next::Send(text(&json_message("pong", None, None)))
            }
            ClientMessage::Pong { .. } => Next::Continue,
        }
    }

    fn name(&self) -> &'static str {
        self.protocol.sec_websocket_protocol()
    }

    /// The close code for a message the protocol does not allow.
    fn protocol_error(&self) -> u16 {
        match self.protocol {
            WebSocketProtocols::GraphQLWS => 4400,
            WebSocketProtocols::SubscriptionsTransportWS => 1002,
        }
    }

    /// Ends the connection at its start: `graphql-transport-ws` closes with `code`, the older
    /// protocol sends `connection_error` and then closes.
    fn refuse(&self, code: u16, reason: &str) -> Next {
        match self.protocol {
            WebSocketProtocols::GraphQLWS => Next::Finish(close(code, reason)),
            WebSocketProtocols::SubscriptionsTransportWS => {
                let payload = serde_json::json!({ "message": reason });
                Next::Finish(text(&json_message("connection_error", None, Some(payload))))
            }
        }
    }
}

fn json_message(kind: &str, id: Option<&str>, payload: Option<serde_json::Value>) -> String {
    let mut message = serde_json::json!({ "type": kind });
    if let Some(id) = id {
        message["id"] = id.into();
    }
    if let Some(payload) = payload {
        message["payload"] = payload;
    }
    message.to_string()
}

fn text(message: &str) -> Message {
    Message::Text(message.to_owned().into())
}

fn close(code: u16, reason: &str) -> Message {
    // A close frame's reason is at most 123 bytes.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: reason[..end].to_owned().into(),
    }))
}

/// How one subscription's messages are framed.
struct Framing {
    /// `"next"` or, in the older protocol, `"data"`.
    kind: &'static str,
    /// The subscription's id, as a JSON string.
    id: String,
}

impl Framing {
    fn new(protocol: WebSocketProtocols, id: &str) -> Self {
        let kind = match protocol {
            WebSocketProtocols::GraphQLWS => "next",
            WebSocketProtocols::SubscriptionsTransportWS => "data",
        };
        let id = serde_json::to_string(id).unwrap_or_else(|_| "\"\"".to_owned());
        Self { kind, id }
    }

    /// A result message around an already serialized payload.
    fn result(&self, payload: &str) -> Message {
        let mut message = String::with_capacity(payload.len() + self.id.len() + 32);
        message.push_str("{\"type\":\"");
        message.push_str(self.kind);
        message.push_str("\",\"id\":");
        message.push_str(&self.id);
        message.push_str(",\"payload\":");
        message.push_str(payload);
        message.push('}');
        Message::Text(message.into())
    }

    fn complete(&self) -> Message {
        Message::Text(format!("{{\"type\":\"complete\",\"id\":{}}}", self.id).into())
    }
}

/// A response as a message payload, each error with its `extensions.code`.
fn payload(mut response: Response) -> String {
    for error in &mut response.errors {
        crate::http::label_error(error);
    }
    serde_json::to_string(&response).unwrap_or_else(|error| {
        tracing::error!(%error, "a GraphQL response could not be serialized");
        r#"{"data":null,"errors":[{"message":"the response could not be serialized","extensions":{"code":"INTERNAL"}}]}"#.to_owned()
    })
}

/// The request a subscription was started with, to resolve its updates again.
#[derive(Serialize)]
struct Document {
    query: String,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    variables: Variables,
}

impl Document {
    /// The document of `request` if its operation is a subscription of a single field (an
    /// update of it is then the whole result), and its audience: the same text for every
    /// request that would be sent the same payloads. Variables used only in the subscribed
    /// field's own arguments (which channel or server, from which cursor) choose the updates,
    /// not what an update looks like, so they stay out of the audience: what identifies the
    /// update is in the cache's key already, and clients resuming from different cursors share.
    fn shareable(request: &Request) -> Option<(Arc<Document>, Arc<str>)> {
        let parsed = async_graphql::parser::parse_query(&request.query).ok()?;
        let operation = &chosen_operation(&parsed, request.operation_name.as_deref())?.node;
        let items = &operation.selection_set.node.items;
        let [item] = items.as_slice() else {
            return None;
        };
        let Selection::Field(field) = &item.node else {
            return None;
        };
        if operation.ty != OperationType::Subscription {
            return None;
        }
        // A field whose value depends on who receives the update is resolved per subscriber
        // (a shared payload is resolved for nobody in particular). Matching the text also
        // catches the field inside fragments and errs on the safe side in a comment.
        if VIEWER_FIELDS
            .iter()
            .any(|field| request.query.contains(field))
        {
            return None;
        }
        let mut in_arguments = Vec::new();
        for (_, value) in &field.node.arguments {
            // Replacing each variable by null visits every one the argument refers to.
            let _ = value.node.clone().into_const_with(|name| {
                in_arguments.push(name);
                Ok::<_, std::convert::Infallible>(async_graphql::Value::Null)
            });
        }
        let mut shaping = request.variables.clone();
        shaping.retain(|name, _| {
            let uses = in_arguments.iter().filter(|used| *used == name).count();
            // Its definition, its uses in the arguments, and nothing else in the text.
            occurrences(&request.query, name) != 1 + uses || uses == 0
        });
        let audience = Document {
            query: request.query.clone(),
            operation_name: request.operation_name.clone(),
            variables: shaping,
        };
        let audience = serde_json::to_string(&audience).ok()?;
        let document = Document {
            query: request.query.clone(),
            operation_name: request.operation_name.clone(),
            variables: request.variables.clone(),
        };
        Some((Arc::new(document), Arc::from(audience)))
    }

    /// The payload of this document for `update` alone.
    async fn resolve(&self, schema: &AetherSchema, update: Tapped) -> String {
        let mut request = Request::new(self.query.clone())
            .variables(self.variables.clone())
            .data(PresetEvent(update));
        if let Some(name) = &self.operation_name {
            request = request.operation_name(name.clone());
        }
        let response = schema
            .execute_stream(request)
            .next()
            .await
            .unwrap_or_else(|| {
                Response::from_errors(vec![ServerError::new(
                    "the subscription produced no result for the update",
                    None,
                )])
            });
        payload(response)
    }
}

/// The operation a request runs: the one it names, or its only one.
fn chosen_operation<'a>(
    document: &'a ExecutableDocument,
    name: Option<&str>,
) -> Option<&'a Positioned<OperationDefinition>> {
    let mut operations = document.operations.iter();
    match name {
        Some(name) => operations
            .find(|(operation, _)| operation.is_some_and(|n| n.as_str() == name))
            .map(|(_, operation)| operation),
        None => {
            let (_, only) = operations.next()?;
            operations.next().is_none().then_some(only)
        }
    }
}

/// The type of the operation `request` runs; `None` for a document that does not parse or
/// does not say which operation (left to the executor to refuse).
pub(crate) fn operation_type(request: &Request) -> Option<OperationType> {
    let parsed = async_graphql::parser::parse_query(&request.query).ok()?;
    chosen_operation(&parsed, request.operation_name.as_deref()).map(|operation| operation.node.ty)
}

/// Whether `request` runs a subscription.
fn runs_a_subscription(request: &Request) -> bool {
    operation_type(request) == Some(OperationType::Subscription)
}

/// The messages of one subscription, ending with `complete`. Tapped updates go through the
/// audience cache; everything else (other subscriptions, errors) is serialized here.
fn subscription(
    transport: Transport,
    protocol: WebSocketProtocols,
    id: String,
    mut request: Request,
    data: Arc<Data>,
) -> BoxStream<'static, Message> {
    let framing = Framing::new(protocol, &id);
    let shareable = Document::shareable(&request);
    let (tap, mut tapped) = mpsc::channel::<Tapped>(TAPPED_EVENTS);
    if shareable.is_some() {
        request = request.data(EventTap(tap));
    } else {
        drop(tap);
    }
    let Transport {
        schema,
        audiences,
        max_response_bytes,
        metrics,
        ..
    } = transport;
    let pinned = !runs_a_subscription(&request);
    // Held while the stream lives: however the subscription ends (complete, stop, the
    // connection closing), dropping the stream takes it off the gauge.
    let running = (!pinned).then(|| metrics.subscription());
    let deliveries = metrics.deliveries;
    // A query or mutation is traced as over HTTP, in a span of its own: the child of the
    // `traceparent` the client puts in the operation's `extensions`, if any.
    let span = pinned.then(|| {
        let traceparent = match request.extensions.get(aether_kafka::trace::TRACEPARENT) {
            Some(async_graphql::Value::String(traceparent)) => Some(traceparent.clone()),
            _ => None,
        };
        crate::http::operation_span(request.operation_name.as_deref(), traceparent.as_deref())
    });
    let responses = schema.execute_stream_with_session_data(request, data);
    // A query or mutation reads one set of projection versions, as over HTTP; a subscription
    // reads the live ones for each update it sends.
    let mut responses = match span {
        Some(span) => in_span(
            aether_projections::read::with_pinned_versions_per_item(responses),
            span,
        ),
        None => responses,
    };
    let shared = move |update: Tapped| {
        let (schema, audiences, shareable) = (schema.clone(), audiences.clone(), shareable.clone());
        async move {
            let (document, audience) = shareable?;
            let key = update.key();
            let resolve = || async move { document.resolve(&schema, update).await };
            Some(audiences.payload(&audience, key, resolve).await)
        }
    };
    async_stream::stream! {
        let _running = running;
        loop {
            let step = tokio::select! {
                biased;
                Some(update) = tapped.recv() => Step::Tapped(update),
                response = responses.next() => Step::Responded(response),
            };
            let response = match step {
                Step::Tapped(update) => {
                    if let Some(payload) = shared(update).await {
                        deliveries.increment(1);
                        yield framing.result(&payload);
                    }
                    continue;
                }
                Step::Responded(response) => response,
            };
            // Whatever the resolver handed over before this response came first.
            while let Ok(update) = tapped.try_recv() {
                if let Some(payload) = shared(update).await {
                    deliveries.increment(1);
                    yield framing.result(&payload);
                }
            }
            match response {
                Some(response) => {
                    let mut sent = payload(response);
                    if sent.len() > max_response_bytes {
                        let message = crate::http::too_large(sent.len(), max_response_bytes);
                        sent = serde_json::json!({
                            "data": null,
                            "errors": [{ "message": message, "extensions": { "code": "BAD_USER_INPUT" } }],
                        })
                        .to_string();
                    }
                    if !pinned {
                        deliveries.increment(1);
                    }
                    yield framing.result(&sent);
                }
                None => {
                    yield framing.complete();
                    return;
                }
            }
        }
    }
    .boxed()
}

/// `stream`, polled inside `span` (which ends when the stream is dropped).
fn in_span<S>(stream: S, span: tracing::Span) -> BoxStream<'static, S::Item>
where
    S: Stream + Send + 'static,
{
    let mut stream = Box::pin(stream);
    futures::stream::poll_fn(move |cx| {
        let _entered = span.enter();
        stream.as_mut().poll_next(cx)
    })
    .boxed()
}

/// How often `$name` appears in `query` as a whole name. Over-counting (in a string or a
/// comment) only keeps a variable in the audience, which is always correct.
fn occurrences(query: &str, name: &str) -> usize {
    let needle = format!("${name}");
    query
        .match_indices(&needle)
        .filter(|(at, _)| {
            query[at + needle.len()..]
                .chars()
                .next()
                .is_none_or(|next| !(next.is_ascii_alphanumeric() || next == '_'))
        })
        .count()
}

enum Step {
    Tapped(Tapped),
    Responded(Option<Response>),
}

/// Fields reachable from shared subscriptions whose value depends on the subscriber.
const VIEWER_FIELDS: &[&str] = &["reactedByMe"];

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn audience(query: &str, variables: serde_json::Value) -> Option<String> {
        let request = Request::new(query).variables(Variables::from_json(variables));
        Document::shareable(&request).map(|(_, audience)| audience.to_string())
    }

    const EVENTS: &str = "subscription($c: ID!, $after: String, $full: Boolean!) { \
         channelEvents(channelId: $c, after: $after) { cursor \
         ... on MessageSent { message { body @include(if: $full) } } } }";

    #[test]
    fn only_queries_and_mutations_are_pinned_to_one_set_of_versions() {
        let runs = |query: &str, name: Option<&str>| {
            let mut request = Request::new(query);
            if let Some(name) = name {
                request = request.operation_name(name);
            }
            runs_a_subscription(&request)
        };
        assert!(runs(
            "subscription { channelEvents(channelId: \"c\") { cursor } }",
            None
        ));
        assert!(!runs("{ me { id } }", None));
        assert!(!runs("mutation { logout }", None));
        let both = "query Q { me { id } } subscription S { typing(channelId: \"c\") { userId } }";
        assert!(runs(both, Some("S")));
        assert!(!runs(both, Some("Q")));
        // Ambiguous or broken documents are the executor's to refuse; they are not subscriptions.
        assert!(!runs(both, None));
        assert!(!runs("subscription {", None));
    }

    #[test]
    fn where_a_subscription_starts_does_not_split_its_audience() {
        let from_start = audience(EVENTS, json!({ "c": "a", "after": "0", "full": true }));
        let resumed = audience(EVENTS, json!({ "c": "b", "after": "41", "full": true }));
        assert!(from_start.is_some());
        assert_eq!(from_start, resumed);
    }

    #[test]
    fn variables_that_shape_the_payload_split_the_audience() {
        let full = audience(EVENTS, json!({ "c": "a", "full": true }));
        let bare = audience(EVENTS, json!({ "c": "a", "full": false }));
        assert_ne!(full, bare);
        // A variable used in the arguments and anywhere else stays in the audience: in the
        // selection (only the text matters here, not whether the types fit), or even in a
        // comment, where counting errs on the safe side.
        for twice in [
            "subscription($c: ID!) { channelEvents(channelId: $c) { cursor @skip(if: $c) } }",
            "subscription($c: ID!) { channelEvents(channelId: $c) { cursor } } # $c",
        ] {
            assert_ne!(
                audience(twice, json!({ "c": "a" })),
                audience(twice, json!({ "c": "b" })),
                "{twice}"
            );
        }
        // A name that only starts like a root argument's variable is not one of its uses.
        let prefixed = "subscription($c: ID!, $cx: Boolean!) { channelEvents(channelId: $c) { \
                        cursor @include(if: $cx) } }";
        assert_eq!(
            audience(prefixed, json!({ "c": "a", "cx": true })),
            audience(prefixed, json!({ "c": "b", "cx": true }))
        );
        assert_ne!(
            audience(prefixed, json!({ "c": "a", "cx": true })),
            audience(prefixed, json!({ "c": "a", "cx": false }))
        );
    }

    #[test]
    fn a_subscription_asking_whether_i_reacted_is_resolved_for_each_subscriber() {
        let mine = "subscription($c: ID!) { channelEvents(channelId: $c) { cursor \
                    ... on ReactionChanged { message { reactions { emoji count reactedByMe } } } } }";
        assert_eq!(audience(mine, json!({ "c": "a" })), None);
        let anyone = "subscription($c: ID!) { channelEvents(channelId: $c) { cursor \
                      ... on ReactionChanged { message { reactions { emoji count } } } } }";
        assert!(audience(anyone, json!({ "c": "a" })).is_some());
    }

    #[test]
    fn only_single_field_subscriptions_are_shared() {
        assert_eq!(audience("{ me { id } }", json!({})), None);
        assert_eq!(
            audience(
                "subscription { a: userEvents { __typename } b: userEvents { __typename } }",
                json!({})
            ),
            None
        );
        assert_eq!(
            audience(
                "subscription { ...F } fragment F on Subscriptions { userEvents { __typename } }",
                json!({})
            ),
            None
        );
        assert_eq!(audience("subscription {", json!({})), None);
        let named = "subscription A { userEvents { __typename } } query B { me { id } }";
        let request = Request::new(named).operation_name("A");
        assert!(Document::shareable(&request).is_some());
        let request = Request::new(named).operation_name("B");
        assert!(Document::shareable(&request).is_none());
        assert!(Document::shareable(&Request::new(named)).is_none());
    }

    #[test]
    fn framing_wraps_a_shared_payload_for_each_subscription() {
        let payload = r#"{"data":{"channelEvents":{"cursor":"1"}}}"#;
        let frame = |protocol, id: &str| match Framing::new(protocol, id).result(payload) {
            Message::Text(text) => serde_json::from_str::<serde_json::Value>(text.as_str()).ok(),
            _ => None,
        };
        let parsed: serde_json::Value = serde_json::from_str(payload).unwrap();
        assert_eq!(
            frame(WebSocketProtocols::GraphQLWS, "7\"\\"),
            Some(json!({ "type": "next", "id": "7\"\\", "payload": parsed }))
        );
        assert_eq!(
            frame(WebSocketProtocols::SubscriptionsTransportWS, "1"),
            Some(json!({ "type": "data", "id": "1", "payload": parsed }))
        );
    }
}

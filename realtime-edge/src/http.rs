//! HTTP and WebSocket transport for the GraphQL schema.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aether_commands::auth::{TokenIssuer, TokenKind};
use aether_commands::store::{EventRef, WriteStore};
use aether_commands::ErrorCode;
use aether_domain::UserId;
use aether_projections::Watermarks;
use aether_query_api::rate::{ClientIp, Slots, SubscriptionBudget};
use aether_query_api::revocation::{Holder, Revocations};
use aether_query_api::{AetherSchema, ApiState, Caller, CallerSession, Commands, ConsistencyToken};
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::parser::types::OperationType;
use async_graphql::{Data, ErrorExtensions, ServerError};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use futures::StreamExt;
use serde_json::json;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tracing::Instrument;

use crate::audience::{Audiences, DEFAULT_SHARED_PAYLOADS};
use crate::metrics::EdgeMetrics;
use crate::oidc::ExternalIssuer;
use crate::protocol::{negotiate, Authorized, Ended, Lease, Transport};
use crate::ws::{close_too_big, close_too_slow, watch_for_oversized, SendDeadline};

/// The request header a client sets to a mutation's consistency token to read its own write.
pub const CONSISTENCY_HEADER: &str = "x-consistency-token";

#[derive(Clone)]
pub struct HttpState {
    pub schema: AetherSchema,
    pub auth: Authenticator,
    pub api: ApiState,
    /// The in-process projectors' checkpoints (the embedded mode).
    pub watermarks: Option<Watermarks>,
    /// Longest a query waits for the read models to reach a consistency token.
    pub consistency_wait: Duration,
    pub ready: tokio::sync::watch::Receiver<bool>,
    pub connections: Connections,
    /// The web build's GraphiQL is served at [`GRAPHIQL_PATH`] (see
    /// [`crate::web::with_web_dir`]): a browser opening `/graphql` is sent there.
    pub graphiql: bool,
}

/// Where the web build (`web/dist/graphiql/`) puts GraphiQL, served beside the client.
pub const GRAPHIQL_PATH: &str = "/graphiql/";

/// What a browser opening `/graphql` sees when no GraphiQL was built: how to get one. No
/// script, nothing loaded from anywhere.
const NO_GRAPHIQL_PAGE: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>AetherConnect GraphQL</title></head><body style=\"font-family: sans-serif; max-width: 40em; margin: 2em auto\">\
<h1>AetherConnect GraphQL</h1><p>This is the GraphQL endpoint: POST queries here, or GET them \
with a <code>query</code> parameter; subscriptions use a WebSocket on the same path \
(<code>graphql-transport-ws</code>).</p><p>GraphiQL, the in-browser IDE, is part of the web \
build: run <code>npm ci &amp;&amp; npm run build</code> in <code>web/</code> (or \
<code>bash scripts/dev.sh</code>), then start the server with <code>--web-dir web/dist</code> \
(<code>aether dev</code> finds <code>web/dist</code> by itself) and reload this page.</p></body></html>";

/// The policy of [`NO_GRAPHIQL_PAGE`]: it runs and loads nothing.
const NO_GRAPHIQL_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
                                  base-uri 'none'; frame-ancestors 'none'";

/// The default of [`HttpLimits::ws_read_buffer_bytes`]: a GraphQL `subscribe` or `ping` fits
/// many times over, where the WebSocket library's own default (128 KiB, touched in full on the
/// first read) would cost every idle connection 128 KiB.
pub const DEFAULT_WS_READ_BUFFER_BYTES: usize = 4 * 1024;

#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// WebSocket connections this instance holds at most; more are refused with HTTP 503.
    pub max_connections: usize,
    /// Subscriptions one WebSocket connection may hold at once.
    pub max_subscriptions_per_connection: usize,
    /// Largest WebSocket message (and frame) a client may send, in bytes; a larger one closes
    /// the connection (close code 1009, "message too big").
    pub max_ws_message_bytes: usize,
    /// Longest a message to a WebSocket client may wait to be sent; a client that reads
    /// nothing for this long is disconnected.
    pub ws_send_timeout: Duration,
    /// Longest a WebSocket may stay open without `connection_init`; then it is closed (4408),
    /// so connections that never sign in do not hold places.
    pub ws_init_timeout: Duration,
    /// Bytes each WebSocket connection reads into at once. Idle connections are most of an
    /// edge's connections and each keeps this buffer, so it is small; a larger message from a
    /// client still arrives whole (the buffer grows for it, up to `max_ws_message_bytes`).
    pub ws_read_buffer_bytes: usize,
    /// Update payloads (channel events, typing, presence) kept for sharing between the
    /// subscribers of an audience (the same subscription document and payload-shaping
    /// variables): each is serialized once per audience. Subscribers receive an update within
    /// moments of each other, so a few thousand cover every live one; one dropped early is
    /// serialized again, never lost.
    pub shared_payloads: usize,
    /// Reverse proxies whose `X-Forwarded-For` is believed: a request (or WebSocket) from one
    /// of them is counted against the address the header names; from anyone else, against
    /// the connection's own address, whatever the header says.
    pub trusted_proxies: Vec<IpAddr>,
    /// Largest response (a query's or mutation's result, serialized) sent, in bytes; a larger
    /// one is replaced by a `BAD_USER_INPUT` error: ask for smaller pages.
    pub max_response_bytes: usize,
    /// Browser origins whose pages may call the API (CORS). A page from an origin not allowed
    /// gets no CORS headers, so the browser keeps the answer from it.
    pub allowed_origins: AllowedOrigins,
}

/// Which browser origins may call the API from their pages (CORS). Tokens travel in the
/// `Authorization` header, never in cookies, so an allowed origin gains nothing a page could
/// not do with a token it already holds; the setting still keeps unknown pages from reading
/// answers with a user's token taken from elsewhere, and from probing an internal deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// None: only pages of the API's own origin (the web client it serves) and clients that are
    /// not browsers. The distributed mode's default.
    #[default]
    None,
    /// Pages served from this machine: `http://localhost`, `http://127.0.0.1` and
    /// `http://[::1]`, any port. The embedded mode's default, for a client in development.
    Localhost,
    /// Every origin (`*`).
    Any,
    /// Exactly these origins, such as `https://chat.example.com`.
    List(Vec<String>),
}

impl std::str::FromStr for AllowedOrigins {
    type Err = String;

    /// `none`, `localhost`, `*`, or comma-separated origins (`scheme://host[:port]`, http or
    /// https, no path).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "none" | "" => return Ok(Self::None),
            "localhost" => return Ok(Self::Localhost),
            "*" => return Ok(Self::Any),
            _ => {}
        }
        let mut origins = Vec::new();
        for origin in text.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let rest = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"))
                .ok_or_else(|| {
                    format!("{origin:?} is not an origin: it starts with http:// or https://")
                })?;
            let valid = !rest.is_empty()
                && rest.len() <= 253
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"/?#@\\".contains(&b));
            if !valid {
                return Err(format!(
                    "{origin:?} is not an origin: scheme://host[:port], with no path, such as \
                     https://chat.example.com"
                ));
            }
            origins.push(origin.to_ascii_lowercase());
        }
        Ok(Self::List(origins))
    }
}

impl std::fmt::Display for AllowedOrigins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Localhost => f.write_str("localhost"),
            Self::Any => f.write_str("*"),
            Self::List(origins) => f.write_str(&origins.join(",")),
        }
    }
}

impl AllowedOrigins {
    /// The CORS layer for these origins; `None` adds no CORS headers at all.
    fn layer(&self) -> Option<CorsLayer> {
        let allow = match self {
            Self::None => return None,
            Self::Any => AllowOrigin::any(),
            Self::Localhost => AllowOrigin::predicate(|origin: &HeaderValue, _| {
                origin.to_str().is_ok_and(is_local_origin)
            }),
            Self::List(origins) => AllowOrigin::list(
                origins
                    .iter()
                    .filter_map(|origin| HeaderValue::from_str(origin).ok()),
            ),
        };
        Some(
            CorsLayer::new()
                .allow_origin(allow)
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    header::ACCEPT,
                    HeaderName::from_static(CONSISTENCY_HEADER),
                ])
                .expose_headers([HeaderName::from_static(REQUEST_ID_HEADER)])
                .max_age(Duration::from_secs(600)),
        )
    }
}

/// Whether `origin` is a page served from this machine over plain HTTP.
fn is_local_origin(origin: &str) -> bool {
    let Some(host_port) = origin.strip_prefix("http://") else {
        return false;
    };
    // The host, and what follows it: nothing or `:PORT`.
    let (host, port) = match host_port.strip_prefix("[::1]") {
        Some(port) => ("[::1]", port),
        None => host_port
            .find(':')
            .map_or((host_port, ""), |at| host_port.split_at(at)),
    };
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
        && (port.is_empty()
            || port
                .strip_prefix(':')
                .is_some_and(|port| port.parse::<u16>().is_ok()))
}

/// The header naming a request in logs and answers: taken from the request when a client or
/// proxy sent one, made up (a UUID) otherwise, and sent back on the response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The default of [`HttpLimits::max_response_bytes`].
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            max_connections: 100_000,
            max_subscriptions_per_connection: 100,
            max_ws_message_bytes: 64 * 1024,
            ws_send_timeout: Duration::from_secs(10),
            ws_init_timeout: Duration::from_secs(10),
            ws_read_buffer_bytes: DEFAULT_WS_READ_BUFFER_BYTES,
            shared_payloads: DEFAULT_SHARED_PAYLOADS,
            trusted_proxies: Vec::new(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            allowed_origins: AllowedOrigins::None,
        }
    }
}

/// The WebSocket connections an instance holds, against its limit.
#[derive(Clone, Debug)]
pub struct Connections {
    slots: Slots,
    max_subscriptions: usize,
    max_message: usize,
    send_timeout: Duration,
    init_timeout: Duration,
    read_buffer: usize,
    audiences: Arc<Audiences>,
    trusted_proxies: Arc<[IpAddr]>,
    max_response: usize,
    metrics: EdgeMetrics,
}

impl Connections {
    pub fn new(limits: &HttpLimits) -> Self {
        Self {
            slots: Slots::new(limits.max_connections),
            max_subscriptions: limits.max_subscriptions_per_connection,
            max_message: limits.max_ws_message_bytes,
            send_timeout: limits.ws_send_timeout,
            init_timeout: limits.ws_init_timeout,
            read_buffer: limits.ws_read_buffer_bytes.max(1),
            audiences: Arc::new(Audiences::new(limits.shared_payloads)),
            trusted_proxies: limits.trusted_proxies.clone().into(),
            max_response: limits.max_response_bytes.max(1),
            metrics: EdgeMetrics::new(),
        }
    }

    /// How many are open now.
    pub fn open(&self) -> usize {
        self.slots.held()
    }

    /// The update payloads these connections share.
    pub fn audiences(&self) -> &Arc<Audiences> {
        &self.audiences
    }
}

pub fn router(state: HttpState, limits: &HttpLimits) -> Router {
    let router = Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/.well-known/jwks.json", get(jwks))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .with_state(state);
    let router = match limits.allowed_origins.layer() {
        Some(cors) => router.layer(cors),
        None => router,
    };
    with_common_headers(router)
}

/// What every answer carries, whatever route made it: a request id (the client's or a new one)
/// and the headers that keep browsers from guessing content types or leaking addresses.
pub fn with_common_headers(router: Router) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    router
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// The body of a request error: one error with its code, and no `data` entry (nothing was
/// executed), as GraphQL over HTTP has it.
fn error_body(code: ErrorCode, message: &str) -> serde_json::Value {
    json!({ "errors": [{ "message": message, "extensions": { "code": code.as_str() } }] })
}

/// The media types a GraphQL answer over HTTP can be sent as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// `application/json`: every answer that is GraphQL is 200, request errors included (what
    /// clients written before the GraphQL-over-HTTP spec expect).
    Json,
    /// `application/graphql-response+json`, when the client lists it in `Accept`: a request
    /// error (the document does not parse or validate, a limit refuses it) is a 4xx.
    GraphQlResponse,
}

impl Answer {
    const GRAPHQL_RESPONSE: &'static str = "application/graphql-response+json";

    fn from_accept(headers: &HeaderMap) -> Self {
        let accepts = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|item| {
                item.split(';')
                    .next()
                    .is_some_and(|media| media.trim() == Self::GRAPHQL_RESPONSE)
            });
        if accepts {
            Self::GraphQlResponse
        } else {
            Self::Json
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::GraphQlResponse => Self::GRAPHQL_RESPONSE,
        }
    }

    /// A request that is not a well-formed GraphQL request over HTTP (no document, a body
    /// that is not JSON): `status` whatever the media type.
    fn malformed(self, status: StatusCode, code: ErrorCode, message: &str) -> Response {
        self.send(status, error_body(code, message).to_string().into_bytes())
    }

    /// A GraphQL request refused before execution (a bad token, a limit, a document that does
    /// not parse or validate): 200 as `application/json`, `status` as the GraphQL response
    /// type.
    fn refused(self, status: StatusCode, code: ErrorCode, message: &str) -> Response {
        let status = match self {
            Self::Json => StatusCode::OK,
            Self::GraphQlResponse => status,
        };
        self.send(status, error_body(code, message).to_string().into_bytes())
    }

    fn send(self, status: StatusCode, body: Vec<u8>) -> Response {
        (status, [(header::CONTENT_TYPE, self.content_type())], body).into_response()
    }
}

/// Who a bearer token speaks for: one of the product's own tokens, or, when an external
/// OpenID Connect issuer is configured, one of its tokens, whose account is created the first
/// time it is seen.
#[derive(Clone)]
pub struct Authenticator {
    tokens: TokenIssuer,
    external: Option<Arc<ExternalIssuer>>,
    commands: Arc<Commands>,
    /// External accounts known to exist, so that only a first token costs a command.
    known: Arc<Mutex<HashSet<UserId>>>,
    /// Ended sessions, whose tokens are refused.
    revocations: Arc<Revocations>,
}

/// Who a request speaks for.
#[derive(Clone, Copy, Debug)]
pub struct Authenticated {
    pub caller: Caller,
    pub session: CallerSession,
    /// For the product's own tokens: whose session, and until when the token is valid.
    pub lease: Option<Lease>,
}

/// External accounts remembered as existing at most; the set starts over when full.
const KNOWN_EXTERNAL_USERS: usize = 100_000;

impl Authenticator {
    pub fn new(
        tokens: TokenIssuer,
        external: Option<Arc<ExternalIssuer>>,
        commands: Arc<Commands>,
        revocations: Arc<Revocations>,
    ) -> Self {
        Self {
            tokens,
            external,
            commands,
            known: Arc::default(),
            revocations,
        }
    }

    /// The caller a bearer token speaks for, and its session. No header means anonymous; a
    /// bad token, or one of a session that ended, is an error, never silently anonymous.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
    ) -> Result<Authenticated, (ErrorCode, String)> {
        let unauthenticated = |message: String| (ErrorCode::Unauthenticated, message);
        let Some(value) = authorization.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(Authenticated {
                caller: Caller(None),
                session: CallerSession(None),
                lease: None,
            });
        };
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                unauthenticated("the authorization must be 'Bearer <accessToken>'".to_owned())
            })?
            .trim();
        let Some(external) = self
            .external
            .as_ref()
            .filter(|issuer| issuer.claims_issuer(token))
        else {
            let verified = self
                .tokens
                .verify_claims(token, TokenKind::Access)
                .map_err(|e| unauthenticated(e.to_string()))?;
            let holder = Holder {
                user: verified.user,
                session: verified.session,
                issued_at: verified.issued_at,
            };
            if self.revocations.is_revoked(&holder) {
                return Err(unauthenticated(
                    "this session has ended (signed out, or its refresh token was reused); sign in again"
                        .to_owned(),
                ));
            }
            return Ok(Authenticated {
                caller: Caller(Some(verified.user)),
                session: CallerSession(verified.session),
                lease: Some(Lease {
                    holder,
                    expires_at: verified.expires_at,
                }),
            });
        };
        let identity = external
            .verify(token)
            .await
            .map_err(|e| unauthenticated(e.to_string()))?;
        let user = identity.user_id();
        let known = self
            .known
            .lock()
            .map(|known| known.contains(&user))
            .unwrap_or(false);
        if !known {
            self.commands
                .ensure_external_user(&identity)
                .await
                .map_err(|e| (e.code, e.message))?;
            if let Ok(mut known) = self.known.lock() {
                if known.len() >= KNOWN_EXTERNAL_USERS {
                    known.clear();
                }
                known.insert(user);
            }
        }
        // Its token names no session of ours: it lives until it expires, and a sign-out
        // everywhere ends the ones issued before it.
        let holder = Holder {
            user,
            session: None,
            issued_at: identity.issued_at.unwrap_or(i64::MAX),
        };
        if self.revocations.is_revoked(&holder) {
            return Err(unauthenticated(
                "this token was issued before the account signed out everywhere; sign in again"
                    .to_owned(),
            ));
        }
        Ok(Authenticated {
            caller: Caller(Some(user)),
            session: CallerSession(None),
            lease: identity
                .expires_at
                .map(|expires_at| Lease { holder, expires_at }),
        })
    }
}

async fn graphql_post(
    State(state): State<HttpState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let answer = Answer::from_accept(&headers);
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "the request body is larger than this server accepts (see --max-body-bytes)"
                    .to_owned()
            } else {
                rejection.body_text()
            };
            return answer.malformed(status, ErrorCode::BadUserInput, &message);
        }
    };
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        let message = "a GraphQL request is POSTed as JSON: send Content-Type: application/json";
        return answer.malformed(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::BadUserInput,
            message,
        );
    }
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            let message = format!("the request body is not a GraphQL request: {error}");
            return answer.malformed(StatusCode::BAD_REQUEST, ErrorCode::BadUserInput, &message);
        }
    };
    execute(state, peer, headers, request, answer).await
}

/// A query over `GET /graphql?query=…&variables=…&operationName=…` (variables as URL-encoded
/// JSON). Only queries: a mutation or subscription over GET is refused with 405, so that a
/// link or a prefetch can never change anything.
async fn graphql_get_query(
    state: HttpState,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    query_string: &str,
) -> Response {
    let answer = Answer::from_accept(&headers);
    let request = match async_graphql::http::parse_query_string(query_string) {
        Ok(request) => request,
        Err(error) => {
            let message = format!("the query string is not a GraphQL request: {error}");
            return answer.malformed(StatusCode::BAD_REQUEST, ErrorCode::BadUserInput, &message);
        }
    };
    match crate::protocol::operation_type(&request) {
        Some(OperationType::Query) | None => execute(state, peer, headers, request, answer).await,
        Some(other) => {
            let message = format!(
                "a {} is not sent over GET: POST it (GET only reads)",
                match other {
                    OperationType::Mutation => "mutation",
                    _ => "subscription",
                }
            );
            let mut response = answer.malformed(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::BadUserInput,
                &message,
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            response
        }
    }
}

/// Runs one GraphQL request that arrived over HTTP and answers it as `answer` asks, in a span
/// of its own: the child of the caller's W3C `traceparent` header when it sends one, so that a
/// client's trace goes on into the server (and, through the events the request decides, into
/// the relay, the projectors and the edges).
async fn execute(
    state: HttpState,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    request: async_graphql::Request,
    answer: Answer,
) -> Response {
    let traceparent = headers
        .get(aether_kafka::trace::TRACEPARENT)
        .and_then(|value| value.to_str().ok());
    let span = operation_span(request.operation_name.as_deref(), traceparent);
    execute_in_span(state, peer, headers, request, answer)
        .instrument(span)
        .await
}

/// The span of one GraphQL operation a client sent, over HTTP or a WebSocket: named after the
/// operation (at most 64 characters of the name the client gave), the child of the client's
/// W3C `traceparent` when it sends one.
pub(crate) fn operation_span(operation: Option<&str>, traceparent: Option<&str>) -> tracing::Span {
    let operation: String = operation.unwrap_or("").chars().take(64).collect();
    let name = if operation.is_empty() {
        "graphql".to_owned()
    } else {
        format!("graphql {operation}")
    };
    let span = tracing::info_span!(
        "graphql",
        otel.name = name,
        otel.kind = "server",
        graphql.operation.name = %operation,
    );
    aether_kafka::trace::follow(&span, traceparent);
    span
}

async fn execute_in_span(
    state: HttpState,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    request: async_graphql::Request,
    answer: Answer,
) -> Response {
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let (caller, session) = match state.auth.authenticate(authorization).await {
        Ok(who) => (who.caller, who.session),
        Err((code, message)) => {
            return answer.refused(StatusCode::UNAUTHORIZED, code, &message);
        }
    };
    if let Some(token) = headers.get(CONSISTENCY_HEADER) {
        let Some(event) = token.to_str().ok().and_then(EventRef::parse_token) else {
            let message =
                format!("{CONSISTENCY_HEADER} must be a token from a mutation's extensions");
            return answer.refused(StatusCode::BAD_REQUEST, ErrorCode::BadUserInput, &message);
        };
        // Waiting holds a request open: only for a signed-in caller (an anonymous request is
        // answered at once, from what the read models hold), and only for an event that
        // exists (a made-up one is refused, not waited for in vain).
        if caller.0.is_some() {
            let stored = state
                .api
                .commands
                .store()
                .position_of(&event.aggregate_type, &event.aggregate_id)
                .await;
            match stored {
                Ok(stored) if stored.sequence >= event.sequence => {}
                Ok(_) => {
                    let message = format!("{CONSISTENCY_HEADER} names no event of this server");
                    return answer.refused(
                        StatusCode::BAD_REQUEST,
                        ErrorCode::BadUserInput,
                        &message,
                    );
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot check a consistency token against the event store");
                    let message =
                        "the event store cannot be reached to check the consistency token";
                    return answer.refused(
                        StatusCode::SERVICE_UNAVAILABLE,
                        ErrorCode::Unavailable,
                        message,
                    );
                }
            }
            if !state
                .api
                .wait_until_projected(&event, state.consistency_wait)
                .await
            {
                tracing::warn!(token = %event.token(), "read models did not reach the consistency token in time");
            }
        }
    }
    let token = ConsistencyToken::default();
    let mut request = request.data(caller).data(session).data(token.clone());
    if let Some(Extension(ConnectInfo(peer))) = peer {
        let ip = client_ip(peer.ip(), &headers, &state.connections.trusted_proxies);
        request = request.data(ClientIp(ip));
    }
    // One view of the read models' live versions for the whole request (a switch meanwhile
    // cannot split its fields between two versions).
    let mut response =
        aether_projections::read::with_pinned_versions(state.schema.execute(request)).await;
    for error in &mut response.errors {
        label_error(error);
    }
    if let Some(event) = token.event() {
        response.extensions.insert(
            "consistencyToken".to_owned(),
            async_graphql::Value::String(event.token()),
        );
    }
    // Refused before execution (the document does not parse or validate, a limit refused it):
    // no `data` entry, and a 4xx for clients that asked for the GraphQL response type. Errors
    // of execution name the field they come from.
    let refused = response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|error| error.path.is_empty());
    let serialized = if refused {
        serde_json::to_vec(&json!({ "errors": response.errors, "extensions": response.extensions }))
    } else {
        serde_json::to_vec(&response)
    };
    let body = match serialized {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(%error, "a GraphQL response could not be serialized");
            let message = "the response could not be serialized";
            return answer.malformed(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                message,
            );
        }
    };
    if body.len() > state.connections.max_response {
        let message = too_large(body.len(), state.connections.max_response);
        return answer.refused(StatusCode::BAD_REQUEST, ErrorCode::BadUserInput, &message);
    }
    let status = match (refused, answer) {
        (true, Answer::GraphQlResponse) => refused_status(&response.errors),
        _ => StatusCode::OK,
    };
    answer.send(status, body)
}

/// The status of a request refused before execution, as the GraphQL response type: 429 for a
/// rate limit, 401 without a valid sign-in, 400 otherwise.
fn refused_status(errors: &[ServerError]) -> StatusCode {
    let code = errors.first().and_then(|error| {
        error
            .extensions
            .as_ref()
            .and_then(|extensions| extensions.get("code").cloned())
    });
    match code {
        Some(async_graphql::Value::String(code)) if code == ErrorCode::RateLimited.as_str() => {
            StatusCode::TOO_MANY_REQUESTS
        }
        Some(async_graphql::Value::String(code)) if code == ErrorCode::Unauthenticated.as_str() => {
            StatusCode::UNAUTHORIZED
        }
        _ => StatusCode::BAD_REQUEST,
    }
}

/// Why a response was not sent.
pub(crate) fn too_large(size: usize, max: usize) -> String {
    format!(
        "the response would be {size} bytes; at most {max} are sent (--max-response-bytes): \
         ask for smaller pages or fewer fields"
    )
}

/// The address a request comes from: the connection's peer, or, when the peer is a trusted
/// proxy, the nearest address in `X-Forwarded-For` that is not itself a trusted proxy
/// (walking from the right: the entries on the left are whatever the client wrote).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let mut nearest = peer;
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    for hop in hops.iter().rev() {
        let Ok(hop) = hop.trim().parse::<IpAddr>() else {
            // Not an address: nothing further left can be believed.
            return nearest;
        };
        if !trusted.contains(&hop) {
            return hop;
        }
        nearest = hop;
    }
    nearest
}

/// Errors the schema raises itself (syntax, validation, argument types, limits) come without a
/// code; they are all the client's input.
pub(crate) fn label_error(error: &mut ServerError) {
    let has_code = error
        .extensions
        .as_ref()
        .is_some_and(|extensions| extensions.get("code").is_some());
    if !has_code {
        let labelled = async_graphql::Error::new(error.message.clone())
            .extend_with(|_, e| e.set("code", ErrorCode::BadUserInput.as_str()));
        error.extensions = labelled.extensions;
    }
}

async fn graphql_get(
    State(state): State<HttpState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let (Some(protocol), Ok(upgrade)) = (negotiate(&headers), upgrade) else {
        if let Some(query) = uri.query().filter(|query| !query.is_empty()) {
            return graphql_get_query(state, peer, headers, query).await;
        }
        let wants_page = headers
            .get(header::ACCEPT)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"));
        if !wants_page {
            let message = "GET /graphql needs a `query` parameter (or a WebSocket upgrade)";
            return Answer::from_accept(&headers).malformed(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadUserInput,
                message,
            );
        }
        if state.graphiql {
            return Redirect::to(GRAPHIQL_PATH).into_response();
        }
        return (
            [(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(NO_GRAPHIQL_POLICY),
            )],
            Html(NO_GRAPHIQL_PAGE),
        )
            .into_response();
    };
    let Some(slot) = state.connections.slots.take() else {
        let message = format!(
            "this instance holds its most WebSocket connections ({}); try again later or \
             another instance",
            state.connections.slots.max()
        );
        state.connections.metrics.refused_connections.increment(1);
        tracing::warn!(
            open = state.connections.open(),
            "refused a WebSocket: connection limit"
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(error_body(ErrorCode::Unavailable, &message)),
        )
            .into_response();
    };
    let transport = Transport {
        schema: state.schema.clone(),
        audiences: state.connections.audiences.clone(),
        init_timeout: state.connections.init_timeout,
        revocations: state.api.revocations.clone(),
        max_response_bytes: state.connections.max_response,
        metrics: state.connections.metrics.clone(),
    };
    let metrics = state.connections.metrics.clone();
    let auth = state.auth.clone();
    // The socket keeps its client's address: per-address limits apply to what it sends.
    let address = peer.map(|Extension(ConnectInfo(peer))| {
        ClientIp(client_ip(
            peer.ip(),
            &headers,
            &state.connections.trusted_proxies,
        ))
    });
    let hub = state.api.ephemeral.clone();
    let budget = state.connections.max_subscriptions;
    let start_rate = state.api.limits.rates.subscribes_per_connection;
    let max_message = state.connections.max_message;
    let send_timeout = state.connections.send_timeout;
    let read_buffer = state.connections.read_buffer;
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .read_buffer_size(read_buffer)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            let _open = metrics.connection();
            // Who this connection is, once `connection_init` has said: their presence lasts as
            // long as the socket.
            let signed_in: Arc<Mutex<Option<UserId>>> = Arc::default();
            let seen = signed_in.clone();
            let connected = hub.clone();
            let (sink, stream) = socket.split();
            let mut sink = SendDeadline::new(sink, send_timeout);
            let (stream, too_big) = watch_for_oversized(stream);
            let ended = crate::protocol::serve(
                transport,
                protocol,
                &mut sink,
                stream,
                move |payload: serde_json::Value| {
                    let (auth, seen, connected) = (auth.clone(), seen.clone(), connected.clone());
                    async move {
                        let authorization = payload
                            .get("authorization")
                            .or_else(|| payload.get("Authorization"))
                            .and_then(|value| value.as_str());
                        let who =
                            auth.authenticate(authorization)
                                .await
                                .map_err(|(code, message)| {
                                    async_graphql::Error::new(message)
                                        .extend_with(|_, e| e.set("code", code.as_str()))
                                })?;
                        if let Caller(Some(user)) = who.caller {
                            if let Ok(mut slot) = seen.lock() {
                                // Counted once; a fresh token later is of the same user.
                                if slot.is_none() {
                                    *slot = Some(user);
                                    connected.connected(user);
                                }
                            }
                        }
                        let mut data = Data::default();
                        data.insert(who.caller);
                        data.insert(who.session);
                        data.insert(SubscriptionBudget::with_rate(budget, start_rate));
                        if let Some(address) = address {
                            data.insert(address);
                        }
                        Ok(Authorized {
                            data,
                            lease: who.lease,
                        })
                    }
                },
            )
            .await;
            if too_big.load(Ordering::Relaxed) {
                close_too_big(&mut sink, max_message).await;
            } else if let Ended::TooSlow(why) = ended {
                metrics.slow_clients.increment(1);
                close_too_slow(&mut sink, &why).await;
            }
            let user = signed_in.lock().ok().and_then(|mut slot| slot.take());
            if let Some(user) = user {
                hub.disconnected(user);
            }
        })
}

/// The public keys tokens are signed with, for services that verify them on their own.
async fn jwks(State(state): State<HttpState>) -> Response {
    Json(state.auth.tokens.jwks().clone()).into_response()
}

async fn readyz(State(state): State<HttpState>) -> Response {
    let ready = *state.ready.borrow();
    let read_models_at = state.watermarks.as_ref().map(Watermarks::low);
    let body = json!({ "ready": ready, "readModelsAt": read_models_at });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `/healthz` and `/readyz` for a role that serves nothing else (the relay): `ready` says
/// whether the role can do its work, with details for operators.
pub fn health_router<F>(ready: F) -> Router
where
    F: Fn() -> (bool, serde_json::Value) + Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    let (ok, details) = ready();
                    let status = if ok {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (status, Json(details)).into_response()
                }
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = value.parse() {
            headers.insert("x-forwarded-for", value);
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy = ip("10.0.0.1");
        let trusted = [proxy, ip("10.0.0.2")];
        // Straight from a client: the header is the client's to write, and ignored.
        assert_eq!(
            client_ip(ip("203.0.113.9"), &forwarded("198.51.100.1"), &trusted),
            ip("203.0.113.9")
        );
        // Through the proxy: the address it saw.
        assert_eq!(
            client_ip(proxy, &forwarded("198.51.100.1"), &trusted),
            ip("198.51.100.1")
        );
        // A client that writes its own header in front: only the proxies' entries count.
        assert_eq!(
            client_ip(
                proxy,
                &forwarded("1.2.3.4, 198.51.100.1, 10.0.0.2"),
                &trusted
            ),
            ip("198.51.100.1")
        );
        // Garbage or nothing: the nearest trusted hop.
        assert_eq!(client_ip(proxy, &forwarded("junk"), &trusted), proxy);
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
        // No proxy trusted (the default): the peer, always.
        assert_eq!(client_ip(proxy, &forwarded("198.51.100.1"), &[]), proxy);
    }
}

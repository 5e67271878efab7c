//! What the API reports through the `metrics` facade: GraphQL operations by name and outcome
//! with their latency, rate-limit refusals by limit, and typing/presence fan-out.
//!
//! An operation is named by its first root field (`sendMessage`, `channel`, …), not by the
//! `operationName` a client picks: the label set is then bounded by the schema. A field the
//! schema does not have (a document that fails validation) is `other`; introspection is
//! `introspection`. Queries and mutations are counted, over HTTP and WebSocket alike;
//! subscriptions are counted by the edge (`aether_subscriptions`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextRequest,
};
use async_graphql::parser::types::{
    ExecutableDocument, OperationType, Selection, TypeKind, TypeSystemDefinition,
};
use async_graphql::{Response, ServerResult, Variables};
use async_trait::async_trait;
use metrics::{Counter, Histogram, SharedString, Unit};

pub const OPERATIONS: &str = "aether_graphql_operations_total";
pub const OPERATION_SECONDS: &str = "aether_graphql_operation_duration_seconds";
pub const RATE_LIMITED: &str = "aether_rate_limit_refusals_total";
pub const EPHEMERAL_SIGNALS: &str = "aether_ephemeral_signals_total";
pub const EPHEMERAL_FANOUT: &str = "aether_ephemeral_fanout_total";

pub fn describe() {
    metrics::describe_counter!(
        OPERATIONS,
        Unit::Count,
        "GraphQL queries and mutations, by type, operation (the first root field; `other` for \
         fields the schema does not have) and outcome (ok, client_error, server_error)."
    );
    metrics::describe_histogram!(
        OPERATION_SECONDS,
        Unit::Seconds,
        "Time to answer one GraphQL query or mutation, by type and operation."
    );
    metrics::describe_counter!(
        RATE_LIMITED,
        Unit::Count,
        "Requests refused with RATE_LIMITED, by the limit that refused them."
    );
    metrics::describe_counter!(
        EPHEMERAL_SIGNALS,
        Unit::Count,
        "Typing and presence signals this instance received (from any instance), by kind."
    );
    metrics::describe_counter!(
        EPHEMERAL_FANOUT,
        Unit::Count,
        "Typing and presence updates handed to this instance's subscriptions, by kind."
    );
}

/// A rate limit's refusal counter; `limit` names the limit (`mutations_per_user`, …).
pub fn refusals(limit: &'static str) -> Counter {
    metrics::counter!(RATE_LIMITED, "limit" => limit)
}

/// The fan-out counters of typing and presence: signals received, updates handed out.
#[derive(Clone, Debug)]
pub struct EphemeralCounters {
    pub typing_signals: Counter,
    pub presence_signals: Counter,
    pub typing_fanout: Counter,
    pub presence_fanout: Counter,
}

impl EphemeralCounters {
    pub fn new() -> Self {
        Self {
            typing_signals: metrics::counter!(EPHEMERAL_SIGNALS, "kind" => "typing"),
            presence_signals: metrics::counter!(EPHEMERAL_SIGNALS, "kind" => "presence"),
            typing_fanout: metrics::counter!(EPHEMERAL_FANOUT, "kind" => "typing"),
            presence_fanout: metrics::counter!(EPHEMERAL_FANOUT, "kind" => "presence"),
        }
    }
}

impl Default for EphemeralCounters {
    fn default() -> Self {
        Self::new()
    }
}

/// How an operation ended, as its label says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// Refused for the client's input or rights (every error code but the two below, and the
    /// schema's own parse and validation errors, which carry none).
    ClientError,
    /// `INTERNAL` or `UNAVAILABLE`: the server's fault.
    ServerError,
}

impl Outcome {
    fn of(response: &Response) -> Self {
        let server = response.errors.iter().any(|error| {
            let code = error
                .extensions
                .as_ref()
                .and_then(|extensions| extensions.get("code"));
            matches!(code, Some(async_graphql::Value::String(code)) if code == "INTERNAL" || code == "UNAVAILABLE")
        });
        if server {
            Self::ServerError
        } else if response.errors.is_empty() {
            Self::Ok
        } else {
            Self::ClientError
        }
    }
}

/// The series of one operation, made when it is first answered.
struct Operation {
    kind: &'static str,
    name: SharedString,
    handles: OnceLock<Handles>,
}

struct Handles {
    ok: Counter,
    client_error: Counter,
    server_error: Counter,
    seconds: Histogram,
}

impl Operation {
    fn new(kind: &'static str, name: impl Into<SharedString>) -> Arc<Self> {
        Arc::new(Self {
            kind,
            name: name.into(),
            handles: OnceLock::new(),
        })
    }

    fn record(&self, outcome: Outcome, started: Instant) {
        let handles = self.handles.get_or_init(|| {
            let counter = |outcome: &'static str| {
                metrics::counter!(OPERATIONS, "type" => self.kind, "operation" => self.name.clone(), "outcome" => outcome)
            };
            Handles {
                ok: counter("ok"),
                client_error: counter("client_error"),
                server_error: counter("server_error"),
                seconds: metrics::histogram!(OPERATION_SECONDS, "type" => self.kind, "operation" => self.name.clone()),
            }
        });
        match outcome {
            Outcome::Ok => handles.ok.increment(1),
            Outcome::ClientError => handles.client_error.increment(1),
            Outcome::ServerError => handles.server_error.increment(1),
        }
        handles.seconds.record(started.elapsed());
    }
}

fn kind_of(ty: OperationType) -> &'static str {
    match ty {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}

/// Every operation name the schema can give, each with its series.
pub struct OperationNames {
    fields: HashMap<(&'static str, String), Arc<Operation>>,
    other: [Arc<Operation>; 3],
    introspection: Arc<Operation>,
}

impl std::fmt::Debug for OperationNames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperationNames")
            .field("fields", &self.fields.len())
            .finish_non_exhaustive()
    }
}

impl OperationNames {
    /// The root fields of the schema described by `sdl`.
    pub fn from_sdl(sdl: &str) -> Self {
        let mut fields = HashMap::new();
        if let Ok(document) = async_graphql::parser::parse_schema(sdl) {
            let mut roots = HashMap::from([
                ("Query".to_owned(), "query"),
                ("Mutation".to_owned(), "mutation"),
                ("Subscription".to_owned(), "subscription"),
            ]);
            for definition in &document.definitions {
                if let TypeSystemDefinition::Schema(schema) = definition {
                    roots.clear();
                    let schema = &schema.node;
                    for (ty, kind) in [
                        (&schema.query, "query"),
                        (&schema.mutation, "mutation"),
                        (&schema.subscription, "subscription"),
                    ] {
                        if let Some(ty) = ty {
                            roots.insert(ty.node.to_string(), kind);
                        }
                    }
                }
            }
            for definition in &document.definitions {
                let TypeSystemDefinition::Type(ty) = definition else {
                    continue;
                };
                let Some(kind) = roots.get(ty.node.name.node.as_str()) else {
                    continue;
                };
                if let TypeKind::Object(object) = &ty.node.kind {
                    for field in &object.fields {
                        let name = field.node.name.node.to_string();
                        fields.insert((*kind, name.clone()), Operation::new(kind, name));
                    }
                }
            }
        }
        Self {
            fields,
            other: [
                Operation::new("query", "other"),
                Operation::new("mutation", "other"),
                Operation::new("subscription", "other"),
            ],
            introspection: Operation::new("query", "introspection"),
        }
    }

    fn other(&self, kind: &'static str) -> Arc<Operation> {
        match kind {
            "mutation" => self.other[1].clone(),
            "subscription" => self.other[2].clone(),
            _ => self.other[0].clone(),
        }
    }

    /// The operation a document's operation of type `ty` is counted as, from its first root
    /// field.
    fn of(
        &self,
        ty: OperationType,
        selection: &[async_graphql::Positioned<Selection>],
    ) -> Arc<Operation> {
        let kind = kind_of(ty);
        let field = selection
            .iter()
            .find_map(|selection| match &selection.node {
                Selection::Field(field) => Some(field.node.name.node.as_str()),
                _ => None,
            });
        match field {
            Some(name) if name.starts_with("__") => self.introspection.clone(),
            Some(name) => self
                .fields
                .get(&(kind, name.to_owned()))
                .cloned()
                .unwrap_or_else(|| self.other(kind)),
            None => self.other(kind),
        }
    }
}

/// The extension that counts and times every query and mutation.
#[derive(Clone, Debug)]
pub struct OperationMetrics {
    names: Arc<OperationNames>,
}

impl OperationMetrics {
    pub fn new(names: OperationNames) -> Self {
        Self {
            names: Arc::new(names),
        }
    }
}

impl ExtensionFactory for OperationMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Tracked {
            names: self.names.clone(),
            state: Mutex::new(State::default()),
        })
    }
}

#[derive(Default)]
struct State {
    /// The document's operations: their names and what each is counted as.
    operations: Vec<(Option<String>, Arc<Operation>)>,
    /// Counted once executed; a request refused before that is counted when it ends.
    recorded: bool,
}

struct Tracked {
    names: Arc<OperationNames>,
    state: Mutex<State>,
}

impl Tracked {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The operation `name` picks in the parsed document (`other` if none).
    fn chosen(&self, name: Option<&str>) -> Arc<Operation> {
        let state = self.state();
        let found = match name {
            None => state.operations.first(),
            Some(name) => state
                .operations
                .iter()
                .find(|(named, _)| named.as_deref() == Some(name)),
        };
        found
            .map(|(_, operation)| operation.clone())
            .unwrap_or_else(|| self.names.other("query"))
    }
}

#[async_trait]
impl Extension for Tracked {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
        let response = next.run(ctx).await;
        let operation = {
            let state = self.state();
            (!state.recorded).then(|| {
                state
                    .operations
                    .first()
                    .map(|(_, operation)| operation.clone())
                    .unwrap_or_else(|| self.names.other("query"))
            })
        };
        if let Some(operation) = operation {
            if operation.kind != "subscription" {
                operation.record(Outcome::of(&response), started);
            }
        }
        response
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let operations = document
            .operations
            .iter()
            .map(|(name, operation)| {
                let counted = self
                    .names
                    .of(operation.node.ty, &operation.node.selection_set.node.items);
                (name.map(|name| name.to_string()), counted)
            })
            .collect();
        self.state().operations = operations;
        Ok(document)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let started = Instant::now();
        let operation = self.chosen(operation_name);
        let response = next.run(ctx, operation_name).await;
        self.state().recorded = true;
        operation.record(Outcome::of(&response), started);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_named_by_the_schemas_root_fields_only() {
        let names = OperationNames::from_sdl(&crate::sdl());
        assert!(names
            .fields
            .contains_key(&("mutation", "sendMessage".to_owned())));
        assert!(names.fields.contains_key(&("query", "me".to_owned())));
        let document = async_graphql::parser::parse_query(
            "mutation A { madeUp } query B { __schema { types { name } } } query C { me { id } }",
        )
        .expect("the document parses");
        let mut counted: Vec<(&str, String)> = document
            .operations
            .iter()
            .map(|(_, op)| {
                let counted = names.of(op.node.ty, &op.node.selection_set.node.items);
                (counted.kind, counted.name.to_string())
            })
            .collect();
        counted.sort();
        assert_eq!(
            counted,
            [
                ("mutation", "other".to_owned()),
                ("query", "introspection".to_owned()),
                ("query", "me".to_owned()),
            ]
        );
    }
}

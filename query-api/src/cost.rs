//! What a query costs, and who may spend how much: a field costs 1 plus what it selects, and a
//! paged field (one that takes `first`/`last`) costs its selection once per item of the page
//! it asks for (the page maximum when it does not say). A query or mutation over
//! `--max-query-complexity` is refused (`BAD_USER_INPUT`); a query's cost is then taken from
//! the caller's and the client address's buckets (`--rate-query-cost-per-user`,
//! `--rate-query-cost-per-ip`), so one account cannot keep the server busy for everyone.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use aether_commands::ErrorCode;
use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{
    ExecutableDocument, Field, OperationType, Selection, SelectionSet,
};
use async_graphql::registry::{MetaTypeName, Registry};
use async_graphql::{ErrorExtensions, Name, Pos, ServerResult, Value, Variables};
use async_trait::async_trait;

use crate::rate::{throttled_error, ClientIp, RateLimiters};
use crate::Caller;

/// Refuses documents that cost more than `max`, and charges queries to the rate limits.
#[derive(Clone, Copy, Debug)]
pub struct QueryCost {
    /// The most one operation may cost.
    pub max: usize,
    /// What a page that does not say its size counts as: the page maximum.
    pub max_page: i64,
}

impl ExtensionFactory for QueryCost {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(*self)
    }
}

/// The cost of selections over a document, fragments expanded where they are spread (each
/// fragment's cost computed once; a fragment that spreads itself costs nothing the second
/// time round; sums saturate).
struct Costing<'a> {
    document: &'a ExecutableDocument,
    registry: &'a Registry,
    variables: &'a Variables,
    max_page: u64,
    fragments: HashMap<&'a str, u64>,
    visiting: HashSet<&'a str>,
}

impl<'a> Costing<'a> {
    /// The page size `field` asks for, if it is a paged field of `ty`.
    fn page(&self, field: &Field, paged: bool) -> u64 {
        if !paged {
            return 1;
        }
        let asked = ["first", "last"]
            .iter()
            .filter_map(|name| {
                let value = field.get_argument(name)?.node.clone();
                let value = value
                    .into_const_with(|variable| self.variables.get(&variable).cloned().ok_or(()))
                    .ok()?;
                match value {
                    Value::Number(number) => number.as_i64(),
                    _ => None,
                }
            })
            .max();
        match asked {
            Some(size) => u64::try_from(size).unwrap_or(0).clamp(1, self.max_page),
            None => self.max_page,
        }
    }

    fn set(&mut self, set: &'a SelectionSet, ty: &str) -> u64 {
        let mut total: u64 = 0;
        for item in &set.items {
            let cost = match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let meta = self
                        .registry
                        .types
                        .get(ty)
                        .and_then(|meta| meta.field_by_name(field.name.node.as_str()));
                    let (inner, paged) = match meta {
                        Some(meta) => (
                            MetaTypeName::concrete_typename(&meta.ty).to_owned(),
                            meta.args.contains_key("first") || meta.args.contains_key("last"),
                        ),
                        None => (String::new(), false),
                    };
                    let page = self.page(field, paged);
                    let selected = self.set(&field.selection_set.node, &inner);
                    1u64.saturating_add(page.saturating_mul(selected))
                }
                Selection::InlineFragment(fragment) => {
                    let on = fragment
                        .node
                        .type_condition
                        .as_ref()
                        .map(|condition| condition.node.on.node.to_string())
                        .unwrap_or_else(|| ty.to_owned());
                    self.set(&fragment.node.selection_set.node, &on)
                }
                Selection::FragmentSpread(spread) => {
                    self.fragment(spread.node.fragment_name.node.as_str())
                }
            };
            total = total.saturating_add(cost);
        }
        total
    }

    fn fragment(&mut self, name: &'a str) -> u64 {
        if let Some(known) = self.fragments.get(name) {
            return *known;
        }
        let Some(fragment) = self.document.fragments.get(&Name::new(name)) else {
            return 0;
        };
        if !self.visiting.insert(name) {
            return 0;
        }
        let on = fragment.node.type_condition.node.on.node.to_string();
        let cost = self.set(&fragment.node.selection_set.node, &on);
        self.visiting.remove(name);
        self.fragments.insert(name, cost);
        cost
    }
}

/// What each operation of `document` costs: (operation type, cost).
pub fn operation_costs(
    document: &ExecutableDocument,
    registry: &Registry,
    variables: &Variables,
    max_page: i64,
) -> Vec<(OperationType, u64)> {
    let mut costing = Costing {
        document,
        registry,
        variables,
        max_page: u64::try_from(max_page).unwrap_or(1).max(1),
        fragments: HashMap::new(),
        visiting: HashSet::new(),
    };
    document
        .operations
        .iter()
        .map(|(_, operation)| {
            let ty = operation.node.ty;
            let root = match ty {
                OperationType::Query => Some(registry.query_type.as_str()),
                OperationType::Mutation => registry.mutation_type.as_deref(),
                OperationType::Subscription => registry.subscription_type.as_deref(),
            }
            .unwrap_or_default()
            .to_owned();
            (ty, costing.set(&operation.node.selection_set.node, &root))
        })
        .collect()
}

#[async_trait]
impl Extension for QueryCost {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let costs = operation_costs(
            &document,
            &ctx.schema_env.registry,
            variables,
            self.max_page,
        );
        let max = u64::try_from(self.max).unwrap_or(u64::MAX);
        if let Some((_, cost)) = costs
            .iter()
            .find(|(ty, cost)| *ty != OperationType::Subscription && *cost > max)
        {
            let error = async_graphql::Error::new(format!(
                "the operation costs {cost} (a page counts its selection once per item it asks \
                 for); at most {max} is accepted (--max-query-complexity): ask for smaller pages"
            ))
            .extend_with(|_, e| e.set("code", ErrorCode::BadUserInput.as_str()));
            return Err(error.into_server_error(Pos::default()));
        }
        let spent: u64 = costs
            .iter()
            .filter(|(ty, _)| *ty == OperationType::Query)
            .map(|(_, cost)| *cost)
            .fold(0, u64::saturating_add);
        if spent == 0 {
            return Ok(document);
        }
        let Some(limiters) = ctx.data_opt::<Arc<RateLimiters>>() else {
            return Ok(document);
        };
        let spent = u32::try_from(spent).unwrap_or(u32::MAX);
        let refuse = |throttled| {
            throttled_error(throttled, "queries (by cost)").into_server_error(Pos::default())
        };
        if let Some(Caller(Some(user))) = ctx.data_opt::<Caller>() {
            limiters
                .query_cost_per_user
                .check_n(&user.to_string(), spent)
                .map_err(refuse)?;
        }
        if let Some(ClientIp(ip)) = ctx.data_opt::<ClientIp>() {
            limiters
                .query_cost_per_ip
                .check_n(&ip.to_string(), spent)
                .map_err(refuse)?;
        }
        Ok(document)
    }
}

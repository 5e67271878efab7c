//! Limits on the shape of a GraphQL document that the schema's own depth and complexity limits
//! do not cover: aliases, which let one request ask for the same expensive field many times.

use std::sync::Arc;

use aether_commands::ErrorCode;
use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use std::collections::{HashMap, HashSet};

use async_graphql::parser::types::{
    ExecutableDocument, Field, OperationType, Selection, SelectionSet,
};
use async_graphql::{ErrorExtensions, Pos, ServerResult, Variables};
use async_trait::async_trait;

/// Refuses documents with more than `max` aliased fields (operations and fragments together).
#[derive(Clone, Copy, Debug)]
pub struct AliasLimit {
    pub max: usize,
}

impl ExtensionFactory for AliasLimit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(*self)
    }
}

/// Counts over a document with every fragment spread expanded where it is spread: a fragment
/// spread five times counts five times. Each fragment's own count is computed once (so a chain
/// of fragments spreading each other twice costs linear time, however large the expansion),
/// counts saturate instead of overflowing, and a fragment that spreads itself (which
/// validation refuses later) counts nothing the second time round.
struct Expanded<'a> {
    document: &'a ExecutableDocument,
    counted: HashMap<&'a str, usize>,
    visiting: HashSet<&'a str>,
}

impl<'a> Expanded<'a> {
    fn new(document: &'a ExecutableDocument) -> Self {
        Self {
            document,
            counted: HashMap::new(),
            visiting: HashSet::new(),
        }
    }

    /// What `count` says of `set`, fragments expanded. `field` counts one field (and decides
    /// whether to descend into its selection: `None` stops there).
    fn count(
        &mut self,
        set: &'a SelectionSet,
        field: &impl Fn(&'a Field) -> (usize, Option<&'a SelectionSet>),
    ) -> usize {
        let mut total: usize = 0;
        for item in &set.items {
            let add = match &item.node {
                Selection::Field(node) => {
                    let (own, inner) = field(&node.node);
                    own.saturating_add(inner.map_or(0, |inner| self.count(inner, field)))
                }
                Selection::InlineFragment(fragment) => {
                    self.count(&fragment.node.selection_set.node, field)
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    self.fragment(name, field)
                }
            };
            total = total.saturating_add(add);
        }
        total
    }

    fn fragment(
        &mut self,
        name: &'a str,
        field: &impl Fn(&'a Field) -> (usize, Option<&'a SelectionSet>),
    ) -> usize {
        if let Some(known) = self.counted.get(name) {
            return *known;
        }
        let Some(fragment) = self
            .document
            .fragments
            .iter()
            .find(|(fragment, _)| fragment.as_str() == name)
            .map(|(_, fragment)| fragment)
        else {
            return 0;
        };
        if !self.visiting.insert(name) {
            return 0;
        }
        let counted = self.count(&fragment.node.selection_set.node, field);
        self.visiting.remove(name);
        self.counted.insert(name, counted);
        counted
    }
}

/// Aliased fields in the whole document, every fragment counted each time it is spread (a
/// fragment nobody spreads is counted once: it is still part of the document).
pub fn count_aliases(document: &ExecutableDocument) -> usize {
    fn aliased(field: &Field) -> (usize, Option<&SelectionSet>) {
        (
            usize::from(field.alias.is_some()),
            Some(&field.selection_set.node),
        )
    }
    let mut expanded = Expanded::new(document);
    let mut total: usize = 0;
    for (_, operation) in document.operations.iter() {
        total = total.saturating_add(expanded.count(&operation.node.selection_set.node, &aliased));
    }
    let spread: HashSet<&str> = expanded.counted.keys().copied().collect();
    for (name, fragment) in &document.fragments {
        if !spread.contains(name.as_str()) {
            total = total.saturating_add(
                Expanded::new(document).count(&fragment.node.selection_set.node, &aliased),
            );
        }
    }
    total
}

/// The mutation fields the document's mutation operations select at their root (aliases and
/// fragment spreads expanded): how many commands the document can send.
pub fn count_mutation_fields(document: &ExecutableDocument) -> usize {
    fn root_field(_: &Field) -> (usize, Option<&SelectionSet>) {
        (1, None)
    }
    let mut expanded = Expanded::new(document);
    document
        .operations
        .iter()
        .filter(|(_, operation)| operation.node.ty == OperationType::Mutation)
        .fold(0usize, |total, (_, operation)| {
            total.saturating_add(expanded.count(&operation.node.selection_set.node, &root_field))
        })
}

#[async_trait]
impl Extension for AliasLimit {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let count = count_aliases(&document);
        if count > self.max {
            let error = async_graphql::Error::new(format!(
                "the query uses {count} aliases; at most {} are accepted (--max-query-aliases)",
                self.max
            ))
            .extend_with(|_, e| e.set("code", ErrorCode::BadUserInput.as_str()));
            return Err(error.into_server_error(Pos::default()));
        }
        Ok(document)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(query: &str) -> usize {
        async_graphql::parser::parse_query(query)
            .map(|document| count_aliases(&document))
            .unwrap_or(usize::MAX)
    }

    #[test]
    fn aliases_are_counted_everywhere_fragments_each_time_they_are_spread() {
        assert_eq!(count("{ me { id } }"), 0);
        assert_eq!(count("{ a: me { id } b: me { x: id } }"), 3);
        assert_eq!(
            count("query { ...F ...F } fragment F on Query { a: me { id } ... on Query { b: me { id } } }"),
            4
        );
        // Spread within spread: G holds 2, F spreads G three times.
        assert_eq!(
            count("query { ...F } fragment F on Query { ...G ...G ...G } fragment G on Query { a: me { id } b: me { id } }"),
            6
        );
        // A fragment nobody spreads still counts once; one that spreads itself ends.
        assert_eq!(
            count("query { me { id } } fragment F on Query { a: me { id } }"),
            1
        );
        assert_eq!(
            count("query { ...F } fragment F on Query { a: me { id } ...F }"),
            1
        );
    }

    #[test]
    fn a_doubling_chain_of_fragments_is_counted_without_expanding_it() {
        let mut query = String::from("query { ...F0 } ");
        for n in 0..60 {
            query.push_str(&format!(
                "fragment F{n} on Query {{ ...F{} ...F{} }} ",
                n + 1,
                n + 1
            ));
        }
        query.push_str("fragment F60 on Query { a: me { id } }");
        // 2^60 aliases once expanded: counted in linear time, and far over any limit.
        assert!(count(&query) >= 1 << 60);
    }

    fn mutations(query: &str) -> usize {
        async_graphql::parser::parse_query(query)
            .map(|document| count_mutation_fields(&document))
            .unwrap_or(usize::MAX)
    }

    #[test]
    fn mutation_fields_are_counted_with_aliases_and_spreads() {
        assert_eq!(mutations("{ me { id } }"), 0);
        assert_eq!(mutations("mutation { logout }"), 1);
        assert_eq!(mutations("mutation { a: logout b: logout c: logout }"), 3);
        assert_eq!(
            mutations("mutation { ...F ...F ... { x: logout } } fragment F on Mutations { a: logout b: logout }"),
            5
        );
        // Only the root fields are commands; what a payload selects is not.
        assert_eq!(
            mutations("mutation { sendMessage(input: {}) { id author { id } } }"),
            1
        );
    }
}

//! Limits on the shape of a GraphQL document that the schema's own depth and complexity limits
//! do not cover: aliases, which let one request ask for the same expensive field many times.

use std::sync::Arc;

use aether_commands::ErrorCode;
use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
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

/// Aliased fields in `set`, nested sets included.
fn aliases(set: &SelectionSet) -> usize {
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(field) => {
                usize::from(field.node.alias.is_some()) + aliases(&field.node.selection_set.node)
            }
            Selection::InlineFragment(fragment) => aliases(&fragment.node.selection_set.node),
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}

/// Aliased fields in the whole document; each fragment is counted once.
pub fn count_aliases(document: &ExecutableDocument) -> usize {
    let in_operations: usize = document
        .operations
        .iter()
        .map(|(_, operation)| aliases(&operation.node.selection_set.node))
        .sum();
    let in_fragments: usize = document
        .fragments
        .values()
        .map(|fragment| aliases(&fragment.node.selection_set.node))
        .sum();
    in_operations + in_fragments
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
    fn aliases_are_counted_everywhere_fragments_once() {
        assert_eq!(count("{ me { id } }"), 0);
        assert_eq!(count("{ a: me { id } b: me { x: id } }"), 3);
        assert_eq!(
            count("query { ...F ...F } fragment F on Query { a: me { id } ... on Query { b: me { id } } }"),
            2
        );
    }
}

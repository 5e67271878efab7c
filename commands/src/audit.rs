//! `aether audit verify`: walks every aggregate's hash chain in the event store.

use aether_schemas::audit::{ChainBreak, ChainVerifier};

use crate::store::{ChainCursor, StoreError, WriteStore};

/// Events read per page while verifying.
const PAGE: usize = 1_000;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditReport {
    pub events_checked: u64,
    pub aggregates_checked: u64,
    /// Every break found: at most one per aggregate (the first).
    pub breaks: Vec<ChainBreak>,
}

impl AuditReport {
    pub fn is_intact(&self) -> bool {
        self.breaks.is_empty()
    }
}

/// Recomputes every hash in the store. `progress` is called after each page with the number of
/// events checked so far.
pub async fn verify_chain<R: WriteStore>(
    store: &R,
    mut progress: impl FnMut(u64),
) -> Result<AuditReport, StoreError> {
    let mut verifier = ChainVerifier::default();
    let mut breaks = Vec::new();
    let mut broken: Option<(String, String)> = None;
    let mut after: Option<ChainCursor> = None;
    loop {
        let page = store.chain_page(after.clone(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(ChainCursor::from(last));
        for link in &page {
            let key = (link.aggregate_type.clone(), link.aggregate_id.clone());
            if broken.as_ref() == Some(&key) {
                continue;
            }
            if let Err(chain_break) = verifier.check(link) {
                breaks.push(chain_break);
                broken = Some(key);
            }
        }
        progress(verifier.events_checked);
    }
    Ok(AuditReport {
        events_checked: verifier.events_checked,
        aggregates_checked: verifier.aggregates_checked,
        breaks,
    })
}

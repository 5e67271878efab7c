//! The per-aggregate hash chain that lets an auditor prove history was not rewritten.
//!
//! Every stored event carries `hash = sha256(prev_hash \n aggregate_type \n aggregate_id \n
//! sequence \n event_type \n event_version \n payload \n metadata)` in lower-case hex, where
//! `payload` and `metadata` are the JSON texts exactly as stored and `prev_hash` is the previous
//! event's hash in the same aggregate (empty for the first). Changing, removing or reordering
//! any stored event breaks every later link of its aggregate.

use sha2::{Digest, Sha256};

/// One stored event, as the chain sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainLink {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: String,
    pub metadata: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of an event whose predecessor's hash is `prev_hash`.
#[allow(clippy::too_many_arguments)]
pub fn chain_hash(
    prev_hash: &str,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
    event_type: &str,
    event_version: &str,
    payload: &str,
    metadata: &str,
) -> String {
    let mut hasher = Sha256::new();
    let sequence = sequence.to_string();
    let parts = [
        prev_hash,
        aggregate_type,
        aggregate_id,
        &sequence,
        event_type,
        event_version,
        payload,
        metadata,
    ];
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            hasher.update(b"\n");
        }
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

impl ChainLink {
    /// The hash this link should carry given its contents and `prev_hash`.
    pub fn expected_hash(&self, prev_hash: &str) -> String {
        chain_hash(
            prev_hash,
            &self.aggregate_type,
            &self.aggregate_id,
            self.sequence,
            &self.event_type,
            &self.event_version,
            &self.payload,
            &self.metadata,
        )
    }
}

/// Where a chain was found broken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error(
        "{aggregate_type} {aggregate_id}: event {sequence} follows {previous} (events missing)"
    )]
    Gap {
        aggregate_type: String,
        aggregate_id: String,
        sequence: i64,
        previous: i64,
    },
    #[error(
        "{aggregate_type} {aggregate_id}: event {sequence} does not link to the event before it"
    )]
    BrokenLink {
        aggregate_type: String,
        aggregate_id: String,
        sequence: i64,
    },
    #[error("{aggregate_type} {aggregate_id}: event {sequence} was changed after it was written")]
    Tampered {
        aggregate_type: String,
        aggregate_id: String,
        sequence: i64,
    },
}

/// Checks links fed in (aggregate, sequence) order, one aggregate after another.
#[derive(Debug, Default)]
pub struct ChainVerifier {
    current: Option<(String, String)>,
    last_sequence: i64,
    last_hash: String,
    pub events_checked: u64,
    pub aggregates_checked: u64,
}

impl ChainVerifier {
    pub fn check(&mut self, link: &ChainLink) -> Result<(), ChainBreak> {
        let key = (link.aggregate_type.clone(), link.aggregate_id.clone());
        if self.current.as_ref() != Some(&key) {
            self.current = Some(key);
            self.last_sequence = 0;
            self.last_hash.clear();
            self.aggregates_checked += 1;
        }
        self.events_checked += 1;
        let at = |sequence| {
            (
                link.aggregate_type.clone(),
                link.aggregate_id.clone(),
                sequence,
            )
        };
        if link.sequence != self.last_sequence + 1 {
            let (aggregate_type, aggregate_id, sequence) = at(link.sequence);
            return Err(ChainBreak::Gap {
                aggregate_type,
                aggregate_id,
                sequence,
                previous: self.last_sequence,
            });
        }
        if link.prev_hash != self.last_hash {
            let (aggregate_type, aggregate_id, sequence) = at(link.sequence);
            return Err(ChainBreak::BrokenLink {
                aggregate_type,
                aggregate_id,
                sequence,
            });
        }
        if link.expected_hash(&link.prev_hash) != link.hash {
            let (aggregate_type, aggregate_id, sequence) = at(link.sequence);
            return Err(ChainBreak::Tampered {
                aggregate_type,
                aggregate_id,
                sequence,
            });
        }
        self.last_sequence = link.sequence;
        self.last_hash = link.hash.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(bodies: &[&str]) -> Vec<ChainLink> {
        let mut prev = String::new();
        bodies
            .iter()
            .enumerate()
            .map(|(index, body)| {
                let mut link = ChainLink {
                    aggregate_type: "Message".into(),
                    aggregate_id: "m1".into(),
                    sequence: index as i64 + 1,
                    event_type: "MessageEdited".into(),
                    event_version: "1.0".into(),
                    payload: format!("{{\"body\":\"{body}\"}}"),
                    metadata: "{}".into(),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                link.hash = link.expected_hash(&prev);
                prev = link.hash.clone();
                link
            })
            .collect()
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let mut verifier = ChainVerifier::default();
        for link in chain(&["a", "b", "c"]) {
            assert_eq!(verifier.check(&link), Ok(()));
        }
        assert_eq!(verifier.events_checked, 3);
    }

    #[test]
    fn a_rewritten_payload_is_found() {
        let mut links = chain(&["a", "b", "c"]);
        links[1].payload = "{\"body\":\"rewritten\"}".into();
        let mut verifier = ChainVerifier::default();
        assert_eq!(verifier.check(&links[0]), Ok(()));
        assert!(matches!(
            verifier.check(&links[1]),
            Err(ChainBreak::Tampered { sequence: 2, .. })
        ));
    }

    #[test]
    fn a_rehashed_rewrite_still_breaks_the_next_link() {
        let mut links = chain(&["a", "b", "c"]);
        links[1].payload = "{\"body\":\"rewritten\"}".into();
        links[1].hash = links[1].expected_hash(&links[0].hash);
        let mut verifier = ChainVerifier::default();
        verifier.check(&links[0]).unwrap();
        verifier.check(&links[1]).unwrap();
        assert!(matches!(
            verifier.check(&links[2]),
            Err(ChainBreak::BrokenLink { sequence: 3, .. })
        ));
    }

    #[test]
    fn a_removed_event_is_a_gap() {
        let links = chain(&["a", "b", "c"]);
        let mut verifier = ChainVerifier::default();
        verifier.check(&links[0]).unwrap();
        assert!(matches!(
            verifier.check(&links[2]),
            Err(ChainBreak::Gap {
                sequence: 3,
                previous: 1,
                ..
            })
        ));
    }
}

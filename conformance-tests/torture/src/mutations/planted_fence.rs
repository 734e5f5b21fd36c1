//! The planted fence bugs (feature `mutations` only): the admission rule with each bug, used by
//! the coordinator's in-memory oracle, and as a [`Fence`] of its own so that the fence tier can
//! be run against each bug (`tests/planted_fence.rs`: some case must fail).

use std::collections::HashMap;
use std::sync::Mutex;

use fencelock::{Error, Fence, FencedValue, FencingToken};
use fencelock_core::async_trait;
use fencelock_core::backend::lock_unpoisoned;

use crate::Mutation;

/// Whether a fence with `bug` (none: the correct rule, token ≥ mark) admits `token` over the
/// key's `mark`. Bugs other than the fence bugs leave the rule correct.
pub fn admits(bug: Option<Mutation>, mark: Option<u64>, token: u64) -> bool {
    match (bug, mark) {
        (Some(Mutation::FenceSkip), _) | (_, None) => true,
        (Some(Mutation::FenceStrict), Some(mark)) => token > mark,
        (_, Some(mark)) => token >= mark,
    }
}

/// An in-memory [`Fence`] that admits by [`admits`] with its bug: one mark and value per key.
#[derive(Debug, Default)]
pub struct PlantedFence {
    bug: Option<Mutation>,
    keys: Mutex<HashMap<String, (u64, Vec<u8>)>>,
}

impl PlantedFence {
    /// A fence with `bug` planted (none: a correct fence, as the control).
    pub fn new(bug: Option<Mutation>) -> Self {
        Self {
            bug,
            keys: Mutex::default(),
        }
    }
}

#[async_trait]
impl Fence for PlantedFence {
    fn backend(&self) -> &'static str {
        "planted"
    }

    async fn write(&self, key: &str, token: FencingToken, value: &[u8]) -> Result<(), Error> {
        let mut keys = lock_unpoisoned(&self.keys);
        let mark = keys.get(key).map(|(mark, _)| *mark);
        if !admits(self.bug, mark, token.get()) {
            return Err(Error::StaleToken {
                resource: key.to_owned(),
                presented: token,
                high_water: FencingToken::new(mark.unwrap_or_default()),
            });
        }
        keys.insert(key.to_owned(), (token.get(), value.to_vec()));
        Ok(())
    }

    async fn read(&self, key: &str) -> Result<Option<FencedValue>, Error> {
        Ok(lock_unpoisoned(&self.keys)
            .get(key)
            .map(|(mark, value)| FencedValue::new(value.clone(), FencingToken::new(*mark))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules() {
        for bug in [None, Some(Mutation::TokenReset)] {
            assert!(admits(bug, None, 1));
            assert!(admits(bug, Some(5), 5));
            assert!(!admits(bug, Some(5), 4));
        }
        let strict = Some(Mutation::FenceStrict);
        assert!(!admits(strict, Some(5), 5));
        assert!(admits(strict, Some(5), 6));
        assert!(admits(Some(Mutation::FenceSkip), Some(5), 1));
    }
}

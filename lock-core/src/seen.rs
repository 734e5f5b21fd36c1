//! The highest token a `Locker` has seen per name, for its regression check. Bounded: services
//! that lock a fresh name per job would otherwise grow it forever.

use std::collections::HashMap;

use crate::{FencingToken, LockName};

/// Names remembered by default.
pub(crate) const DEFAULT_NAMES: usize = 65_536;

/// Two generations of names: the most recent ones, and those before. When the recent one fills
/// half the capacity it becomes the older one and the older one is forgotten, so at least the
/// last `capacity / 2` names granted are always remembered and at most `capacity` are.
#[derive(Debug)]
pub(crate) struct Seen {
    recent: HashMap<LockName, FencingToken>,
    older: HashMap<LockName, FencingToken>,
    generation: usize,
}

impl Seen {
    /// Remembers up to `names` names (at least 2).
    pub(crate) fn new(names: usize) -> Self {
        Self {
            recent: HashMap::new(),
            older: HashMap::new(),
            generation: (names / 2).max(1),
        }
    }

    pub(crate) fn get(&self, name: &LockName) -> Option<FencingToken> {
        self.recent
            .get(name)
            .or_else(|| self.older.get(name))
            .copied()
    }

    pub(crate) fn insert(&mut self, name: &LockName, token: FencingToken) {
        if let Some(seen) = self.recent.get_mut(name) {
            *seen = token;
            return;
        }
        if self.recent.len() >= self.generation {
            self.older = std::mem::take(&mut self.recent);
        }
        self.older.remove(name);
        self.recent.insert(name.clone(), token);
    }

    /// How many names are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.recent.len() + self.older.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn name(i: usize) -> LockName {
        LockName::new(format!("job-{i}")).unwrap()
    }

    #[test]
    fn remembers_the_latest_names_and_never_more_than_its_capacity() {
        let mut seen = Seen::new(100);
        for i in 0..1_000 {
            seen.insert(&name(i), FencingToken::new(i as u64 + 1));
            assert!(seen.len() <= 100, "{} names after {i}", seen.len());
        }
        for i in 950..1_000 {
            assert_eq!(seen.get(&name(i)), Some(FencingToken::new(i as u64 + 1)));
        }
        assert_eq!(seen.get(&name(0)), None, "the oldest are forgotten");
    }

    #[test]
    fn a_name_seen_again_moves_to_the_recent_generation_with_its_new_token() {
        let mut seen = Seen::new(4);
        seen.insert(&name(0), FencingToken::new(1));
        seen.insert(&name(1), FencingToken::new(2));
        seen.insert(&name(2), FencingToken::new(3)); // name 0 and 1 are older now
        seen.insert(&name(0), FencingToken::new(9)); // back to recent
        assert_eq!(seen.len(), 3);
        seen.insert(&name(3), FencingToken::new(4)); // recent (2, 0) becomes older
        assert_eq!(seen.get(&name(0)), Some(FencingToken::new(9)));
        assert_eq!(seen.get(&name(1)), None);
    }
}

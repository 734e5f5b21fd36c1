//! Arbitrary input never panics and is classified.

use std::time::Duration;

use fencelock_core::{ErrorKind, LockName, TtlLimits};
use proptest::prelude::*;

proptest! {
    #[test]
    fn any_string_is_a_name_or_invalid_input(s in any::<String>()) {
        match LockName::new(s.clone()) {
            Ok(name) => {
                prop_assert_eq!(name.as_str(), s.as_str());
                prop_assert!(!s.is_empty() && s.len() <= LockName::MAX_LEN);
                prop_assert!(!s.chars().any(char::is_control));
            }
            Err(e) => {
                prop_assert_eq!(e.kind(), ErrorKind::InvalidInput);
                prop_assert!(s.is_empty() || s.len() > LockName::MAX_LEN || s.chars().any(char::is_control));
            }
        }
    }

    #[test]
    fn any_ttl_is_accepted_or_invalid_input(secs in any::<u64>(), nanos in 0u32..1_000_000_000) {
        let ttl = Duration::new(secs, nanos);
        let limits = TtlLimits::default();
        match limits.check(ttl) {
            Ok(t) => prop_assert!(t >= TtlLimits::MIN && t <= limits.max()),
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::InvalidInput),
        }
    }

    #[test]
    fn long_hostile_names_never_panic(s in "[\\x00-\\x7f\\u{80}-\\u{10ffff}]{0,600}") {
        let _ = LockName::new(s);
    }
}

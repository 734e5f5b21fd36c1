//! Planted bugs for the mutation check. Compiled only with the test-only `mutations` feature
//! and chosen with `FENCELOCK_TORTURE_MUTATION`; without the feature the variable is refused,
//! so no production build can turn one on.

use std::sync::Arc;

use fencelock::LeaseStore;

use crate::config::WorkerConfig;
use crate::worker::WorkerError;

/// The environment variable naming the planted bug.
pub const MUTATION_VAR: &str = "FENCELOCK_TORTURE_MUTATION";

/// A planted bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// The fence admits only tokens strictly above its mark (`>` instead of `≥`).
    FenceStrict,
    /// The fence admits every token (the check is skipped).
    FenceSkip,
    /// Tokens come from a counter that is lost with the server (minted from 0 again after a
    /// restart), instead of the backend's durable or clock-floored counter.
    TokenReset,
    /// Renew succeeds without asking the store (so without checking that the caller still
    /// owns the lease): the guard's deadline moves on while the server's lease expires.
    RenewSkip,
    /// The store ends each grant at ¾ of the TTL its lease reports (the lease says 4/3 of
    /// what the server granted), so the holder's local deadline outlives the grant and a rival
    /// can be granted while the holder's guard still says valid.
    EarlyExpiry,
}

impl Mutation {
    /// Every planted bug.
    pub const ALL: [Mutation; 5] = [
        Self::FenceStrict,
        Self::FenceSkip,
        Self::TokenReset,
        Self::RenewSkip,
        Self::EarlyExpiry,
    ];

    /// The name used in `FENCELOCK_TORTURE_MUTATION`.
    pub fn name(self) -> &'static str {
        match self {
            Self::FenceStrict => "fence-strict",
            Self::FenceSkip => "fence-skip",
            Self::TokenReset => "token-reset",
            Self::RenewSkip => "renew-skip",
            Self::EarlyExpiry => "early-expiry",
        }
    }

    /// What the bug is, for the report.
    pub fn describe(self) -> &'static str {
        match self {
            Self::FenceStrict => "fence admits token > mark instead of ≥ mark",
            Self::FenceSkip => "fence check skipped (every token admitted)",
            Self::TokenReset => {
                "tokens minted from a counter that restarts at 0 when the server restarts"
            }
            Self::RenewSkip => "renew without owner check (renewed locally, store not asked)",
            Self::EarlyExpiry => {
                "store ends each grant at 3/4 of the TTL its lease reports (deadline outlives the grant)"
            }
        }
    }

    /// Parses a name.
    ///
    /// # Errors
    /// An unknown name.
    pub fn parse(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| format!("unknown mutation `{name}`"))
    }
}

/// Whether planted bugs are compiled into this build.
pub const COMPILED: bool = cfg!(feature = "mutations");

/// Checks that `requested` may be used in this build.
///
/// # Errors
/// A mutation requested in a build without the `mutations` feature.
pub fn allowed(requested: Option<Mutation>) -> Result<Option<Mutation>, String> {
    match requested {
        Some(m) if !COMPILED => Err(format!(
            "mutation `{}` requested, but this build has no planted bugs; build with --features mutations",
            m.name()
        )),
        other => Ok(other),
    }
}

/// The mutation named by [`MUTATION_VAR`], if any.
///
/// # Errors
/// An unknown name, or any name in a build without the `mutations` feature.
pub fn from_env() -> Result<Option<Mutation>, String> {
    match std::env::var(MUTATION_VAR) {
        Ok(name) if !name.is_empty() => allowed(Some(Mutation::parse(&name)?)),
        _ => Ok(None),
    }
}

/// The worker's store, with the planted store bug if one is selected.
///
/// # Errors
/// A mutation requested in a build without the `mutations` feature.
pub fn wrap_store(
    store: Arc<dyn LeaseStore>,
    cfg: &WorkerConfig,
) -> Result<Arc<dyn LeaseStore>, WorkerError> {
    let mutation = match &cfg.mutation {
        Some(name) => allowed(Some(Mutation::parse(name)?))?,
        None => None,
    };
    match mutation {
        #[cfg(feature = "mutations")]
        Some(Mutation::TokenReset) => Ok(Arc::new(planted::TokenReset::new(
            store,
            lossy_counter_file(&cfg.run_dir),
        ))),
        #[cfg(feature = "mutations")]
        Some(Mutation::RenewSkip) => Ok(Arc::new(planted::RenewSkip::new(store))),
        #[cfg(feature = "mutations")]
        Some(Mutation::EarlyExpiry) => Ok(Arc::new(planted::EarlyExpiry::new(store))),
        _ => Ok(store),
    }
}

/// The file holding the lossy counter of [`Mutation::TokenReset`]; the coordinator removes it
/// when it restarts the server, as a server that keeps its counter in memory would lose it.
pub fn lossy_counter_file(run_dir: &std::path::Path) -> std::path::PathBuf {
    run_dir.join("token-counter")
}

#[cfg(feature = "mutations")]
pub(crate) mod planted;
#[cfg(feature = "mutations")]
pub mod planted_fence;

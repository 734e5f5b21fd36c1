//! No server: `Locker` over the in-memory reference store, against the store alone. What the
//! client side of `Locker` costs per acquire + release (span, metrics, watchdog task, guard).

use fencelock_core::{LeaseStore, LockName, Locker, MemoryLeaseStore};

use super::{PERMIT_ROW, TTL, locker_cycle, permit_cycle, run_id, unexpectedly_held};
use crate::cycle::Role::Reference;
use crate::cycle::{Role, Variant, cycle};

/// `Locker` vs the bare store, both in memory.
pub fn variants() -> Vec<Variant> {
    let store = MemoryLeaseStore::new();
    let prefix = format!("bench/{}", run_id());
    let locker = Locker::new(store.clone());
    let bare = {
        let prefix = format!("{prefix}/s");
        cycle(move |i| {
            let store = store.clone();
            let name = LockName::new(format!("{prefix}/{i}"));
            async move {
                let name = name?;
                let lease = store
                    .try_acquire(&name, TTL)
                    .await?
                    .ok_or_else(|| unexpectedly_held("try_acquire"))?;
                store.release(&lease).await?;
                Ok(())
            }
        })
    };
    vec![
        Variant::new(
            "`Locker` acquire + release over `MemoryLeaseStore`",
            Role::Ours,
            locker_cycle(&locker, format!("{prefix}/l")),
        ),
        Variant::new(
            "`MemoryLeaseStore` try_acquire + release alone",
            Role::OursStore,
            bare,
        ),
        Variant::new(
            PERMIT_ROW.replace("fencelock ", "") + " over `MemoryLeaseStore`",
            Reference,
            permit_cycle(&locker, format!("{prefix}/p")),
        ),
    ]
}

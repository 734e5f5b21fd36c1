//! Listing held locks: one range read of every key under `<prefix><name prefix>`, grouped by
//! lock name, each name's owner (its oldest key) with its value as the label.
//!
//! A lock's keys are `<prefix>NAME/<lease id in hex>` (see [`crate::keys`]): the name is
//! everything before the last `/`, so a name prefix is a plain byte prefix of the keys, and no
//! character in it means anything to etcd. Keys sort by key, not by name (`a!/…` before `a/…`
//! while `a` < `a!`), so the range is read whole and sorted by name here: a page costs one range
//! read of every key under the prefix (holders and waiters, values included), plus one lease
//! lookup per listed lock for its remaining TTL.

use etcd_client::{GetOptions, KeyValue, SortOrder, SortTarget};
use fencelock_core::{Error, HeldLock, ListQuery, Listing, LockName, Operation};
use std::collections::BTreeMap;

use crate::EtcdLeaseStore;
use crate::admin::owner_info;
use crate::classify::classify;
use crate::queue_snapshot::QueuedKey;

/// The lock name of `key` under `key_prefix`, if `key` is a holder's or waiter's key.
fn name_of(key_prefix: &str, key: &[u8]) -> Option<LockName> {
    let rest = key.strip_prefix(key_prefix.as_bytes())?;
    let slash = rest.iter().rposition(|&b| b == b'/')?;
    let name = LockName::new(std::str::from_utf8(&rest[..slash]).ok()?).ok()?;
    crate::keys::LockKeys::new(key_prefix, &name)
        .is_member(key)
        .then_some(name)
}

/// [`fencelock_core::LeaseStore::list`].
pub(crate) async fn list(store: &EtcdLeaseStore, query: &ListQuery) -> Result<Listing, Error> {
    let op = Operation::List;
    let start = format!("{}{}", store.key_prefix(), query.prefix_str()).into_bytes();
    let resp = store
        .rpc
        .call(|mut c| {
            let start = start.clone();
            let options = GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Create, SortOrder::Ascend);
            async move { c.get(start, Some(options)).await }
        })
        .await
        .map_err(|e| classify(op, e))?;
    // Oldest key first, so the first key seen of a name is its owner.
    let mut owners: BTreeMap<LockName, &KeyValue> = BTreeMap::new();
    for kv in resp.kvs() {
        let Some(name) = name_of(store.key_prefix(), kv.key()) else {
            continue;
        };
        if query.admits(name.as_str()) {
            owners.entry(name).or_insert(kv);
        }
    }
    let page: Vec<(LockName, &KeyValue)> = owners.into_iter().take(query.limit() + 1).collect();
    let infos = page.iter().map(|(_, kv)| {
        let owner = QueuedKey {
            key: kv.key().to_vec(),
            create_revision: kv.create_revision(),
            lease: kv.lease(),
        };
        async move { owner_info(store, &owner, Some(kv.value()), op).await }
    });
    let infos = futures::future::try_join_all(infos).await?;
    Ok(query.page(
        page.into_iter()
            .zip(infos)
            .map(|((name, _), info)| HeldLock::new(name, info)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_everything_before_the_last_slash() {
        let name = |k: &str| name_of("fl/", k.as_bytes()).map(|n| n.to_string());
        assert_eq!(name("fl/a/1f"), Some("a".into()));
        assert_eq!(name("fl/a/b/1f"), Some("a/b".into()));
        assert_eq!(name("fl/x*?[%_{\\//694d"), Some("x*?[%_{\\/".into()));
        assert_eq!(name("fl/a/not-hex"), None);
        assert_eq!(name("fl/a/"), None);
        assert_eq!(name("other/a/1f"), None);
    }
}

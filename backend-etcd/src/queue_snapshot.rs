//! A lock's queue as read at one revision: the keys directly below `<prefix>NAME/` (see
//! [`crate::keys`]), oldest first. The owner is the oldest; each waiter watches the one right
//! before it.

use etcd_client::{GetOptions, KeyValue, SortOrder, SortTarget};

use crate::keys::LockKeys;

/// A read of a whole queue: keys only, oldest first.
pub(crate) fn queue_range() -> GetOptions {
    GetOptions::new()
        .with_prefix()
        .with_keys_only()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
}

/// One key in a queue: a holder's or a waiter's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct QueuedKey {
    pub(crate) key: Vec<u8>,
    pub(crate) create_revision: i64,
    pub(crate) lease: i64,
}

/// A lock's queue as read at one revision: members in create-revision order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct QueueSnapshot {
    members: Vec<QueuedKey>,
}

impl QueueSnapshot {
    /// The members among `kvs` (any order), sorted by create revision.
    pub(crate) fn from_kvs(keys: &LockKeys, kvs: &[KeyValue]) -> Self {
        let mut members: Vec<QueuedKey> = kvs
            .iter()
            .filter(|kv| keys.is_member(kv.key()))
            .map(|kv| QueuedKey {
                key: kv.key().to_vec(),
                create_revision: kv.create_revision(),
                lease: kv.lease(),
            })
            .collect();
        members.sort_by_key(|m| m.create_revision);
        Self { members }
    }

    /// The owner: the member with the lowest create revision.
    pub(crate) fn owner(&self) -> Option<&QueuedKey> {
        self.members.first()
    }

    /// Whether the member created at `revision` is still queued.
    pub(crate) fn contains(&self, revision: i64) -> bool {
        self.members.iter().any(|m| m.create_revision == revision)
    }

    /// The member right before the one created at `revision`: the one to wait for.
    pub(crate) fn predecessor(&self, revision: i64) -> Option<&QueuedKey> {
        self.members
            .iter()
            .rev()
            .find(|m| m.create_revision < revision)
    }
}

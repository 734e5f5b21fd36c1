//! Semaphores: the keys of a semaphore's holders and waiters, the rule that grants a permit,
//! and the one-shot acquire, inspect, renew and release of a permit.
//!
//! # Layout
//! Every contender for a permit of `NAME` owns the key
//! `<prefix>\x1fsemaphores/NAME/<lease id in hex>` ([`LockKeys::semaphore`]), attached to its
//! own etcd lease, like a lock's queue but in a namespace no lock key can reach (see
//! [`crate::keys`]). Its value is `queued <limit>[ <label>]` while it waits and
//! `held <limit>[ <label>]` once granted ([`permit_value`]), so every client sees the limit
//! the others asked with, and `etcdctl get` shows who holds.
//!
//! # Who may hold
//! A key may be granted while it is among the first `limit` keys by create revision. New keys
//! always get a higher create revision than every key alive, so the keys ahead of a key can
//! only go away: once among the first `limit`, a key stays so for as long as it exists. A
//! contender therefore decides from one read of the queue, and its grant (below) only has to
//! check that its own key is still the same key.
//!
//! # The token rule
//! A permit's token is **the revision of the write that granted it**: the key's mod revision
//! after its `held` put, never its create revision. Create revisions do not follow grant order:
//! with a limit of 2, A and B hold, C queues (create revision 7); A and B leave at once; D
//! arrives (8), finds one key ahead of it and is granted at once, while C has not yet read the
//! queue again. C is then granted after D: with create revisions as tokens, C's token 7 would
//! come after D's 8, and a fence (or the `Locker`'s regression check) that saw 8 would refuse
//! 7. Here the grant is a txn that, iff C's key still exists with its create revision (and the
//! head of the queue it read is still there), puts C's key again with `held`: its revision is
//! above every revision etcd committed before, so above every token granted before C learned
//! of its grant. Tokens rise in grant order, and never repeat. The first permit of an empty
//! semaphore is put `held` directly by the txn that creates its key ([`claim`]), which is its
//! grant, so its token is also its grant's revision.
//!
//! # One limit
//! A contender asking with limit `L` refuses ([`limit_mismatch`]) a queue in which a `held`
//! key or the head (the oldest key) says another limit, and its grant txn compares the head's
//! create revision too. Of two permits alive at once, granted with limits `L1` and `L2`, the
//! one granted second either read the first as `held` (and refused), or read the queue while
//! the same head was alive for both reads (it was alive at each grant and at each read in
//! between): so `L1 = L2`, and at most `L` permits hold at once. A key whose value is not a
//! permit's is a `Backend` error: fail closed rather than guess its limit.

use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, GetOptions, KeyValue, PutOptions, SortOrder, SortTarget, Txn, TxnOp,
    TxnOpResponse, TxnResponse,
};
use fencelock_core::backend::{
    limit_mismatch, lost_or_superseded, permit, renewed_lease, stored_label,
};
use fencelock_core::{
    Error, Lease, LeaseInfo, LockName, Operation, OwnerLabel, PermitLimit, Permits,
};
use tokio::time::Instant;

use crate::EtcdLeaseStore;
use crate::acquire::{Enqueued, enqueue_with, grant_of, lease_for, vanished};
use crate::classify::{STORE, classify, is_lease_gone};
use crate::contender::Contender;
use crate::keys::{LockKeys, token_of};
use crate::renew_release::{ids_of, keep_alive};

/// How often a one-shot acquire re-reads a queue whose head changed under its grant txn before
/// it answers "no permit" (each retry means another contender's key went away).
const GRANT_ATTEMPTS: usize = 16;

/// Whether a permit key waits or holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Queued,
    Held,
}

impl State {
    fn word(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Held => "held",
        }
    }
}

/// The value of a permit key: `<state> <limit>`, then ` <label>` with one.
pub(crate) fn permit_value(
    state: State,
    limit: PermitLimit,
    label: Option<&OwnerLabel>,
) -> Vec<u8> {
    let mut value = format!("{} {limit}", state.word());
    if let Some(label) = label {
        value.push(' ');
        value.push_str(label.as_str());
    }
    value.into_bytes()
}

/// A permit key's value, read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) state: State,
    pub(crate) limit: PermitLimit,
    pub(crate) label: Option<OwnerLabel>,
}

/// The inverse of [`permit_value`]; `None` for anything else.
pub(crate) fn parse_value(value: &[u8]) -> Option<Stored> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.splitn(3, ' ');
    let state = match parts.next()? {
        "queued" => State::Queued,
        "held" => State::Held,
        _ => return None,
    };
    let limit = parts.next()?;
    if !limit.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let limit = PermitLimit::new(limit.parse().ok()?).ok()?;
    let label = parts.next().and_then(stored_label);
    Some(Stored {
        state,
        limit,
        label,
    })
}

/// One key of a semaphore's queue, with its value.
#[derive(Clone, Debug)]
pub(crate) struct PermitKey {
    pub(crate) key: Vec<u8>,
    pub(crate) create_revision: i64,
    pub(crate) mod_revision: i64,
    pub(crate) lease: i64,
    pub(crate) stored: Option<Stored>,
}

/// A read of a whole semaphore queue, values included, oldest first.
pub(crate) fn permit_range() -> GetOptions {
    GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
}

/// A semaphore's queue as read at one revision: members in create-revision order.
#[derive(Clone, Debug, Default)]
pub(crate) struct PermitQueue {
    members: Vec<PermitKey>,
}

/// What a contender may do, by one read of the queue.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Among the first `limit`: grant, if the head (key, create revision) is still there.
    Eligible { head: Option<(Vec<u8>, i64)> },
    /// `ahead` keys are ahead and `limit` of them, less one, may stay: wait for `leave` of
    /// `ahead` to go.
    Full { ahead: Vec<Vec<u8>>, leave: usize },
    /// The contender's own key is gone.
    KeyLost,
}

impl PermitQueue {
    /// The members among `kvs` (any order), sorted by create revision.
    pub(crate) fn from_kvs(keys: &LockKeys, kvs: &[KeyValue]) -> Self {
        let mut members: Vec<PermitKey> = kvs
            .iter()
            .filter(|kv| keys.is_member(kv.key()))
            .map(|kv| PermitKey {
                key: kv.key().to_vec(),
                create_revision: kv.create_revision(),
                mod_revision: kv.mod_revision(),
                lease: kv.lease(),
                stored: parse_value(kv.value()),
            })
            .collect();
        members.sort_by_key(|m| m.create_revision);
        Self { members }
    }

    /// The granted permits: keys that say `held`.
    pub(crate) fn holders(&self) -> impl Iterator<Item = (&PermitKey, &Stored)> {
        self.members.iter().filter_map(|m| match &m.stored {
            Some(stored) if stored.state == State::Held => Some((m, stored)),
            _ => None,
        })
    }

    /// What a contender asking `name` with `limit` may do; its key, if queued, was created at
    /// `mine`. `InvalidInput` when a holder or the head says another limit (see the module
    /// docs), `Backend` for a key that is not a permit's.
    pub(crate) fn verdict(
        &self,
        name: &LockName,
        limit: PermitLimit,
        mine: Option<i64>,
    ) -> Result<Verdict, Error> {
        if let Some(bad) = self.members.iter().find(|m| m.stored.is_none()) {
            return Err(Error::backend(
                STORE,
                Operation::Acquire,
                format!(
                    "the key {:?} in the queue of semaphore `{name}` is not a fencelock permit; \
                     remove it",
                    String::from_utf8_lossy(&bad.key)
                ),
            ));
        }
        let held = self.holders().map(|(_, s)| s.limit);
        let head = self
            .members
            .first()
            .and_then(|m| m.stored.as_ref())
            .map(|s| s.limit);
        if let Some(other) = held.chain(head).find(|held| *held != limit) {
            return Err(limit_mismatch(name, other, limit));
        }
        let ahead: Vec<&PermitKey> = match mine {
            Some(mine) => {
                if !self.members.iter().any(|m| m.create_revision == mine) {
                    return Ok(Verdict::KeyLost);
                }
                self.members
                    .iter()
                    .take_while(|m| m.create_revision < mine)
                    .collect()
            }
            None => self.members.iter().collect(),
        };
        let places = limit.get() as usize;
        if ahead.len() < places {
            let head = self
                .members
                .first()
                .filter(|m| Some(m.create_revision) != mine)
                .map(|m| (m.key.clone(), m.create_revision));
            return Ok(Verdict::Eligible { head });
        }
        Ok(Verdict::Full {
            leave: ahead.len() + 1 - places,
            ahead: ahead.into_iter().map(|m| m.key.clone()).collect(),
        })
    }
}

fn range_of(resp: &TxnResponse, at: usize, what: &str) -> Result<Vec<KeyValue>, Error> {
    match resp.op_responses().get(at) {
        Some(TxnOpResponse::Get(get)) => Ok(get.kvs().to_vec()),
        _ => Err(Error::backend(
            STORE,
            Operation::Acquire,
            format!("etcd answered the {what} txn without its read"),
        )),
    }
}

/// How a claim on an empty semaphore went.
enum Claim {
    /// The semaphore was empty; our key is in it now, `held` since this revision.
    Held(i64),
    /// Someone holds or waits: nothing was written. The queue at that revision.
    Taken(PermitQueue),
    /// etcd no longer knows the lease: nothing was written.
    LeaseGone,
}

/// Puts our key `held` iff nothing at all is under the semaphore's prefix, else reads the
/// queue: one txn, the only write of an uncontended first permit.
async fn claim(
    store: &EtcdLeaseStore,
    keys: &LockKeys,
    lease_id: i64,
    value: Vec<u8>,
) -> Result<Claim, Error> {
    let txn = Txn::new()
        .when([Compare::create_revision(keys.prefix(), CompareOp::Equal, 0).with_prefix()])
        .and_then([TxnOp::put(
            keys.holder_key(lease_id),
            value,
            Some(PutOptions::new().with_lease(lease_id)),
        )])
        .or_else([TxnOp::get(keys.prefix(), Some(permit_range()))]);
    let resp = match store.rpc.txn(txn).await {
        Ok(resp) => resp,
        Err(e) if is_lease_gone(&e) => return Ok(Claim::LeaseGone),
        Err(e) => return Err(classify(Operation::Acquire, e)),
    };
    let at = resp.header().map_or(0, |h| h.revision());
    if resp.succeeded() {
        return Ok(Claim::Held(at));
    }
    let kvs = range_of(&resp, 0, "permit claim")?;
    Ok(Claim::Taken(PermitQueue::from_kvs(keys, &kvs)))
}

/// Puts our key `queued` (if not there yet) and reads the queue, in one txn. `None` when etcd
/// no longer knows the lease: nothing was written.
pub(crate) async fn enqueue(
    store: &EtcdLeaseStore,
    keys: &LockKeys,
    lease_id: i64,
    limit: PermitLimit,
    label: Option<&OwnerLabel>,
) -> Result<Option<Enqueued<PermitQueue>>, Error> {
    let value = permit_value(State::Queued, limit, label);
    enqueue_with(store, keys, lease_id, value, permit_range(), |kvs| {
        PermitQueue::from_kvs(keys, kvs)
    })
    .await
}

/// How a grant txn went.
pub(crate) enum Grant {
    /// Our key is `held` since this revision: the token.
    Held(i64),
    /// Our key or the head changed: the queue as it is now, and the revision it was read at.
    Changed(PermitQueue, i64),
}

/// The grant: iff our key still exists with create revision `mine` and the head we read is
/// still there, puts our key again as `held` (same lease). Its revision is the token.
pub(crate) async fn grant(
    store: &EtcdLeaseStore,
    keys: &LockKeys,
    lease_id: i64,
    mine: i64,
    head: Option<(Vec<u8>, i64)>,
    value: Vec<u8>,
) -> Result<Grant, Error> {
    let key = keys.holder_key(lease_id);
    let mut when = vec![Compare::create_revision(
        key.clone(),
        CompareOp::Equal,
        mine,
    )];
    if let Some((head, revision)) = head {
        when.push(Compare::create_revision(head, CompareOp::Equal, revision));
    }
    let txn = Txn::new()
        .when(when)
        .and_then([TxnOp::put(
            key,
            value,
            Some(PutOptions::new().with_lease(lease_id)),
        )])
        .or_else([TxnOp::get(keys.prefix(), Some(permit_range()))]);
    let resp = store
        .rpc
        .txn(txn)
        .await
        .map_err(|e| classify(Operation::Acquire, e))?;
    let at = resp.header().map_or(0, |h| h.revision());
    if resp.succeeded() {
        return Ok(Grant::Held(at));
    }
    let kvs = range_of(&resp, 0, "permit grant")?;
    Ok(Grant::Changed(PermitQueue::from_kvs(keys, &kvs), at))
}

/// The permit granted at revision `revision` (its token) on `contender`'s lease.
pub(crate) fn permit_of(
    name: &LockName,
    limit: PermitLimit,
    label: Option<&OwnerLabel>,
    contender: Contender,
    revision: i64,
) -> Result<Lease, Error> {
    grant_of(name, revision, contender, label).map(|lease| permit(lease, limit))
}

/// [`fencelock_core::LeaseStore::try_acquire_permit`].
pub(crate) async fn try_acquire_permit(
    store: &EtcdLeaseStore,
    name: &LockName,
    limit: PermitLimit,
    ttl: Duration,
    label: Option<&OwnerLabel>,
) -> Result<Option<Lease>, Error> {
    let ttl = store.ttl_limits_checked(ttl)?;
    let keys = store.permit_keys(name);
    let mut spares = true;
    loop {
        let (granted, spare) = lease_for(store, ttl, spares).await?;
        // Every way out but a grant or a read that wrote nothing revokes the lease.
        let contender = Contender::new(store, granted);
        let value = permit_value(State::Held, limit, label);
        let taken = match claim(store, &keys, granted.id, value).await? {
            Claim::Held(revision) => {
                return permit_of(name, limit, label, contender, revision).map(Some);
            }
            Claim::Taken(queue) => queue,
            Claim::LeaseGone => {
                contender.forget();
                if spare {
                    spares = false;
                    continue;
                }
                return Err(vanished(granted.id));
            }
        };
        // Refused or full by this read: nothing was written, keep the lease for later.
        match taken.verdict(name, limit, None) {
            Ok(Verdict::Eligible { .. }) => {}
            other => {
                contender.forget();
                store.spares.restore(granted);
                return other.map(|_| None);
            }
        }
        let Some(queued) = enqueue(store, &keys, granted.id, limit, label).await? else {
            contender.forget();
            if spare {
                spares = false;
                continue;
            }
            return Err(vanished(granted.id));
        };
        let (mine, mut queue) = (queued.revision, queued.queue);
        for _ in 0..GRANT_ATTEMPTS {
            let head = match queue.verdict(name, limit, Some(mine)) {
                Ok(Verdict::Eligible { head }) => head,
                Ok(Verdict::Full { .. } | Verdict::KeyLost) => break,
                Err(e) => {
                    contender.leave().await;
                    return Err(e);
                }
            };
            let value = permit_value(State::Held, limit, label);
            match grant(store, &keys, granted.id, mine, head, value).await? {
                Grant::Held(revision) => {
                    return permit_of(name, limit, label, contender, revision).map(Some);
                }
                Grant::Changed(now, _) => queue = now,
            }
        }
        contender.leave().await;
        return Ok(None);
    }
}

/// [`fencelock_core::LeaseStore::inspect_permits`]: one read of the queue, then the remaining
/// TTL of each holder's lease.
pub(crate) async fn inspect_permits(
    store: &EtcdLeaseStore,
    name: &LockName,
) -> Result<Permits, Error> {
    let op = Operation::Inspect;
    let queue = read(store, &store.permit_keys(name), op).await?.0;
    let limit = queue.holders().map(|(_, s)| s.limit).next();
    let infos = queue.holders().map(|(m, s)| async move {
        let token = token_of(m.mod_revision, op)?;
        crate::admin::lease_info(store, token, m.lease, s.label.clone(), op).await
    });
    let holders: Vec<LeaseInfo> = futures::future::try_join_all(infos).await?;
    Ok(Permits::new(limit, holders))
}

/// The queue of `keys` and the revision it was read at.
pub(crate) async fn read(
    store: &EtcdLeaseStore,
    keys: &LockKeys,
    op: Operation,
) -> Result<(PermitQueue, i64), Error> {
    let resp = store
        .rpc
        .call(|mut c| {
            let prefix = keys.prefix().to_vec();
            async move { c.get(prefix, Some(permit_range())).await }
        })
        .await
        .map_err(|e| classify(op, e))?;
    let revision = resp.header().map_or(0, |h| h.revision());
    Ok((PermitQueue::from_kvs(keys, resp.kvs()), revision))
}

/// Whether `kv` (the permit's key as read after a confirmed keepalive, if it exists) is still
/// the grant `lease` stands for: its mod revision is the token, and it says `held`.
pub(crate) fn renewed_permit(
    kv: Option<&KeyValue>,
    lease: &Lease,
    revision: i64,
    sent_at: Instant,
) -> Result<Lease, Error> {
    let held = kv.is_some_and(|kv| {
        kv.mod_revision() == revision
            && parse_value(kv.value()).is_some_and(|s| s.state == State::Held)
    });
    if !held {
        return Err(lost_or_superseded(lease, None));
    }
    Ok(renewed_lease(lease, lease.ttl(), sent_at))
}

/// [`fencelock_core::LeaseStore::renew`] of a permit: one keepalive of its lease, then a read
/// of its key (see [`renewed_permit`]).
pub(crate) async fn renew(
    store: &EtcdLeaseStore,
    lease: &Lease,
    ttl: Duration,
) -> Result<Lease, Error> {
    let (lease_id, revision, sent_at) = keep_alive(store, lease, ttl).await?;
    let key = store.permit_keys(lease.name()).holder_key(lease_id);
    let resp = store
        .rpc
        .call(|mut c| {
            let key = key.clone();
            async move { c.get(key, None).await }
        })
        .await
        .map_err(|e| classify(Operation::Renew, e))?;
    renewed_permit(resp.kvs().first(), lease, revision, sent_at)
}

/// [`fencelock_core::LeaseStore::release`] of a permit: deletes its key iff its mod revision
/// is still the token (one txn), then keeps the bare lease as a spare, as a lock's release
/// does. Waiters watch that delete.
pub(crate) async fn release(store: &EtcdLeaseStore, lease: &Lease) -> Result<(), Error> {
    let (lease_id, revision) = ids_of(lease)?;
    let key = store.permit_keys(lease.name()).holder_key(lease_id);
    let txn = Txn::new()
        .when([Compare::mod_revision(
            key.clone(),
            CompareOp::Equal,
            revision,
        )])
        .and_then([TxnOp::delete(key, None)]);
    let resp = store
        .rpc
        .txn(txn)
        .await
        .map_err(|e| classify(Operation::Release, e))?;
    if !resp.succeeded() {
        return Err(lost_or_superseded(lease, None));
    }
    store.spares.put(lease, lease_id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(n: u32) -> PermitLimit {
        PermitLimit::new(n).unwrap()
    }

    #[test]
    fn values_round_trip() {
        let label = OwnerLabel::new("host:42 exporter ✓").unwrap();
        for (state, l, label) in [
            (State::Queued, limit(3), None),
            (State::Held, limit(10_000), Some(&label)),
        ] {
            let value = permit_value(state, l, label);
            assert_eq!(
                parse_value(&value),
                Some(Stored {
                    state,
                    limit: l,
                    label: label.cloned()
                })
            );
        }
        assert_eq!(permit_value(State::Held, limit(2), None), b"held 2");
        for bad in [
            &b""[..],
            b"held",
            b"held 0",
            b"held 10001",
            b"held +3",
            b"held -3",
            b"granted 3",
            b"\xff",
        ] {
            assert_eq!(parse_value(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}

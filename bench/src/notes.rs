//! The prose of BENCHMARKS.md: what the numbers mean, and why a missed target was missed.

use crate::run::Report;

/// How the servers were set up.
pub fn setup() -> String {
    "Servers (started by the harness in `conformance-tests/src/harness/`): redis-server without \
     persistence; PostgreSQL with `fsync=off` and `full_page_writes=off` (the harness default; \
     `synchronous_commit` stays on and the store's grants are \"durable\", so each grant waits for \
     its WAL write, not for a disk flush); a single-member etcd (which does fsync its WAL)."
        .to_owned()
}

/// What the load says about the run.
pub fn load(before: &str, after: &str, nproc: usize) -> String {
    format!(
        "The load average was {before} at the start and {after} at the end on {nproc} cores. The \
         client, the server and (for the peers) the Python interpreter share those cores, so \
         everything runs slower than on an idle machine; ours and the floors are interleaved so \
         that the ratios stay comparable."
    )
}

fn p50(report: &Report, backend: &str, needle: &str) -> f64 {
    report
        .backends
        .iter()
        .find(|b| b.key == backend)
        .and_then(|b| b.row_like(needle))
        .map_or(f64::NAN, |r| r.latency.p50_us)
}

fn overhead(report: &Report, needle: &str) -> f64 {
    report
        .client_overhead
        .iter()
        .find(|r| r.label.contains(needle))
        .map_or(f64::NAN, |r| r.latency.p50_us)
}

const LOCKER_TASK: &str = "Every guard spawns its own watchdog task; `LockGuard::release` stops \
    it and sends the release at once, without waiting for the task to end (before that change the \
    join cost about 50 µs per cycle on the multi-thread runtime)";

/// Why a missed target was missed and what would close it.
pub fn missed(key: &str, report: &Report) -> String {
    let multi = overhead(
        report,
        "`Locker` acquire + release over `MemoryLeaseStore` — multi",
    );
    let single = overhead(
        report,
        "`Locker` acquire + release over `MemoryLeaseStore` — current",
    );
    let locker = format!(
        "{LOCKER_TASK}: `Locker` over the in-memory store now costs {multi:.0} µs per acquire + \
         release on this runtime and {single:.1} µs on a current-thread runtime (section 1), so \
         the client adds little; the rest of the gap is the server running scripts instead of \
         plain commands."
    );
    if key == "redis-ratio" || key.starts_with("peer-uncontended-rslock") {
        let (raw, lua, store, ours) = (
            p50(report, "redis", "raw `SET NX PX`"),
            p50(report, "redis", "Lua scripts by hand"),
            p50(report, "redis", "store try_acquire"),
            p50(report, "redis", "`Locker` acquire + release"),
        );
        return format!(
            "The floor is two plain commands; ours is two Lua scripts that mint a fencing token (the \
             acquire script makes five `redis.call`s: PTTL, TIME, GET, SET, SET; release makes three: \
             GET, DEL, PUBLISH), then the store's client work, then `Locker`. p50 by layer: raw \
             {raw:.0} µs → the same scripts by hand {lua:.0} µs → store {store:.0} µs → `Locker` \
             {ours:.0} µs. On loopback a round trip is only tens of µs, so these fixed costs weigh \
             heavily. rslock is the floor plus a compare-and-delete script, with no token and no \
             watchdog. {locker} The scripts by hand set the floor any token-minting design can \
             reach on Redis: minting a token that survives a restart needs TIME and the counter \
             in the same atomic step as the SET, which only a script (or a Redis function, which \
             costs the same to invoke) gives. The calls inside the scripts are cheap next to \
             invoking a script at all, so trimming them would not close the gap; meeting 1.15× \
             would mean giving up atomic token minting, which this project will not do."
        );
    }
    match key {
        "etcd-ratio" | "etcd-builtin" => {
            let (raw, builtin, own) = (
                p50(report, "etcd", "raw: put-if-absent"),
                p50(report, "etcd", "(one session lease)"),
                p50(report, "etcd", "lease per lock"),
            );
            format!(
                "Ours grants an etcd lease per lock (its own TTL and keepalive), so acquire is two \
                 round trips (lease grant, then the queue txn) and release is one txn plus a \
                 background revoke, which also loads the server: three Raft writes in the foreground \
                 against two for the floor ({raw:.0} µs) and for the built-in lock ({builtin:.0} µs), \
                 both of which reuse one pre-granted session lease. The built-in lock with a lease \
                 per lock, like ours, takes {own:.0} µs. What would close it: a session lease per \
                 store and TTL, reused by every lock, as Go's `concurrency.Session` does. Acquire \
                 would then be one txn and release one txn, at the floor. The price is that one \
                 lost session loses every lock of that store at once. That is a change to \
                 fencelock-etcd (off limits to this work), not done here."
            )
        }
        "redis-handoff" | "postgres-handoff" | "etcd-handoff" => "A release is announced on \
            the lock's own channel (Redis `PUBLISH`, PostgreSQL `NOTIFY`) and the store wakes one \
            waiter, the longest waiting (core `WakeupHub`, FIFO), so a hand-off is the release, \
            the notification, and one acquire: about 2.5 round trips at best. The waiter's acquire \
            is the token-minting script, which costs more than the raw write the round trip is \
            measured with, and the client, the server and 16 waiters share two cores. What would \
            close it: a hand-off that grants in the release itself (the releasing script sets the \
            lock for the next queued holder), which needs a server-side queue, as etcd has."
            .to_owned(),
        "overlaps" => "A grant while another waiter still held the lock is a safety bug; see the \
            run's log."
            .to_owned(),
        k if k.ends_with("-lost") => "Leases were lost while held: the watchdogs could not keep \
            up (see failed renew calls). Batching renewals (below) is the fix."
            .to_owned(),
        k if k.starts_with("peer-") => format!(
            "Measured on the same server in the same rounds; see sections 1 and 3 for where ours \
             spends its time. {locker}"
        ),
        _ => format!("(no explanation recorded for `{key}`)"),
    }
}

/// Under the uncontended table of `backend`.
pub fn uncontended(backend: &str) -> String {
    let after =
        "The last two rows run ours and the floor again, interleaved, after the hand-off run";
    match backend {
        "redis" => format!(
            "{after}, when this store's subscriber connection is subscribed. There is one release \
             channel per key prefix, so a subscribed client receives the `PUBLISH` of every \
             release of every lock under the prefix, from every client, for as long as it lives: \
             O(releases × subscribed clients) messages. A channel per waited-on name (subscribed \
             while someone waits) would avoid that."
        ),
        "postgres" => format!(
            "{after}, on the pooled store whose `LISTEN` connection is open; every release \
             `NOTIFY`s one channel per table, which every listening client receives. `pg_try_advisory_lock` \
             is faster but gives no token and holds a session (it cannot work behind a \
             transaction-mode pooler)."
        ),
        _ => format!("{after} (etcd waiters watch one key each; nothing is broadcast)."),
    }
}

/// Under the in-memory table.
pub fn client_overhead() -> String {
    format!(
        "{LOCKER_TASK}. The gap between the two runtimes is that cost. The benchmark (like most \
         services) runs on the multi-thread runtime, so it is part of every \"ours\" row below."
    )
}

/// Under the peers table.
pub fn peers() -> String {
    "None of the peers mints fencing tokens or renews in the background: rslock and redis-py's \
     `Lock` are `SET NX PX` plus a compare-and-delete script; python-redis-lock adds a signal list \
     for wake-ups. The Python peers carry the interpreter's overhead. Hand-off: redis-py polls \
     every 100 ms (its default `sleep`); rslock retries after a random 0–200 ms delay; \
     python-redis-lock blocks on `BLPOP` of a signal list that release pushes to (push, one \
     waiter per signal); ours wakes waiters over pub/sub."
        .to_owned()
}

/// Under the hand-off table.
pub fn handoff() -> String {
    "Target: p50 within 3 round trips of the server's raw round trip. \"Write RTT\" is one raw \
     write on the same connection (Redis `SET`, a one-row PostgreSQL `UPDATE`, an etcd put); a \
     hand-off needs at least one write (the release) and the notification of it."
        .to_owned()
}

/// Under the throughput table.
pub fn throughput() -> String {
    "No target was set for throughput; the ratio is against the raw floor under the same \
     concurrency. With 64 tasks the client and the server share two cores, so per-operation CPU \
     decides: on Redis, ours runs two Lua scripts instead of two plain commands on the server and \
     spawns a watchdog task per acquire on the client (section 1). On etcd, ours makes \
     four Raft writes per cycle (lease grant, queue txn, release txn, background revoke) against \
     two. PostgreSQL is bound by the same statements either way."
        .to_owned()
}

/// Under the renewal table.
pub fn renewal() -> String {
    "Each of the 10,000 guards has its own watchdog task that renews its lease alone, every \
     TTL/3: one round trip per renewal on Redis (`EVALSHA`) and PostgreSQL (an `UPDATE` that waits \
     for its WAL write), two on etcd (a keepalive on a newly opened `LeaseKeepAlive` stream, then \
     a range read that checks the key). Nothing is batched or pipelined beyond what the driver's \
     multiplexing gives."
        .to_owned()
}

/// What batching renewals would take.
pub fn batching() -> String {
    "## Batching renewals: what it would take\n\n\
     The issue asks to batch or pipeline renewals where the backend allows. That is a core and \
     backend change, and this work was told not to change the core, so nothing here batches. \
     What it would take:\n\n\
     - **core**: replace the watchdog task per guard with one renewal scheduler per `Locker`. It \
       would keep leases in a timer queue, and each tick would collect every lease due within a \
       small window and call a new `LeaseStore::renew_many(&[Lease], ttl) -> Vec<Result<Lease, \
       Error>>`. The default method loops over `renew`, so every backend keeps working. Results \
       fan out per guard: only the lease that failed is reported lost, transient errors are \
       retried while that lease is locally valid, and a panic in the scheduler still fires every \
       guard's loss signal (\"never dies silently\" must hold for all leases, not one). The same \
       change removes the task spawn and join from every acquire and release (section 1).\n\
     - **Redis**: `renew_many` sends the renew `EVALSHA`s in one pipeline: one write and one \
       read for N leases, and it works across cluster slots, where one script over many keys \
       would not.\n\
     - **PostgreSQL**: one statement `UPDATE … FROM unnest($names, $holders, $tokens) … RETURNING \
       name, token`: one round trip and one WAL write for N leases, under the same durability.\n\
     - **etcd**: keep one long-lived `LeaseKeepAlive` stream per store instead of opening one per \
       renewal, and check ownership of N keys in one txn of N range reads. With a shared session \
       lease (see the etcd ratio note), one keepalive renews every lock of the store.\n"
        .to_owned()
}

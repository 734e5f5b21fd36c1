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
        .backend(backend)
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

const LOCKER_TASK: &str = "Guards have no task of their own: the watchdogs of each runtime share \
    one timer queue whose driver wakes only when a lease is due, so an acquire + release spawns and \
    wakes nothing, and `LockGuard::release` only flags its watchdog stopped before sending the \
    release (the task per guard this replaced cost a spawn and a wake-up per cycle: about 5 µs per \
    cycle on etcd, measured side by side while making the change)";

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
    let client = format!(
        "`Locker` over the in-memory store costs {multi:.0} µs per acquire + release on this \
         runtime and {single:.1} µs on a current-thread runtime (section 1)"
    );
    if key == "redis-ratio" || key.starts_with("peer-uncontended-rslock") {
        let (raw, lua, store, ours) = (
            p50(report, "redis", "raw `SET NX PX`"),
            p50(report, "redis", "Lua scripts by hand"),
            p50(report, "redis", "store try_acquire"),
            p50(report, "redis", "`Locker` acquire + release"),
        );
        let budget = 1.15 * raw - lua;
        if key != "redis-ratio" {
            return format!(
                "rslock's uncontended cycle is a plain `SET NX PX` and one compare-and-delete \
                 script, with no token and no watchdog; ours is two scripts that mint the token \
                 atomically (raw {raw:.0} µs → the same scripts by hand {lua:.0} µs → store \
                 {store:.0} µs → `Locker` {ours:.0} µs; see the Redis ratio above for each \
                 layer). Beating rslock here would need an acquire as cheap as a plain `SET`, \
                 which minting the token in the same atomic step rules out. Where the lock is \
                 contended, ours hands it over in a fraction of rslock's time (section 2)."
            );
        }
        return format!(
            "The floor is two plain commands; ours is two Lua scripts that mint a fencing token (the \
             acquire script makes five `redis.call`s: PTTL, TIME, GET, SET, SET; release makes three: \
             GET, DEL, PUBLISH), then the store's client work, then `Locker`. p50 by layer: raw \
             {raw:.0} µs → the same scripts by hand {lua:.0} µs ({script_ratio:.2}×) → store \
             {store:.0} µs → `Locker` {ours:.0} µs. The scripts alone leave {budget:.0} µs of the \
             1.15× budget for all client work; the store's (a holder id, the keys, the script \
             invocation, parsing the grant) and `Locker`'s (name check, token-regression memory, \
             guard state, the watchdog's queue entry, its tracing span and metrics) take \
             {client_work:.0} µs. {client}. \
             On the server (redis-benchmark on this machine, one connection, means of five runs): \
             a script holding nothing but the `SET` costs about 5.5 µs more than the plain \
             `SET NX PX`, and the acquire script's other four calls about 5 µs more; an acquire \
             script that checks PTTL only after a failed `SET NX` (one call fewer per grant) \
             made no measurable difference. The scripts by hand set the floor any token-minting design can \
             reach on Redis: minting a token that survives a restart needs TIME and the counter in \
             the same atomic step as the SET, which only a script (or a Redis function, which costs \
             the same to invoke) gives. Meeting 1.15× on this machine would take the client work \
             down from {client_work:.0} to {budget:.0} µs, and no single step of it costs much: \
             removing the span and metrics outright saved under 1 µs in a side-by-side run (three \
             rounds of 10,000 each, on a worker, order shuffled: `Locker` minus store 3.8 → 3.4 \
             µs). Building the requests was trimmed in this version: the keys, the holder id and \
             the grant go straight into the `EVALSHA` command as bytes, without `format!` or the \
             script invocation's copy of each argument, which took the store's request building \
             from about 1.9 to 0.4 µs per cycle (200,000 of each timed in a release build). \
             What remains is work the lock needs (a \
             random holder id, the keys, parsing the grant, the guard's state and watchdog): the \
             target stays missed, by {gap:.1} µs in this run.",
            script_ratio = lua / raw,
            gap = ours - 1.15 * raw,
            client_work = ours - lua,
        );
    }
    match key {
        "etcd-ratio" | "etcd-builtin" => {
            let (raw, txns, builtin, store, ours) = (
                p50(report, "etcd", "raw: put-if-absent"),
                p50(report, "etcd", "two txns by hand"),
                p50(report, "etcd", "(one session lease)"),
                p50(report, "etcd", "store try_acquire"),
                p50(report, "etcd", "`Locker` acquire + release"),
            );
            let per_call = (store - txns) / 2.0;
            let locker = ours - store;
            format!(
                "A released lease is kept as a spare and reused by the next acquire of the same \
                 TTL while it is younger than a tenth of its TTL (fencelock-etcd `spare.rs`), so \
                 an uncontended acquire + release is two txns: a put iff nothing is under the \
                 name (one range compare) and a delete iff the key's create revision still \
                 matches — the same two Raft writes as the floor and the built-in lock \
                 ({builtin:.0} µs). A lease is granted only when no fresh spare exists. p50 by \
                 layer: raw {raw:.0} µs → the store's two txns by hand {txns:.0} µs → store \
                 {store:.0} µs → `Locker` {ours:.0} µs. Against the built-in lock: on the wire ours \
                 costs what it does ({txns:.0} µs vs {builtin:.0} µs; the built-in \
                 `lock` is one RPC in which the server puts the key and reads the queue, `unlock` \
                 one delete), so any client work at all puts ours behind it. Ours does some: the \
                 store about {per_call:.0} µs per call (each request bounded by a timer, the txn \
                 kept for a retry while it provably was not sent, the spare pool), `Locker` \
                 {locker:.0} µs per cycle (name check, token-regression memory, guard state, the \
                 watchdog's queue entry, a tracing span and metrics). {client}; over etcd the same \
                 code runs with the caches full of the gRPC stack's data, and a CPU profile of the client does not show where the difference goes (the client's \
                 own code is under 1 % of the samples, the kernel scheduling threads most of \
                 them), so that part is not pinned down. What would close it: a wire-level \
                 advantage, and there is none to take — both designs make two Raft writes, and \
                 the release must stay a compare-revision txn (a spare lease can come back under \
                 the same name, so a plain delete by a stale copy of a released lease would delete \
                 the next holder's key) — or client work of zero, which means no time bound per \
                 request and no loss signal. This project keeps both."
            )
        }
        "etcd-handoff" => "etcd hands the lock over through its own queue: the release deletes \
            the owner key, etcd pushes that delete to the next waiter's watch on its predecessor, \
            and the waiter re-reads the queue to confirm it is now the oldest (another key may \
            have vanished meanwhile): a write, a push and a read, about 2.5 round trips, on two \
            cores shared with 16 waiters and a server that fsyncs its WAL. What would close it: \
            skipping the re-read when the watch event itself proves ownership, which it cannot \
            when older keys may still exist."
            .to_owned(),
        "redis-handoff" | "postgres-handoff" => "A release is announced on \
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
        "etcd-lost" => etcd_lost(report),
        k if k.ends_with("-lost") => "Leases were lost while held: the watchdogs could not keep \
            up (see failed renew calls and the run's log). Every lost lease was reported to its \
            guard; none was held past its deadline unnoticed."
            .to_owned(),
        k if k.starts_with("peer-") => format!(
            "Measured on the same server in the same rounds; see sections 1 and 3 for where ours \
             spends its time. {client}."
        ),
        k if k.starts_with("redis-cost-") => cost_missed(k, report),
        "redis-held-bytes" | "redis-held-cpu" => held_missed(key, report),
        _ => format!("(no explanation recorded for `{key}`)"),
    }
}

/// Why etcd lost leases while holding many: what the run shows, and what would hold them.
fn etcd_lost(report: &Report) -> String {
    let held = report.backend("etcd").map(|b| {
        (
            b.hold.leases,
            b.hold.lost,
            b.hold.renews_per_sec,
            b.hold.expected_renews_per_sec,
        )
    });
    let figures = held.map_or_else(String::new, |(leases, lost, done, expected)| {
        format!(
            "In this run the batched child lost {} of {} leases and renewed {} a second of the {} \
             its watchdogs asked for. ",
            crate::report::num(lost as f64),
            crate::report::num(leases as f64),
            crate::report::num(done),
            crate::report::num(expected),
        )
    });
    format!(
        "{figures}Every lock on etcd is an etcd lease of its own, so holding N locks is N leases \
         to keep alive: at 100,000 leases and TTL 15 s, 20,000 keepalives a second on the \
         store's keepalive stream, while the same single-member etcd (which fsyncs its WAL) \
         also grants the leases still being acquired. While preparing this section the \
         renewals kept up at 30,000 leases (none lost) and at 100,000 acquired 16 at a time \
         (none lost, but 69 % of the renewals asked for); acquiring 64 at a time, the renew \
         calls began to go unanswered within the store's 5 s bound once some 35,000–65,000 \
         leases were held, and the watchdogs reported each lease lost when its local deadline \
         passed: none was held past its deadline unnoticed, and no stale write could pass a \
         fence. What would hold 100,000 on one etcd: locks sharing one lease per session, as \
         etcd's own concurrency package does (one keepalive per TTL/3 for all of them, at the \
         price of losing them together), which this backend does not offer yet."
    )
}

/// Why a Redis held-lease target was missed: this run's figures for the batched child, then
/// where the client's memory and CPU per held lease go.
fn held_missed(key: &str, report: &Report) -> String {
    let Some(h) = report.backend("redis").map(|b| &b.hold) else {
        return "(Redis was not run)".to_owned();
    };
    let leases = crate::report::num(h.leases as f64);
    if key == "redis-held-bytes" {
        let grown = h.rss_held_kib.saturating_sub(h.rss_before_kib) as f64 / 1024.0;
        format!(
            "Holding {leases} leases grew the child's resident memory by {grown:.1} MiB, \
             {:.0} bytes per lease ({:.1}× the 512-byte budget). Per held lease the client \
             keeps the guard (32 bytes), the state it shares with its watchdog (one 256-byte \
             allocation: the lease, its schedule, the flags and one `Notify`), the watchdog's \
             32-byte timer-queue entry, the name, and the token memory's entry; the rest is the \
             allocator's overhead and the memory the acquire phase left behind in its arenas. \
             What remains to cut is the name (shared with the store's request buffers) and \
             the token memory, which a service holding many names can shrink with \
             `Locker::with_token_memory`.",
            h.bytes_per_lease(),
            h.bytes_per_lease() / 512.0,
        )
    } else {
        let per_call = if h.renew_calls_per_sec > 0.0 {
            h.renews_per_sec / h.renew_calls_per_sec
        } else {
            0.0
        };
        // The client CPU per renewal that 5 % of a core allows at this renewal rate.
        let budget_us = 0.05 * 1e6 / h.renews_per_sec.max(f64::MIN_POSITIVE);
        format!(
            "Renewing {leases} leases every TTL/3 is {} renewals/s; the child spent {:.1} % of \
             a core on them, {:.1} µs of client CPU per renewal, with {per_call:.0} renewals in \
             each pipeline. 5 % of a core at this rate allows {budget_us:.1} µs per renewal. \
             The timer queue hands every watchdog due together to one task, so what a renewal \
             costs is its heap entry taken out and put back (a binary heap of all held leases), \
             its renew script encoded and its reply parsed, and the allocator under them (in a \
             profile of this child at 100,000 leases: allocating and freeing about 30 % of the \
             samples, the heap about 13 %, the rest spread over the driver, the Redis client \
             and the reply parsing); on a machine shared with other work these take longer. A timer wheel instead of the heap and one script call renewing many \
             leases instead of a pipeline of one call each would cut the two largest parts.",
            crate::report::num(h.renews_per_sec),
            h.cpu_share * 100.0,
            h.cpu_ms_per_1k_renews,
        )
    }
}

/// Why a Redis cost target was missed, with the layers of this run's figures.
fn cost_missed(key: &str, report: &Report) -> String {
    use crate::cycle::Role;
    let cost = report.backend("redis").and_then(|b| b.cost.as_ref());
    let figure = |role: Role, metric: fn(&crate::cost::Mode) -> f64| {
        cost.and_then(|c| c.mode(role)).map_or(f64::NAN, metric)
    };
    let server = |role| figure(role, crate::cost::Mode::server_us);
    let client = |role| figure(role, crate::cost::Mode::client_us);
    let ours_runs: Vec<f64> = cost
        .and_then(|c| c.mode(Role::Ours))
        .map(|m| {
            m.runs
                .iter()
                .filter_map(crate::cost::Run::server_us)
                .collect()
        })
        .unwrap_or_default();
    let rounds = ours_runs.len();
    let low = ours_runs.iter().copied().fold(f64::NAN, f64::min);
    let high = ours_runs.iter().copied().fold(f64::NAN, f64::max);
    let gap = server(Role::Ours) - crate::cost::REDIS_SERVER_US;
    match key {
        "redis-cost-server" => format!(
            "Missed by {gap:.1} µs per cycle (the median of {rounds} rounds; the rounds ranged \
             {low:.1}–{high:.1} µs). Server CPU per cycle by layer: raw `SET NX PX` + `DEL` {raw:.1} µs, rslock (a plain \
             `SET NX PX` and a two-call compare-and-delete script) {rslock:.1} µs, our two \
             scripts {store:.1} µs through the store and {ours:.1} µs through `Locker` (the same \
             scripts: the difference is noise). Running a script costs the server about 2 µs \
             before it does anything (EVALSHA: script lookup, KEYS/ARGV tables, the reply \
             conversion), and each `redis.call` inside it a few tenths of a µs more than the \
             command alone (its arguments and its reply converted to and from Lua); minting the \
             token needs TIME and the counter in the same atomic step as the grant, which only \
             a script gives on Redis 7. Fewer calls barely move it (measured while building \
             this section, each variant alternated with the current scripts on the same \
             machine): reading and writing the counter in one `GETSET` (four calls instead of \
             five) changed the acquire script's server CPU from 9.1 to 9.0 µs (redis-benchmark, \
             four alternated rounds), and skipping the release's `PUBLISH` unless an acquire had \
             found the grant held changed the whole cycle from 12.5 to 12.3 µs (three \
             alternated rounds of this section; the raw floor moved as much between rounds), so \
             neither went in (the second would also leave waiters of earlier versions \
             unannounced). A profile of redis-server under this load shows no single hot spot: \
             Lua's string interning (this Redis hashes every byte of every string a script \
             receives or builds: keys, arguments, replies) about 11 %, clock reads about 5 %, \
             allocation about 10 %, the command table lookups and the network the rest. What \
             would close the gap: a compare-and-delete command instead of the release script \
             (recent Redis versions add `DELEX … IFEQ`), which would leave one script per \
             cycle.",
            raw = server(Role::Raw),
            rslock = server(Role::Peer),
            store = server(Role::OursStore),
            ours = server(Role::Ours),
        ),
        "redis-cost-client" => format!(
            "Client CPU per cycle by layer: raw {raw:.1} µs (two commands on the multiplexed \
             connection), the store {store:.1} µs (a random holder id, the keys, the EVALSHA \
             commands, parsing the grant), `Locker` {ours:.1} µs (the name check, the token \
             memory, the guard's state and its watchdog entry, a span and metrics).",
            raw = client(Role::Raw),
            store = client(Role::OursStore),
            ours = client(Role::Ours),
        ),
        _ => format!(
            "Throughput at 64 tasks follows the server's CPU per cycle when the server is the \
             bottleneck and the client's when the client is; on a shared machine both compete \
             for the same cores. Ours costs the server {ours:.1} µs per cycle to rslock's \
             {rslock:.1} µs and the client {ours_client:.1} µs to rslock's {rslock_client:.1} µs: \
             the token minted in the acquire script and the release compared in a script are \
             the difference (rslock mints no token).",
            ours = server(Role::Ours),
            rslock = server(Role::Peer),
            ours_client = client(Role::Ours),
            rslock_client = client(Role::Peer),
        ),
    }
}

/// Above the cost-per-cycle tables.
pub fn cost() -> String {
    "What one acquire + release costs in CPU, not in time: many tasks, each looping acquire + \
     release on a name of its own, each mode alone (no other mode's tasks in flight), modes \
     repeated in alternation so drift in the machine's load shows between rounds. Client CPU \
     is the user + system time of the process running the mode (`getrusage`: the benchmark \
     itself for ours and the raw floor, the rslock peer's own process for rslock) over the run, \
     divided by the cycles completed; server CPU is the time on CPU of the server's processes \
     (every thread, `/proc/PID/task/*/schedstat`) over the same run, divided likewise. CPU per \
     cycle moves less with the machine's load than throughput does."
        .to_owned()
}

/// Under the uncontended table of `backend`.
pub fn uncontended(backend: &str) -> String {
    let after =
        "The last two rows run ours and the floor again, interleaved, after the hand-off run";
    match backend {
        "redis" => format!(
            "{after}, when this store's subscriber connection is open. Each lock has its own \
             release channel, subscribed only while someone waits on that name, so a release \
             reaches only the clients waiting for it; a `PUBLISH` nobody listens to costs the \
             server next to nothing."
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
        "{LOCKER_TASK}. Any gap between the two runtimes is what the multi-thread runtime adds \
         (work stealing, atomics). The benchmark (like most services) runs on the multi-thread \
         runtime, so it is part of every \"ours\" row below."
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
     decides: on Redis, ours runs two Lua scripts instead of two plain commands on the server, and \
     the client work of section 1 on the client. On etcd, each of the 64 \
     tasks reuses its released lease as long as it is fresh, so ours makes the same two Raft \
     writes per cycle as the floor, plus the queue read inside its acquire txn. PostgreSQL is \
     bound by the same statements either way."
        .to_owned()
}

/// Under the renewal table.
pub fn renewal(report: &Report) -> String {
    let mut lines = Vec::new();
    for b in &report.backends {
        let (batched, alone) = (&b.hold, &b.hold_unbatched);
        if batched.cpu_ms_per_1k_renews > 0.0 && batched.renew_calls_per_sec > 0.0 {
            let counts = if batched.leases == alone.leases {
                String::new()
            } else {
                format!(
                    " ({} leases batched, {} alone)",
                    crate::report::num(batched.leases as f64),
                    crate::report::num(alone.leases as f64)
                )
            };
            lines.push(format!(
                "{}: {:.1} leases per store call, client CPU per renewal {:.2}× of renewing \
                 alone{counts}",
                crate::report::title(&b.key),
                batched.renews_per_sec / batched.renew_calls_per_sec,
                batched.cpu_ms_per_1k_renews / alone.cpu_ms_per_1k_renews.max(f64::MIN_POSITIVE),
            ));
        }
    }
    format!(
        "\"Batched\" is what `Locker` does by default: each guard's watchdog (its entry in the \
         runtime's timer queue) still decides when its lease is due, but the queue's driver takes every watchdog due within the next 2 ms (never more than a \
         fiftieth of the time its lease has left: renewing a little early is safe) and hands \
         them to one task, which sends them together through `LeaseStore::renew_many` — on Redis one \
         pipeline of renew scripts, on PostgreSQL one `UPDATE … FROM unnest(…)` with one WAL \
         write, on etcd the keepalives on one long-lived stream and the ownership checks in one \
         txn per 100 leases. Each guard gets its own answer: one lost lease in a batch is reported \
         for that guard alone, and a batch that fails as a whole is retried or reported for \
         every guard in it, never dropped. \"Alone\" is `Locker::with_renewal_batching(false)`: \
         one store call per renewal; it holds fewer leases when the batched child holds more \
         than the backends could serve one call per renewal, so the two compare per renewal \
         (CPU per 1,000 renewals), not per core. In this run: {}.",
        lines.join("; ")
    )
}

/// Server CPU per cycle, in µs, of `cost`'s layers: `Locker`, the store, the raw floor and
/// the mode that splits the store's cost (`extra`).
struct Layers {
    ours: f64,
    store: f64,
    raw: f64,
    extra: f64,
}

impl Layers {
    /// The layers of `cost`, with the mode labelled `extra`; `None` when it was not measured.
    fn of(cost: &crate::cost::Cost, extra: &str) -> Option<Self> {
        use crate::cost::Mode;
        use crate::cycle::Role;
        let server = |role| cost.mode(role).map_or(f64::NAN, Mode::server_us);
        let extra = cost
            .modes
            .iter()
            .find(|m| m.label == extra)
            .map(Mode::server_us)
            .filter(|v| v.is_finite())?;
        Some(Self {
            ours: server(Role::Ours),
            store: server(Role::OursStore),
            raw: server(Role::Raw),
            extra,
        })
    }
}

/// Under the PostgreSQL cost table: where the server's CPU per cycle goes, from this run's
/// figures and the measurements behind them. `None` without the prepared-statements row.
pub fn cost_postgres(cost: &crate::cost::Cost) -> Option<String> {
    use crate::cost::{Mode, PG_PREPARED};
    let Layers {
        ours,
        store,
        raw,
        extra: prepared,
    } = Layers::of(cost, PG_PREPARED)?;
    let per_sec = |mode: Option<&Mode>| mode.map_or(f64::NAN, Mode::per_sec);
    let speed = per_sec(cost.modes.iter().find(|m| m.label == PG_PREPARED))
        / per_sec(cost.mode(crate::cycle::Role::OursStore));
    Some(format!(
        "**Biggest cost: parsing and planning the statements.** The store sends each statement \
         inline by default (its values written into the SQL text, one simple-protocol message, \
         which works through any pooler), so the server parses and plans the acquire and the \
         release afresh on every cycle. The same store on named prepared statements (parsed \
         once per connection) costs the server {prepared:.0} µs per cycle instead of \
         {store:.0} µs: {share:.0} % of the inline store's server CPU is parsing and planning, \
         and it runs {speed:.1}× the cycles per second. The same SQL by hand costs what the \
         store does ({raw:.0} µs; `Locker` {ours:.0} µs), so nothing the store or `Locker` adds \
         around the statements shows on the server. Of a prepared cycle, about a fifth is the \
         release's `NOTIFY`: pgbench on this machine (PostgreSQL 15, 64 clients, the two \
         statements prepared, three alternated rounds of 3 s) measured 130 µs per cycle with it \
         and 103 µs without, and 1.75× the cycles per second without (a notifying commit takes \
         the database's notification-queue lock, so those commits go one at a time). The WAL \
         commit of the grant is not where the CPU goes on this setup (`fsync=off`): turning \
         `synchronous_commit` off saved nothing (pgbench as above, two alternated rounds of 4 s: \
         140 µs per cycle with it on, 168–177 µs off), and the clause that keeps grants \
         durable costs nothing measurable once prepared (about 17 µs per cycle to parse \
         inline). What a user can do: \
         `with_prepared_statements(true)` on a direct connection or a session-mode pool, or \
         behind pgbouncer 1.21 or later with `max_prepared_statements` above 0 (older \
         transaction-mode poolers need the default inline statements). The `NOTIFY` is what \
         wakes waiters at once on release; without it they would poll.",
        share = 100.0 * (store - prepared) / store,
    ))
}

/// Under the etcd cost table: where the server's CPU per cycle goes, from this run's figures
/// and the measurements behind them. `None` without the row of the store's txns by hand.
pub fn cost_etcd(cost: &crate::cost::Cost) -> Option<String> {
    let Layers {
        ours,
        store,
        raw,
        extra: txns,
    } = Layers::of(cost, crate::cost::ETCD_TXNS)?;
    Some(format!(
        "**Biggest cost: the release's compare.** Server CPU per cycle: the raw floor (a \
         put-if-absent txn and a plain delete) {raw:.0} µs, the store's own two txns by hand on \
         the same pre-granted lease {txns:.0} µs, the store {store:.0} µs, `Locker` {ours:.0} \
         µs. The txns by hand cost what the store does, so the difference from the floor is the \
         shape of the txns, not the store's leases: counted from etcd's `/metrics` during this \
         section, an uncontended cycle of the store is 2 txns and 2.05 Raft proposals (the raw \
         floor: 2.00), no keepalives, and 0.022 lease grants and as many revokes (each task's \
         spare is replaced once it is a tenth of its TTL old: 64 grants a second at about 3,000 \
         cycles a second). Of the shape, the release is the cost: measured while building this \
         section (three alternated rounds on the same server), the raw acquire followed by a \
         release txn (delete iff the key's create revision matches) cost the server 204 µs per \
         cycle against the floor's 143 µs, while the claim's prefix compare (put iff nothing is \
         under the name) followed by a plain delete cost 136 µs. A compare that finds its key \
         reads it through etcd's MVCC store (one more range per cycle in etcd's counters: 2 to \
         the floor's 1), where a plain delete only looks the key up in the index. It is not \
         cheap to remove: a spare lease comes back under the same key (the name and the lease \
         id), so a plain delete by a stale copy of a released grant would delete the next \
         holder's key. Only a key unique to each grant would make a plain delete safe, which \
         changes the key layout that `etcdctl lock` and earlier versions share."
    ))
}

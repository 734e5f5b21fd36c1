//! The command line, as clap sees it.

use std::ffi::OsString;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use fencelock::{LockName, OwnerLabel, PermitLimit};

use crate::duration::{self, WaitFor};

const ABOUT: &str = "Run a program under a distributed lock with its fencing token; inspect, \
break and check locks on Redis, PostgreSQL or etcd";

const LONG_ABOUT: &str = "\
fencelock runs a program while holding a lease on a lock in a shared store, like flock(1) \
across machines. Every grant carries a fencing token that is greater than any token granted \
before for that lock; pass it with every write to storage that can check it, so that a \
holder whose lease expired (paused, partitioned) cannot overwrite newer work.

The store is given by --store or FENCELOCK_STORE:
  redis://[:PASSWORD@]HOST:PORT[/DB]   rediss://… (TLS)
  postgres://USER[:PASSWORD]@HOST:PORT/DB
  etcd://HOST:PORT[,HOST:PORT…]        etcd+https://… (TLS)
  memory://   (in-process only: for trying things out, excludes nothing across processes)
Over TLS the server's certificate must chain to the system's roots or to those in the file
SSL_CERT_FILE names (for a private authority).";

const EXAMPLES: &str = "\
Examples:
  # Run a nightly job on at most one machine; skip it if another run holds the lock
  export FENCELOCK_STORE=redis://locks.internal:6379
  fencelock run --no-wait nightly-report -- /usr/local/bin/report --since yesterday

  # Who holds it?
  fencelock status nightly-report

  # Run the scheduler on one machine at a time, taking over when its leader dies
  fencelock elect --again --as \"$(hostname)\" scheduler -- /usr/local/bin/scheduler
  fencelock leader --watch scheduler

  # Is the store configured safely for locks?
  fencelock check --store postgres://locks@db.internal/locks

Exit status: the program's own; 128+N if it was killed by signal N; 64 usage error; \
69 store unavailable; 70 internal error; 75 lock busy (not acquired within --wait); \
79 lease lost while the program ran (it was stopped); 126/127 program not executable/not found.";

const RUN_AFTER: &str = "\
The program gets these environment variables:
  FENCELOCK_TOKEN     the fencing token (decimal, below 2^53); pass it with every write
  FENCELOCK_NAME      the lock name
  FENCELOCK_DEADLINE  unix time in milliseconds until which the grant is certain to hold even
                      if renewals stop (a conservative local deadline at start; renewals extend
                      the lease, not this variable)
  FENCELOCK_PERMITS   with --permits N: N

With --permits N, fencelock takes one of the N permits of the semaphore NAME instead of the lock
NAME: at most N runs hold a permit at once, each with a token of its own (rising from grant to
grant), and a run waits for a free permit as it would for the lock. Every holder must give the
same N: another limit than the current holders' is a usage error (64) naming both. The
semaphore NAME and the lock NAME are separate. `fencelock status --permits NAME` shows the
holders.

fencelock renews the lease every TTL/3 while the program runs and releases it when the program
exits. SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to fencelock are passed on to the program. If the
lease is lost (store unreachable past the deadline, lock broken with `release --force`, process
paused past the TTL) the program gets SIGTERM, then SIGKILL after --grace, and fencelock exits
with status 79. If fencelock itself is killed with SIGKILL, the kernel kills the program too
(Linux: a parent-death signal), since nothing renews the lease or stops the program any more.

Examples:
  # cron: skip this run if the previous one is still going (exit 75 when skipped)
  */5 * * * * fencelock run --store redis://127.0.0.1:6379 --no-wait sync-invoices -- sync-invoices

  # deploy step: wait up to 2 minutes for the lock, pass the token to the write it guards
  fencelock run --wait 2m --ttl 1m deploy/prod -- \\
      sh -c 'deployctl apply --fencing-token \"$FENCELOCK_TOKEN\" release.yaml'

  # at most 3 exports at once across all machines; the others wait up to 10 minutes
  fencelock run --permits 3 --wait 10m exports -- /opt/app/bin/export-batch

Exit status: the program's own, or 128+N if it was killed by signal N; 64 usage error (also
--permits outside 1..10000, or another limit than the semaphore's holders'); 69 store
unavailable (also: a store without semaphores, such as Redlock, with --permits); 70 internal
error; 75 lock busy (not acquired within --wait; with --permits, every permit stayed held);
79 lease lost while the program ran; 126 program not executable; 127 program not found.";

const ELECT_AFTER: &str = "\
Campaigns in the election NAME (the lock NAME, seen as an election) and, once elected, runs
the program as leader. The program gets these environment variables:
  FENCELOCK_TERM      the term: this leadership's fencing token, above every earlier leader's;
                      pass it with every write made as leader
  FENCELOCK_TOKEN     the same number (as `fencelock run` names it)
  FENCELOCK_NAME      the election's name
  FENCELOCK_DEADLINE  as for `fencelock run`

fencelock prints `elected` with the term on stderr, renews the leadership every TTL/3, and
resigns when the program exits (the next candidate is elected with a greater term). Signals and
loss are handled as by `fencelock run`: on loss the program gets SIGTERM, then SIGKILL after
--grace. With --again fencelock campaigns again after each run (the program exited or leadership
was lost) and runs the program again as the new leader, until it gets a signal: then it passes
the signal on, waits for the program, and exits with its status. A program that cannot be run
(status 126 or 127) ends --again.

Examples:
  # a singleton service: one leader among all machines, the others on standby
  fencelock elect --again --ttl 15s --as \"$(hostname)\" scheduler -- /usr/local/bin/scheduler

  # one shot: wait up to a minute to lead, then run the job as leader
  fencelock elect --timeout 1m --as web-3 reindex -- sh -c 'reindex --term \"$FENCELOCK_TERM\"'

Exit status: the program's own, or 128+N if it was killed by signal N (or fencelock got signal
N while campaigning); 64 usage error; 69 store unavailable; 70 internal error; 75 not elected
within --timeout; 79 leadership lost while the program ran; 126/127 program not executable/not
found.";

const LEADER_AFTER: &str = "\
Prints who leads the election NAME: the leader's label, term and the time left on its lease
(an alive leader renews it), or that nobody leads (status 0 either way, as `status` does for a
free lock). With --watch, prints the current state and then one line per change (each new
leader with its term, and each vacancy) until interrupted; a leader that holds for less than
--every may be missed where the store does not push grants (Redis, PostgreSQL), never reported
out of order.

Examples:
  fencelock leader scheduler
  fencelock leader --watch --json scheduler | jq -c '{label, term}'

JSON: one object per line: {\"name\", \"led\", \"term\", \"label\", \"holder\",
\"remaining_ms\"}; term, label, holder and remaining_ms are null when nobody leads (label also
when the leader set none, holder when the store keeps no holder ids).

While watching, a store error after the first line is reported on stderr (the last line may be
stale) and the watch goes on.

Exit status: 0 printed (a leader or nobody); 128+N --watch ended by signal N; 64 usage error;
69 store unavailable.";

const STATUS_AFTER: &str = "\
Examples:
  fencelock status --store etcd://10.0.0.1:2379,10.0.0.2:2379 deploy/prod nightly-report
  fencelock inspect --json deploy/prod | jq '.[0].token'
  fencelock status                      # every held lock, with its owner label
  fencelock status --prefix deploy/     # the held locks whose names start with deploy/
  fencelock status --permits exports    # who holds the permits of the semaphore `exports`

Without a name, lists the held locks (all, or those under --prefix, taken as plain text), in
name order, at most --limit of them. Redlock stores cannot list (status 69).

JSON: an array with one object per lock: {\"name\", \"held\", \"token\", \"remaining_ms\",
\"holder\", \"label\"}; token, remaining_ms, holder and label are null when the lock is free
(holder is also null when the store does not keep holder ids, label when the holder set none).

With --permits, the names are semaphores (as `run --permits` takes them): one row per permit
held, its STATE `2 of 3` (permits held of the limit), and a `free` row for a semaphore nobody
holds. JSON: one object per semaphore: {\"name\", \"limit\", \"held\", \"permits\": [{\"token\",
\"remaining_ms\", \"holder\", \"label\"}]}, permits in token order, limit null when nobody
holds. A store without semaphores (Redlock) exits 69.";

const RELEASE_AFTER: &str = "\
Breaking a lock does not stop its holder: it keeps running until it notices the loss (a
fencelock-run program gets SIGTERM at its next renewal). Writes it makes with its old token are
rejected only by storage that checks fencing tokens. The next grant gets a greater token.

Examples:
  fencelock release --force deploy/prod
  fencelock release --force --yes deploy/prod     # in scripts (required when stdin is not a TTY)

Exit status: 0 broken (or already free); 1 declined at the prompt; 64 usage (e.g. no --yes
without a terminal); 69 store unavailable.";

const CHECK_AFTER: &str = "\
The store diagnoses itself (the same findings a program gets from LeaseStore::diagnose): Redis
version, persistence (appendonly, appendfsync), maxmemory-policy (eviction can drop locks),
replication role and min-replicas-to-write; on a Redis Cluster also the cluster's state, which
primaries lack a replica and cluster-require-full-coverage, each primary judged as one server;
behind Sentinel also how many sentinels answer, the quorum, the primary they name,
down-after-milliseconds, failover-timeout and the replicas; for Redlock each server and the
quorum; PostgreSQL version, primary or standby, fsync, synchronous_commit and synchronous
standbys; etcd version, leader, members, alarms and which members answer. Then one lock
operation runs through the store.

Examples:
  fencelock check --store redis://10.0.0.5:6379
  fencelock check --store redis+sentinel://10.0.0.5:26379,10.0.0.6:26379/mymaster
  fencelock check --json --store etcd://10.0.0.1:2379 | jq -r .verdict

Exit status: 0 reachable and safe; 1 reachable, with warnings to read; 78 reachable, but locks
cannot work safely there (a FAIL line: a replica, no leader, no majority, out of space); 64
usage (bad URL, backend not built in); 69 unreachable.";

/// The `fencelock` command line.
#[derive(Debug, Parser)]
#[command(
    name = "fencelock",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXAMPLES,
    propagate_version = true,
    arg_required_else_help = true
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a program while holding a lock (or one of N permits: --permits N), with its fencing
    /// token in FENCELOCK_TOKEN.
    #[command(after_help = RUN_AFTER)]
    Run(RunArgs),
    /// Campaign to lead an election, and run a program as leader with its term.
    #[command(after_help = ELECT_AFTER)]
    Elect(ElectArgs),
    /// Show who leads an election (label, term, time left); --watch follows it.
    #[command(after_help = LEADER_AFTER)]
    Leader(LeaderArgs),
    /// Show who holds locks (or a semaphore's permits: --permits): token, time left, holder id.
    #[command(visible_alias = "inspect", after_help = STATUS_AFTER)]
    Status(StatusArgs),
    /// Break a lock whoever holds it (operators only; asks first).
    #[command(after_help = RELEASE_AFTER)]
    Release(ReleaseArgs),
    /// Check that the store is reachable and configured safely for locks.
    #[command(after_help = CHECK_AFTER)]
    Check(CheckArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Example:\n  fencelock completions bash > /etc/bash_completion.d/fencelock"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Where the locks live.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// The lock store: redis://HOST:PORT, rediss://…, postgres://USER@HOST/DB,
    /// etcd://HOST:PORT,HOST:PORT…, memory://.
    #[arg(
        long,
        short = 's',
        env = "FENCELOCK_STORE",
        value_name = "URL",
        hide_env_values = true
    )]
    pub(crate) store: Option<String>,
    /// Give up connecting, and on each single store request, after this long.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration::parse)]
    pub(crate) connect_timeout: Duration,
}

/// `fencelock run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// Lease time-to-live; renewed every TTL/3 while the program runs. Bounds how long a
    /// crashed holder blocks others.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration::parse)]
    pub(crate) ttl: Duration,
    /// How long to wait for a held lock: a duration or `forever`.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration::parse_wait,
          conflicts_with = "no_wait")]
    pub(crate) wait: WaitFor,
    /// Do not wait: exit with status 75 at once if the lock is held.
    #[arg(long, short = 'n')]
    pub(crate) no_wait: bool,
    /// Who holds the lock, as `fencelock status` shows it (up to 256 bytes; default: this
    /// host's name and fencelock's pid).
    #[arg(long, value_name = "TEXT", value_parser = parse_label)]
    pub(crate) label: Option<OwnerLabel>,
    /// Take one of N permits of the semaphore NAME instead of the lock NAME: at most N runs
    /// hold at once (1 to 10000; every holder must give the same N).
    #[arg(long, value_name = "N", value_parser = parse_permits)]
    pub(crate) permits: Option<PermitLimit>,
    /// The lock (or, with --permits, semaphore) name (1 to 512 bytes of UTF-8, no control
    /// characters).
    #[arg(value_name = "NAME", value_parser = parse_name)]
    pub(crate) name: LockName,
    #[command(flatten)]
    pub(crate) child: ProgramArgs,
}

/// The program `run` and `elect` supervise (after the name: the positional PROGRAM is last).
#[derive(Debug, Args)]
pub(crate) struct ProgramArgs {
    /// After the lease (or leadership) is lost: time between SIGTERM and SIGKILL to the
    /// program.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration::parse)]
    pub(crate) grace: Duration,
    /// The program to run and its arguments, after `--`.
    #[arg(value_name = "PROGRAM", last = true, required = true, num_args = 1..,
          value_parser = clap::value_parser!(OsString))]
    pub(crate) program: Vec<OsString>,
}

/// `fencelock elect`.
#[derive(Debug, Args)]
pub(crate) struct ElectArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// The candidate's name, as `fencelock leader` shows it (up to 256 bytes; default: this
    /// host's name and fencelock's pid).
    #[arg(long = "as", value_name = "LABEL", value_parser = parse_label)]
    pub(crate) label: Option<OwnerLabel>,
    /// Leadership lease time-to-live; renewed every TTL/3 while the program runs. Bounds how
    /// long a crashed leader keeps the others waiting.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration::parse)]
    pub(crate) ttl: Duration,
    /// How long to campaign before giving up (status 75): a duration or `forever`.
    #[arg(long, value_name = "DURATION", default_value = "forever", value_parser = duration::parse_wait)]
    pub(crate) timeout: WaitFor,
    /// After each run (the program exited, or leadership was lost), campaign again and rerun
    /// the program, until fencelock gets a signal.
    #[arg(long)]
    pub(crate) again: bool,
    /// The election's name (a lock name: 1 to 512 bytes of UTF-8, no control characters).
    #[arg(value_name = "NAME", value_parser = parse_name)]
    pub(crate) name: LockName,
    #[command(flatten)]
    pub(crate) child: ProgramArgs,
}

/// `fencelock leader`.
#[derive(Debug, Args)]
pub(crate) struct LeaderArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// Print the leader, then a line per change (new leader, vacancy) until interrupted.
    #[arg(long)]
    pub(crate) watch: bool,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// With --watch: read the leader at least this often (changes the store pushes are seen
    /// at once; a new leader on Redis or PostgreSQL is seen within this).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = duration::parse,
          requires = "watch")]
    pub(crate) every: Duration,
    /// The election's name.
    #[arg(value_name = "NAME", value_parser = parse_name)]
    pub(crate) name: LockName,
}

/// `fencelock status` / `fencelock inspect`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// List the held locks whose names start with this text (plain text, no wildcards).
    #[arg(long, value_name = "TEXT", conflicts_with = "names")]
    pub(crate) prefix: Option<String>,
    /// List at most this many locks.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1000,
        conflicts_with = "names"
    )]
    pub(crate) limit: usize,
    /// The names are semaphores (as `run --permits` takes them): show each one's permit
    /// holders and limit.
    #[arg(long, requires = "names", conflicts_with = "prefix")]
    pub(crate) permits: bool,
    /// The lock names (semaphore names with --permits); none lists the held locks.
    #[arg(value_name = "NAME", num_args = 0.., value_parser = parse_name)]
    pub(crate) names: Vec<LockName>,
}

/// `fencelock release`.
#[derive(Debug, Args)]
pub(crate) struct ReleaseArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// Required: break the lock whoever holds it. (A holder releases its own lock by exiting.)
    #[arg(long, required = true)]
    pub(crate) force: bool,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
    /// The lock name.
    #[arg(value_name = "NAME", value_parser = parse_name)]
    pub(crate) name: LockName,
}

/// `fencelock check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// Print one JSON document (backend, server, findings, verdict) instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

fn parse_name(input: &str) -> Result<LockName, fencelock::Error> {
    LockName::new(input)
}

fn parse_permits(input: &str) -> Result<PermitLimit, String> {
    let n: u32 = input.trim().parse().map_err(|_| {
        format!(
            "`{input}` is not a number of permits; give 1 to {}",
            PermitLimit::MAX
        )
    })?;
    PermitLimit::new(n).map_err(|e| e.to_string())
}

fn parse_label(input: &str) -> Result<OwnerLabel, String> {
    if input.is_empty() {
        // The library's advice names its API; on the command line the option is left out.
        return Err(
            "the label is empty; leave the option out to use this host's name and pid".to_owned(),
        );
    }
    OwnerLabel::new(input).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_parses_program_after_double_dash() {
        let cli = Cli::try_parse_from([
            "fencelock",
            "run",
            "--store",
            "memory://",
            "--ttl",
            "5s",
            "--no-wait",
            "job",
            "--",
            "echo",
            "--ttl",
            "x",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert!(run.no_wait);
        assert_eq!(run.ttl, Duration::from_secs(5));
        assert_eq!(run.child.program, ["echo", "--ttl", "x"]);
    }

    #[test]
    fn wait_and_no_wait_conflict() {
        let err = Cli::try_parse_from([
            "fencelock",
            "run",
            "--wait",
            "3s",
            "--no-wait",
            "job",
            "--",
            "true",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn permits_take_one_to_ten_thousand() {
        let parse = |n: &str| {
            Cli::try_parse_from(["fencelock", "run", "--permits", n, "job", "--", "true"]).map(
                |cli| match cli.command {
                    Command::Run(run) => run.permits.map(PermitLimit::get),
                    _ => None,
                },
            )
        };
        assert_eq!(parse("1").unwrap(), Some(1));
        assert_eq!(parse("10000").unwrap(), Some(10_000));
        for bad in ["0", "10001", "two", "", "1.5"] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
        }
    }
}

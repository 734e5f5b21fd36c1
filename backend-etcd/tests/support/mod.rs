//! Helpers shared by the etcd backend tests.
#![allow(dead_code, unreachable_pub)]

use std::process::Stdio;
use std::time::Duration;

use etcd_client::GetOptions;
use fencelock_conformance::harness::shared_etcd;
use fencelock_core::LockName;
use fencelock_etcd::{EtcdLeaseStore, etcd_client};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

pub mod elect;

/// How long a test gives an event that should take milliseconds.
pub const PROMPTLY: Duration = Duration::from_secs(5);

/// The endpoints of the etcd shared by this test process.
pub async fn shared_endpoints() -> Vec<String> {
    shared_etcd()
        .await
        .expect("start etcd (is etcd installed?)")
        .endpoints()
        .to_vec()
}

/// A store on the shared etcd.
pub async fn shared_store() -> EtcdLeaseStore {
    EtcdLeaseStore::connect(shared_endpoints().await)
        .await
        .expect("connect")
}

/// A lock name no other test uses.
pub fn unique_name(tag: &str) -> LockName {
    LockName::new(format!("fl-etcd-test/{tag}-{:016x}", rand_u64())).unwrap()
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// How many keys live under `<prefix><name>/` (queued holders and waiters).
pub async fn queue_len(store: &EtcdLeaseStore, name: &LockName) -> i64 {
    let prefix = format!("{}{name}/", store.key_prefix());
    let mut client = store.client().clone();
    client
        .get(
            prefix,
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap()
        .count()
}

/// Polls until the queue of `name` has `len` keys (a state in etcd, not an event we could await).
pub async fn wait_for_queue_len(store: &EtcdLeaseStore, name: &LockName, len: i64) {
    let started = tokio::time::Instant::now();
    loop {
        let now = queue_len(store, name).await;
        if now == len {
            return;
        }
        assert!(
            started.elapsed() < PROMPTLY,
            "queue of {name} has {now} keys, expected {len}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A running `etcdctl` (Debian's, speaking the v3 API) whose output is read line by line.
pub struct Etcdctl {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Etcdctl {
    /// Runs `etcdctl ARGS` against `endpoints`.
    pub fn spawn(endpoints: &[String], args: &[&str]) -> Self {
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("run etcdctl (apt-get install etcd-client)");
        let stdout = child.stdout.take().unwrap();
        Self {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// The next line etcdctl prints that is not empty. Cancel-safe.
    pub async fn next_line(&mut self) -> String {
        loop {
            let line = self
                .lines
                .next_line()
                .await
                .unwrap()
                .expect("etcdctl exited before printing the line awaited");
            if !line.trim().is_empty() {
                return line;
            }
        }
    }

    /// SIGINT (SIGTERM would leave its session lease behind): etcdctl lets go of what it holds
    /// and exits; answers whether it exited with success.
    pub async fn interrupt_and_wait(mut self) -> bool {
        let pid = self.child.id().expect("etcdctl still running");
        let sent = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .await
            .unwrap();
        assert!(sent.success());
        tokio::time::timeout(PROMPTLY, self.child.wait())
            .await
            .expect("etcdctl exits after SIGINT")
            .unwrap()
            .success()
    }
}

/// `etcdctl lock NAME`: prints the key it holds, then holds until interrupted.
pub struct EtcdctlLock(Etcdctl);

impl EtcdctlLock {
    pub fn spawn(endpoints: &[String], name: &LockName) -> Self {
        Self(Etcdctl::spawn(endpoints, &["lock", name.as_str()]))
    }

    /// The key etcdctl printed once it holds the lock. Cancel-safe.
    pub async fn held_key(&mut self) -> String {
        self.0.next_line().await
    }

    /// SIGINT: etcdctl unlocks and exits.
    pub async fn unlock_and_wait(self) {
        assert!(
            self.0.interrupt_and_wait().await,
            "etcdctl lock exits with success after SIGINT"
        );
    }
}

/// A leader as `etcdctl elect` prints it: its key, then its proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectedKey {
    pub key: String,
    pub proposal: String,
}

impl ElectedKey {
    /// The lease id in the key, in hex (Go's `concurrency.Election` key is `NAME/<lease hex>`).
    pub fn lease_hex(&self) -> &str {
        self.key.rsplit('/').next().unwrap()
    }
}

/// `etcdctl elect NAME PROPOSAL` (campaigns, prints the leader key and proposal once elected,
/// leads until interrupted, then resigns) or `etcdctl elect -l NAME` (prints each leader).
pub struct EtcdctlElect(Etcdctl);

impl EtcdctlElect {
    /// Campaigns in the election `name` with `proposal`.
    pub fn campaign(endpoints: &[String], name: &LockName, proposal: &str) -> Self {
        Self(Etcdctl::spawn(
            endpoints,
            &["elect", name.as_str(), proposal],
        ))
    }

    /// Observes the election `name`.
    pub fn listen(endpoints: &[String], name: &LockName) -> Self {
        Self(Etcdctl::spawn(endpoints, &["elect", "-l", name.as_str()]))
    }

    /// The next leader printed: when campaigning, itself once elected. Cancel-safe only
    /// between leaders (two lines each).
    pub async fn next_leader(&mut self) -> ElectedKey {
        let key = self.0.next_line().await;
        let proposal = self.0.next_line().await;
        ElectedKey { key, proposal }
    }

    /// SIGINT: a leader resigns, a campaign gives up, an observer stops; then waits for the
    /// exit and answers whether it was a success.
    pub async fn interrupt_and_wait(self) -> bool {
        self.0.interrupt_and_wait().await
    }
}

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

/// `etcdctl lock NAME`, Debian's etcdctl speaking the v3 API: prints the key it holds, then
/// holds until interrupted.
pub struct EtcdctlLock {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl EtcdctlLock {
    pub fn spawn(endpoints: &[String], name: &LockName) -> Self {
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .args(["lock", name.as_str()])
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

    /// The key etcdctl printed once it holds the lock. Cancel-safe.
    pub async fn held_key(&mut self) -> String {
        loop {
            let line = self
                .lines
                .next_line()
                .await
                .unwrap()
                .expect("etcdctl exited without printing its key");
            if !line.trim().is_empty() {
                return line;
            }
        }
    }

    /// SIGINT: etcdctl unlocks and exits (SIGTERM would leave its session lease behind).
    pub async fn unlock_and_wait(mut self) {
        let pid = self.child.id().expect("etcdctl still running");
        let sent = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .await
            .unwrap();
        assert!(sent.success());
        let status = tokio::time::timeout(PROMPTLY, self.child.wait())
            .await
            .expect("etcdctl exits after SIGINT")
            .unwrap();
        assert!(status.success(), "etcdctl lock exited with {status}");
    }
}

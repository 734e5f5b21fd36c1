//! etcd as child processes: one node or a cluster on loopback.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::certs::{self, TlsFiles};
use super::error::{HarnessError, Result};
use super::process::{Launch, ServerProcess};
use super::{binaries, blocking, http, ports, retry_addr_in_use, tempdirs};

/// Timeout of one HTTP request sent by the harness.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
/// How long a cluster may take to elect a leader and report healthy.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One etcd member; see [`ServerProcess`] for kill/restart/pause/resume
/// (reachable through `Deref`). A restarted member rejoins its cluster with
/// its old data directory.
#[derive(Debug)]
pub struct EtcdMember {
    process: ServerProcess,
    name: String,
    client_port: u16,
    peer_port: u16,
    /// The TLS client port, for a cluster started with [`EtcdCluster::start_tls`].
    tls_port: Option<u16>,
}

impl EtcdMember {
    /// The member name (`m0`, `m1`, …).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The TLS client URL, `https://localhost:PORT` (the name the certificate is for), for a
    /// cluster started with [`EtcdCluster::start_tls`].
    pub fn tls_endpoint(&self) -> Option<String> {
        self.tls_port
            .map(|port| format!("https://localhost:{port}"))
    }

    /// The client address.
    pub fn client_addr(&self) -> SocketAddr {
        addr(self.client_port)
    }

    /// The peer (raft) port.
    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }

    /// Whether `/health` answers `"health":"true"` within a short timeout.
    pub async fn is_healthy(&self) -> bool {
        let addr = self.client_addr();
        blocking(move || Ok(healthy(addr))).await.unwrap_or(false)
    }
}

impl Deref for EtcdMember {
    type Target = ServerProcess;

    fn deref(&self) -> &ServerProcess {
        &self.process
    }
}

/// An etcd cluster of one or more members on 127.0.0.1, with fast elections
/// (`--heartbeat-interval 25 --election-timeout 250`: a new leader about
/// 0.3–0.5 s after the old one dies).
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<EtcdMember>,
    tls: Option<TlsFiles>,
}

impl EtcdCluster {
    /// Start `size` members and wait until every one reports healthy.
    pub async fn start(size: usize) -> Result<Self> {
        blocking(move || Self::start_blocking(size)).await
    }

    /// [`Self::start`], with every member also taking TLS client connections on a second
    /// port ([`EtcdMember::tls_endpoint`]), its certificate signed by one throwaway authority
    /// for the cluster ([`Self::tls`]); clients need no certificate of their own. Members still
    /// talk to each other in plain HTTP.
    pub async fn start_tls(size: usize) -> Result<Self> {
        blocking(move || Self::start_blocking_with(size, true)).await
    }

    /// The version of the `etcd` binary clusters are started from (`3.4.23`), as its
    /// `--version` prints it.
    ///
    /// # Errors
    /// When there is no `etcd` binary, it does not run, or it prints no version line.
    pub fn binary_version() -> Result<String> {
        let program = binaries::find("etcd")?;
        let out = std::process::Command::new(&program)
            .arg("--version")
            .output()
            .map_err(|e| HarnessError::new(format!("cannot run {}: {e}", program.display())))?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|line| line.strip_prefix("etcd Version:"))
            .map(|v| v.trim().to_owned())
            .ok_or_else(|| {
                HarnessError::new(format!(
                    "{} --version printed no `etcd Version:` line",
                    program.display()
                ))
            })
    }

    /// [`Self::start`], blocking the calling thread.
    pub fn start_blocking(size: usize) -> Result<Self> {
        Self::start_blocking_with(size, false)
    }

    fn start_blocking_with(size: usize, tls: bool) -> Result<Self> {
        if size == 0 {
            return Err(HarnessError::new(
                "an etcd cluster needs at least one member",
            ));
        }
        let program = binaries::find("etcd")?;
        retry_addr_in_use(|| {
            let cluster = Self::launch(&program, size, tls)?;
            cluster.wait_healthy()?;
            Ok(cluster)
        })
    }

    fn launch(program: &std::path::Path, size: usize, tls: bool) -> Result<Self> {
        static CLUSTERS: AtomicU32 = AtomicU32::new(0);
        let token = format!(
            "fencelock-{}-{}-{:x}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        // Client and peer ports, and a TLS port per member only when asked for.
        let per_member = if tls { 3 } else { 2 };
        let ports = ports::free_ports(per_member * size)?;
        let (client_ports, rest) = ports.split_at(size);
        let (peer_ports, tls_ports) = rest.split_at(size);
        let mut files = None;
        let initial_cluster = peer_ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("m{i}=http://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::with_capacity(size);
        for (i, (&client_port, &peer_port)) in client_ports.iter().zip(peer_ports).enumerate() {
            let name = format!("m{i}");
            let dir = tempdirs::server_dir("etcd")?;
            // One authority for the whole cluster, in the first member's directory (which
            // lives as long as the cluster).
            if tls && files.is_none() {
                files = Some(certs::generate(dir.path())?);
            }
            let tls_port = tls_ports.get(i).copied();
            let plain_url = format!("http://127.0.0.1:{client_port}");
            let (listen_url, advertise_url) = match tls_port {
                Some(port) => (
                    format!("{plain_url},https://127.0.0.1:{port}"),
                    format!("{plain_url},https://localhost:{port}"),
                ),
                None => (plain_url.clone(), plain_url),
            };
            let peer_url = format!("http://127.0.0.1:{peer_port}");
            let mut args: Vec<OsString> = [
                "--name",
                &name,
                "--listen-client-urls",
                &listen_url,
                "--advertise-client-urls",
                &advertise_url,
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
                "--initial-cluster",
                &initial_cluster,
                "--initial-cluster-token",
                &token,
                "--initial-cluster-state",
                "new",
                "--heartbeat-interval",
                "25",
                "--election-timeout",
                "250",
                "--logger",
                "zap",
                "--log-outputs",
                "stderr",
            ]
            .into_iter()
            .map(OsString::from)
            .collect();
            args.push("--data-dir".into());
            args.push(dir.path().join("data").into());
            if let Some(files) = &files {
                args.push("--cert-file".into());
                args.push(files.server_cert.clone().into());
                args.push("--key-file".into());
                args.push(files.server_key.clone().into());
            }
            let probe_addr = addr(client_port);
            let process = ServerProcess::new(
                "etcd",
                dir,
                Launch {
                    program: program.to_path_buf(),
                    args,
                    run_as: None,
                },
                Arc::new(move || healthy(probe_addr)),
                READY_TIMEOUT,
            );
            members.push(EtcdMember {
                process,
                name,
                client_port,
                peer_port,
                tls_port,
            });
        }
        Ok(Self {
            members,
            tls: files,
        })
    }

    /// Launch every member, then wait until all are healthy (they need each
    /// other for a quorum, so none can be waited for alone).
    fn wait_healthy(&self) -> Result<()> {
        let offsets = self
            .members
            .iter()
            .map(|m| m.process.launch())
            .collect::<Result<Vec<_>>>()?;
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut ready = vec![false; self.members.len()];
        loop {
            for ((member, offset), ready) in self.members.iter().zip(&offsets).zip(&mut ready) {
                if !*ready {
                    *ready = member.process.poll_ready(*offset)?;
                }
            }
            if ready.iter().all(|r| *r) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let tails: Vec<String> = self
                    .members
                    .iter()
                    .map(|m| format!("--- {} log:\n{}", m.name, m.log_tail()))
                    .collect();
                return Err(HarnessError::new(format!(
                    "etcd cluster not healthy after {READY_TIMEOUT:?} (ready: {ready:?})\n{}",
                    tails.join("\n")
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The members.
    pub fn members(&self) -> &[EtcdMember] {
        &self.members
    }

    /// Member `index`.
    pub fn member(&self, index: usize) -> Result<&EtcdMember> {
        self.members.get(index).ok_or_else(|| {
            HarnessError::new(format!(
                "no etcd member {index} in a cluster of {}",
                self.members.len()
            ))
        })
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no members (never: [`Self::start`] refuses 0).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The certificates, for a cluster started with [`Self::start_tls`].
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// The TLS client URLs of all members, for a cluster started with [`Self::start_tls`].
    pub fn tls_endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter_map(EtcdMember::tls_endpoint)
            .collect()
    }

    /// The client URLs of all members.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(EtcdMember::endpoint).collect()
    }

    /// The index of the member that answers and says it is the leader
    /// (`/v3/maintenance/status`: `leader == header.member_id`). Killed and
    /// paused members do not answer.
    pub async fn leader(&self) -> Option<usize> {
        let addrs: Vec<SocketAddr> = self.members.iter().map(EtcdMember::client_addr).collect();
        blocking(move || Ok(leader_of(&addrs))).await.ok().flatten()
    }

    /// [`Self::leader`], blocking the calling thread.
    pub fn leader_blocking(&self) -> Option<usize> {
        let addrs: Vec<SocketAddr> = self.members.iter().map(EtcdMember::client_addr).collect();
        leader_of(&addrs)
    }

    /// Poll [`Self::leader`] until there is one, or fail after `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<usize> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(leader) = self.leader().await {
                return Ok(leader);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(HarnessError::new(format!(
                    "no etcd leader after {timeout:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn healthy(addr: SocketAddr) -> bool {
    http::request(addr, "GET", "/health", "", PROBE_TIMEOUT)
        .is_ok_and(|(status, body)| status == 200 && body.contains(r#""health":"true""#))
}

fn leader_of(addrs: &[SocketAddr]) -> Option<usize> {
    addrs.iter().position(|&addr| {
        let Ok((200, body)) =
            http::request(addr, "POST", "/v3/maintenance/status", "{}", PROBE_TIMEOUT)
        else {
            return false;
        };
        let Ok(status) = serde_json::from_str::<serde_json::Value>(&body) else {
            return false;
        };
        let leader = &status["leader"];
        !leader.is_null() && *leader == status["header"]["member_id"]
    })
}

//! A Sentinel deployment (a primary, a replica, three sentinels) as child processes.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::{HarnessError, Result, ResultExt};
use super::process::{Launch, ServerProcess};
use super::redis::{RedisServer, RedisServerOptions};
use super::{binaries, blocking, ports, resp, retry_addr_in_use, tempdirs};

/// The name the sentinels monitor the primary under.
pub const SENTINEL_MASTER_NAME: &str = "mymaster";
/// Sentinels in a deployment; the quorum is 2.
const SENTINELS: usize = 3;
/// How long the deployment may take to settle after start.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a sentinel may take to answer PING after start.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);

/// One `redis-server --sentinel` child process; see [`ServerProcess`] (through `Deref`).
#[derive(Debug)]
pub struct SentinelProcess {
    process: ServerProcess,
    port: u16,
}

impl SentinelProcess {
    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Send one command and return the raw RESP reply (see [`RedisServer::command`]).
    pub fn command_blocking(&self, args: &[&str]) -> Result<String> {
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        resp::command(addr(self.port), &args, COMMAND_TIMEOUT)
    }
}

impl Deref for SentinelProcess {
    type Target = ServerProcess;

    fn deref(&self) -> &ServerProcess {
        &self.process
    }
}

/// A primary and a replica watched by three sentinels (quorum 2,
/// `down-after-milliseconds 1000`, `failover-timeout 3000`), all on 127.0.0.1.
#[derive(Debug)]
pub struct RedisSentinel {
    inner: Arc<Deployment>,
}

#[derive(Debug)]
struct Deployment {
    servers: Vec<RedisServer>,
    sentinels: Vec<SentinelProcess>,
}

impl RedisSentinel {
    /// Start the deployment and wait until every sentinel knows the primary, the replica and
    /// the two other sentinels.
    pub async fn start() -> Result<Self> {
        blocking(Self::start_blocking).await
    }

    /// [`Self::start`], blocking the calling thread.
    pub fn start_blocking() -> Result<Self> {
        let primary = RedisServer::start_blocking(RedisServerOptions::ephemeral())?;
        let replica = RedisServer::start_blocking(RedisServerOptions {
            extra_args: vec![
                "--replicaof".into(),
                "127.0.0.1".into(),
                primary.port().to_string(),
            ],
            ..RedisServerOptions::default()
        })?;
        let mut sentinels = Vec::with_capacity(SENTINELS);
        for _ in 0..SENTINELS {
            sentinels.push(retry_addr_in_use(|| start_sentinel(primary.port()))?);
        }
        let deployment = Self {
            inner: Arc::new(Deployment {
                servers: vec![primary, replica],
                sentinels,
            }),
        };
        deployment.wait_settled_blocking(SETTLE_TIMEOUT)?;
        Ok(deployment)
    }

    /// The two data servers (the first started as the primary).
    pub fn servers(&self) -> &[RedisServer] {
        &self.inner.servers
    }

    /// The three sentinels.
    pub fn sentinels(&self) -> &[SentinelProcess] {
        &self.inner.sentinels
    }

    /// `redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/mymaster`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels()
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect();
        format!(
            "redis+sentinel://{}/{SENTINEL_MASTER_NAME}",
            hosts.join(",")
        )
    }

    /// The primary's port as the first answering sentinel reports it.
    pub fn primary_port_blocking(&self) -> Result<u16> {
        let mut last = HarnessError::new("no sentinel is running");
        for sentinel in self.sentinels().iter().filter(|s| s.is_running()) {
            match sentinel.command_blocking(&[
                "SENTINEL",
                "get-master-addr-by-name",
                SENTINEL_MASTER_NAME,
            ]) {
                Ok(reply) => match reply.lines().nth(4).and_then(|p| p.parse().ok()) {
                    Some(port) => return Ok(port),
                    None => last = HarnessError::new(format!("get-master-addr-by-name: {reply}")),
                },
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The data server that is the primary now.
    pub fn primary_blocking(&self) -> Result<&RedisServer> {
        let port = self.primary_port_blocking()?;
        self.servers()
            .iter()
            .find(|s| s.port() == port)
            .ok_or_else(|| HarnessError::new(format!("sentinels name an unknown primary {port}")))
    }

    /// Wait until every running sentinel names a primary other than `old_port` and that
    /// server says `role:master`; returns its port.
    pub async fn wait_for_failover(&self, old_port: u16, timeout: Duration) -> Result<u16> {
        let me = Self {
            inner: Arc::clone(&self.inner),
        };
        blocking(move || {
            let deadline = Instant::now() + timeout;
            loop {
                if let Some(port) = me.agreed_primary_blocking()
                    && port != old_port
                {
                    return Ok(port);
                }
                if Instant::now() >= deadline {
                    return Err(HarnessError::new(format!(
                        "no failover away from {old_port} within {timeout:?}"
                    )));
                }
                std::thread::sleep(POLL);
            }
        })
        .await
    }

    /// The primary every running sentinel names, if they agree and it says `role:master`.
    fn agreed_primary_blocking(&self) -> Option<u16> {
        let mut agreed = None;
        for sentinel in self.sentinels().iter().filter(|s| s.is_running()) {
            let reply = sentinel
                .command_blocking(&["SENTINEL", "get-master-addr-by-name", SENTINEL_MASTER_NAME])
                .ok()?;
            let port: u16 = reply.lines().nth(4)?.parse().ok()?;
            if agreed.is_some_and(|a| a != port) {
                return None;
            }
            agreed = Some(port);
        }
        let port = agreed?;
        let server = self.servers().iter().find(|s| s.port() == port)?;
        server
            .command_blocking(&["INFO", "replication"])
            .ok()
            .filter(|info| info.contains("role:master"))
            .map(|_| port)
    }

    fn wait_settled_blocking(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let want = format!("slaves=1,sentinels={SENTINELS}");
        loop {
            let settled = self.sentinels().iter().all(|s| {
                s.command_blocking(&["INFO", "sentinel"])
                    .is_ok_and(|info| info.contains("status=ok") && info.contains(&want))
            }) && self.servers().get(1).is_some_and(|r| {
                r.command_blocking(&["INFO", "replication"])
                    .is_ok_and(|info| info.contains("master_link_status:up"))
            });
            if settled {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let info: Vec<String> = self
                    .sentinels()
                    .iter()
                    .map(|s| {
                        s.command_blocking(&["INFO", "sentinel"])
                            .unwrap_or_default()
                    })
                    .collect();
                return Err(HarnessError::new(format!(
                    "sentinels not settled within {timeout:?}: {info:?}"
                )));
            }
            std::thread::sleep(POLL);
        }
    }
}

/// Start one sentinel monitoring the primary on `primary_port`, with a writable config file in
/// its own directory (a sentinel rewrites its config).
fn start_sentinel(primary_port: u16) -> Result<SentinelProcess> {
    let program = binaries::find("redis-server")?;
    let port = ports::free_port()?;
    let dir = tempdirs::server_dir("redis-sentinel")?;
    let conf = dir.path().join("sentinel.conf");
    let text = format!(
        "port {port}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\ndir {dir}\n\
         sentinel monitor {SENTINEL_MASTER_NAME} 127.0.0.1 {primary_port} 2\n\
         sentinel down-after-milliseconds {SENTINEL_MASTER_NAME} 1000\n\
         sentinel failover-timeout {SENTINEL_MASTER_NAME} 3000\n\
         sentinel parallel-syncs {SENTINEL_MASTER_NAME} 1\n",
        dir = dir.path().display()
    );
    std::fs::write(&conf, text).ctx(|| format!("write {}", conf.display()))?;
    let args: Vec<OsString> = vec![conf.into(), "--sentinel".into()];
    let process = ServerProcess::new(
        "redis-sentinel",
        dir,
        Launch {
            program,
            args,
            run_as: None,
        },
        Arc::new(move || {
            resp::command(addr(port), &["PING".to_owned()], Duration::from_millis(250))
                .is_ok_and(|r| r == "+PONG\r\n")
        }),
        READY_TIMEOUT,
    );
    process.start_blocking()?;
    Ok(SentinelProcess { process, port })
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

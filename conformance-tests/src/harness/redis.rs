//! `redis-server` as a child process.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::certs::{self, TlsFiles};
use super::error::{HarnessError, Result};
use super::process::{Launch, ServerProcess};
use super::{binaries, blocking, ports, resp, retry_addr_in_use, tempdirs};

/// Timeout of one command sent by the harness.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a server may take to answer PING after start.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a new replica may take to finish its first sync.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// How a Redis server persists its data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RedisPersistence {
    /// Nothing (`--save "" --appendonly no`): a restart loses everything.
    #[default]
    None,
    /// Append-only file, fsynced on every write
    /// (`--appendonly yes --appendfsync always`): a SIGKILL loses nothing.
    AofAlways,
}

/// How to start a [`RedisServer`].
#[derive(Debug, Clone, Default)]
pub struct RedisServerOptions {
    /// Persistence mode.
    pub persistence: RedisPersistence,
    /// A fixed port instead of a free one.
    pub port: Option<u16>,
    /// More `redis-server` arguments, e.g. `["--maxmemory", "10mb"]`.
    pub extra_args: Vec<String>,
    /// Also listen for TLS on a second port, with a certificate for `localhost` signed by a
    /// throwaway authority (made with `openssl`); clients need no certificate of their own.
    pub tls: bool,
}

impl RedisServerOptions {
    /// No persistence.
    pub fn ephemeral() -> Self {
        Self::default()
    }

    /// AOF with `appendfsync always`.
    pub fn aof() -> Self {
        Self {
            persistence: RedisPersistence::AofAlways,
            ..Self::default()
        }
    }

    /// No persistence, and TLS on a second port.
    pub fn tls() -> Self {
        Self {
            tls: true,
            ..Self::default()
        }
    }
}

/// Where a [`RedisServer`] started with [`RedisServerOptions::tls`] takes TLS connections.
#[derive(Debug, Clone)]
pub struct RedisServerTls {
    /// The TLS port.
    pub port: u16,
    /// The certificates.
    pub files: TlsFiles,
}

/// A `redis-server` child process on 127.0.0.1; see [`ServerProcess`] for
/// kill/restart/pause/resume (reachable through `Deref`).
#[derive(Debug)]
pub struct RedisServer {
    process: ServerProcess,
    port: u16,
    tls: Option<RedisServerTls>,
}

impl RedisServer {
    /// Start a server and wait until it answers PING.
    pub async fn start(options: RedisServerOptions) -> Result<Self> {
        blocking(move || Self::start_blocking(options)).await
    }

    /// [`Self::start`], blocking the calling thread.
    pub fn start_blocking(options: RedisServerOptions) -> Result<Self> {
        let program = binaries::find("redis-server")?;
        retry_addr_in_use(|| {
            let port = match options.port {
                Some(port) => port,
                None => ports::free_port()?,
            };
            let dir = tempdirs::server_dir("redis")?;
            let mut args: Vec<OsString> = [
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
                "--save",
                "",
            ]
            .into_iter()
            .map(OsString::from)
            .collect();
            args.push("--dir".into());
            args.push(dir.path().into());
            let persistence: &[&str] = match options.persistence {
                RedisPersistence::None => &["--appendonly", "no"],
                RedisPersistence::AofAlways => &["--appendonly", "yes", "--appendfsync", "always"],
            };
            args.extend(persistence.iter().map(OsString::from));
            args.extend(options.extra_args.iter().map(OsString::from));
            let tls = if options.tls {
                let tls = RedisServerTls {
                    port: ports::free_port()?,
                    files: certs::generate(dir.path())?,
                };
                args.extend(tls_args(&tls));
                Some(tls)
            } else {
                None
            };
            let addr = addr(port);
            let process = ServerProcess::new(
                "redis-server",
                dir,
                Launch {
                    program: program.clone(),
                    args,
                    run_as: None,
                },
                Arc::new(move || ping(addr)),
                READY_TIMEOUT,
            );
            process.start_blocking()?;
            Ok(Self { process, port, tls })
        })
    }

    /// Start a server replicating `primary` (`--replicaof`), and wait until
    /// its first sync is done (`master_link_status:up`).
    pub async fn start_replica_of(primary: &RedisServer) -> Result<Self> {
        let primary_port = primary.port();
        blocking(move || {
            let replica = Self::start_blocking(RedisServerOptions {
                extra_args: vec![
                    "--replicaof".into(),
                    "127.0.0.1".into(),
                    primary_port.to_string(),
                ],
                ..RedisServerOptions::default()
            })?;
            let deadline = Instant::now() + SYNC_TIMEOUT;
            loop {
                let info = replica.command_blocking(&["INFO", "replication"])?;
                if info.contains("master_link_status:up") {
                    return Ok(replica);
                }
                if Instant::now() >= deadline {
                    return Err(HarnessError::new(format!(
                        "replica of port {primary_port} not in sync after {SYNC_TIMEOUT:?}: {info}"
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .await
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        addr(self.port)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The TLS port and certificates, for a server started with [`RedisServerOptions::tls`].
    pub fn tls(&self) -> Option<&RedisServerTls> {
        self.tls.as_ref()
    }

    /// `rediss://localhost:TLS_PORT` (the name the certificate is for), for a server started
    /// with [`RedisServerOptions::tls`].
    pub fn tls_url(&self) -> Option<String> {
        self.tls
            .as_ref()
            .map(|tls| format!("rediss://localhost:{}", tls.port))
    }

    /// Send one command over a fresh connection and return the raw RESP reply
    /// frame, e.g. `"+OK\r\n"`, `"-READONLY …\r\n"`, `":1\r\n"`,
    /// `"$3\r\nbar\r\n"`, `"$-1\r\n"`. A Redis error reply is `Ok` (it starts
    /// with `-`); only I/O failures are errors.
    pub async fn command(&self, args: &[&str]) -> Result<String> {
        let addr = self.addr();
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        blocking(move || resp::command(addr, &args, COMMAND_TIMEOUT)).await
    }

    /// [`Self::command`], blocking the calling thread.
    pub fn command_blocking(&self, args: &[&str]) -> Result<String> {
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        resp::command(self.addr(), &args, COMMAND_TIMEOUT)
    }
}

impl Deref for RedisServer {
    type Target = ServerProcess;

    fn deref(&self) -> &ServerProcess {
        &self.process
    }
}

/// `redis-server` arguments for TLS on a second port; clients need no certificate.
fn tls_args(tls: &RedisServerTls) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--tls-port".into(), tls.port.to_string().into()];
    for (option, path) in [
        ("--tls-cert-file", &tls.files.server_cert),
        ("--tls-key-file", &tls.files.server_key),
        ("--tls-ca-cert-file", &tls.files.ca_cert),
    ] {
        args.push(option.into());
        args.push(path.into());
    }
    args.extend(["--tls-auth-clients".into(), "no".into()]);
    args
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// `true` once the server answers PING with PONG (not `-LOADING`).
fn ping(addr: SocketAddr) -> bool {
    resp::command(addr, &["PING".to_owned()], Duration::from_millis(250))
        .is_ok_and(|reply| reply == "+PONG\r\n")
}

//! PostgreSQL as a child process.
//!
//! `initdb` and `postgres` refuse to run as root, so both run as the
//! `postgres` user through `setpriv --reuid`. `initdb` runs once per test
//! process into a template directory; every server starts from a copy.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tempfile::TempDir;

use super::error::{HarnessError, Result, ResultExt};
use super::process::{Launch, ServerProcess};
use super::{binaries, blocking, ports, retry_addr_in_use, tempdirs};

/// The OS user the servers run as.
pub(super) const PG_USER: &str = "postgres";
/// How long a server may take to accept connections (crash recovery
/// included).
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// How to start a [`PostgresServer`].
#[derive(Debug, Clone, Default)]
pub struct PostgresServerOptions {
    /// `fsync=on` and `full_page_writes=on` (the default is off, for speed).
    ///
    /// Either way `synchronous_commit` stays on, so a committed transaction
    /// survives a SIGKILL of the server: its WAL was written to the kernel
    /// before the commit returned. `durable` matters only for a crash of the
    /// whole machine.
    pub durable: bool,
    /// A fixed port instead of a free one.
    pub port: Option<u16>,
    /// More settings, passed as `-c NAME=VALUE`.
    pub settings: Vec<(String, String)>,
}

/// A PostgreSQL server on 127.0.0.1 (user `postgres`, database `postgres`,
/// `trust` authentication); see [`ServerProcess`] for
/// kill/restart/pause/resume (reachable through `Deref`).
#[derive(Debug)]
pub struct PostgresServer {
    process: ServerProcess,
    port: u16,
    psql: PathBuf,
}

pub(super) struct Binaries {
    pub(super) postgres: PathBuf,
    initdb: PathBuf,
    pg_isready: PathBuf,
    psql: PathBuf,
}

pub(super) fn binaries() -> Result<Binaries> {
    let postgres = binaries::find("postgres")?;
    Ok(Binaries {
        initdb: binaries::find_sibling("initdb", &postgres)?,
        pg_isready: binaries::find_sibling("pg_isready", &postgres)?,
        psql: binaries::find_sibling("psql", &postgres)?,
        postgres,
    })
}

impl PostgresServer {
    /// Start a server and wait until it accepts connections.
    pub async fn start(options: PostgresServerOptions) -> Result<Self> {
        blocking(move || Self::start_blocking(options)).await
    }

    /// [`Self::start`], blocking the calling thread.
    pub fn start_blocking(options: PostgresServerOptions) -> Result<Self> {
        let bins = binaries()?;
        let template = template(&bins.initdb)?;
        retry_addr_in_use(|| {
            Self::launch(&bins, &options, |data| {
                run(Command::new("cp")
                    .arg("-a")
                    .arg(template.join("data"))
                    .arg(data))
                .map(drop)
            })
        })
    }

    /// Start a server in a new directory whose `data/` is made by `make_data` (running as root,
    /// in a directory owned by `postgres`), and wait until it accepts connections.
    pub(super) fn launch(
        bins: &Binaries,
        options: &PostgresServerOptions,
        make_data: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<Self> {
        let (uid, gid) = pg_user()?;
        let port = match options.port {
            Some(port) => port,
            None => ports::free_port()?,
        };
        let dir = tempdirs::server_dir("postgres")?;
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
            .ctx(|| format!("chown {} to {PG_USER}", dir.path().display()))?;
        let data = dir.path().join("data");
        make_data(&data)?;

        let on_off = |on: bool| if on { "on" } else { "off" };
        let mut settings: Vec<(String, String)> = [
            ("listen_addresses", "127.0.0.1"),
            ("fsync", on_off(options.durable)),
            ("full_page_writes", on_off(options.durable)),
            ("dynamic_shared_memory_type", "mmap"),
            ("max_connections", "200"),
            ("logging_collector", "off"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        settings.extend(options.settings.iter().cloned());
        let mut args: Vec<OsString> = vec![
            "-D".into(),
            data.into(),
            "-p".into(),
            port.to_string().into(),
            "-k".into(),
            dir.path().into(),
        ];
        for (name, value) in settings {
            args.push("-c".into());
            args.push(format!("{name}={value}").into());
        }
        let pg_isready = bins.pg_isready.clone();
        let process = ServerProcess::new(
            "postgres",
            dir,
            Launch {
                program: bins.postgres.clone(),
                args,
                run_as: Some(PG_USER.to_owned()),
            },
            Arc::new(move || is_ready(&pg_isready, port)),
            READY_TIMEOUT,
        );
        process.start_blocking()?;
        Ok(Self {
            process,
            port,
            psql: bins.psql.clone(),
        })
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/postgres", self.port)
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> PathBuf {
        self.process.dir().join("data")
    }

    /// Run `sql` with `psql` (`-At`, stop on the first error) and return its
    /// output: one line per row, columns separated by `|`.
    pub async fn psql(&self, sql: &str) -> Result<String> {
        let (psql, port, sql) = (self.psql.clone(), self.port, sql.to_owned());
        blocking(move || run_psql(&psql, port, &sql)).await
    }

    /// [`Self::psql`], blocking the calling thread.
    pub fn psql_blocking(&self, sql: &str) -> Result<String> {
        run_psql(&self.psql, self.port, sql)
    }
}

impl Deref for PostgresServer {
    type Target = ServerProcess;

    fn deref(&self) -> &ServerProcess {
        &self.process
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // Kill first, so the segment is no longer attached; `ServerProcess`'s
        // own drop then finds nothing to kill and removes the directory.
        let _ = self.process.kill();
        remove_stale_shared_memory(&self.data_dir());
    }
}

fn run_psql(psql: &Path, port: u16, sql: &str) -> Result<String> {
    run(Command::new(psql)
        .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", "127.0.0.1", "-U", PG_USER, "-d", "postgres"])
        .arg("-p")
        .arg(port.to_string())
        .arg("-c")
        .arg(sql))
}

fn is_ready(pg_isready: &Path, port: u16) -> bool {
    Command::new(pg_isready)
        .args(["-q", "-t", "1", "-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The uid and gid of the `postgres` user.
pub(super) fn pg_user() -> Result<(u32, u32)> {
    let user = nix::unistd::User::from_name(PG_USER)
        .ctx(|| format!("look up user {PG_USER}"))?
        .ok_or_else(|| {
            HarnessError::new(format!(
                "user `{PG_USER}` does not exist; install the Debian package `postgresql-15`, \
                 which creates it"
            ))
        })?;
    Ok((user.uid.as_raw(), user.gid.as_raw()))
}

/// The directory holding `data/`, made by `initdb` once per process.
fn template(initdb: &Path) -> Result<PathBuf> {
    static TEMPLATE: OnceLock<Result<TempDir, HarnessError>> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let (uid, gid) = pg_user()?;
            let dir = tempdirs::server_dir("postgres-template")?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .ctx(|| format!("chown {} to {PG_USER}", dir.path().display()))?;
            run(Command::new(binaries::find("setpriv")?)
                .arg(format!("--reuid={PG_USER}"))
                .arg(format!("--regid={PG_USER}"))
                .arg("--init-groups")
                .arg("--")
                .arg(initdb)
                .args(["--no-sync", "-A", "trust", "-U", PG_USER, "-E", "UTF8"])
                .args(["--locale=C", "-D"])
                .arg(dir.path().join("data"))
                .current_dir(dir.path()))
            .map_err(|e| e.context("initdb"))?;
            Ok(dir)
        })
        .as_ref()
        .map(|dir| dir.path().to_path_buf())
        .map_err(Clone::clone)
}

/// Run a command to completion; its stdout, or an error with its stderr.
pub(super) fn run(command: &mut Command) -> Result<String> {
    let what = format!("{:?}", command.get_program());
    let output = command
        .stdin(Stdio::null())
        .output()
        .ctx(|| format!("run {what}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(HarnessError::new(format!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        )))
    }
}

/// Remove the System V shared memory segment a killed postmaster left
/// (its key and id are on line 7 of `postmaster.pid`), if nothing is
/// attached to it any more. PostgreSQL reuses it itself on restart; this is
/// for servers that are gone for good.
pub(crate) fn remove_stale_shared_memory(data_dir: &Path) {
    let Ok(pid_file) = std::fs::read_to_string(data_dir.join("postmaster.pid")) else {
        return;
    };
    let Some((key, id)) = pid_file.lines().nth(6).and_then(|line| {
        let mut fields = line.split_whitespace();
        Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
    }) else {
        return;
    };
    let Ok(segments) = std::fs::read_to_string("/proc/sysvipc/shm") else {
        return;
    };
    // Columns: key shmid perms size cpid lpid nattch …
    let unused = segments.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        f.first() == Some(&key.as_str()) && f.get(1) == Some(&id.as_str()) && f.get(6) == Some(&"0")
    });
    if unused {
        let _ = Command::new("ipcrm")
            .args(["-m", &id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

//! `pgbouncer` as a child process: the connection pooler most PostgreSQL clients reach the
//! server through.
//!
//! Debian's package (1.18 on Debian 12) is the one users get from `apt`; the harness runs it
//! the way it is usually deployed in front of an application: **transaction mode**, few server
//! connections shared by many clients. Like `postgres`, `pgbouncer` refuses to run as root, so
//! it runs as the `postgres` user through `setpriv --reuid`.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use super::error::{Result, ResultExt};
use super::postgres::{PG_USER, pg_user, run};
use super::process::{Launch, ServerProcess};
use super::{binaries, blocking, ports, retry_addr_in_use, tempdirs};

/// How long pgbouncer may take to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How to start a [`PgBouncer`]. The default is the deployment the store must survive:
/// `pool_mode = transaction`, `default_pool_size = 2`, and
/// `ignore_startup_parameters = extra_float_digits`.
#[derive(Debug, Clone)]
pub struct PgBouncerOptions {
    /// `session`, `transaction` or `statement`.
    pub pool_mode: String,
    /// Server connections per database and user: keep it below the number of clients so that
    /// clients share server connections.
    pub default_pool_size: u32,
    /// Startup parameters pgbouncer accepts and ignores. Without `extra_float_digits`, clients
    /// that send it (sqlx and JDBC do by default) are refused with "unsupported startup
    /// parameter"; empty tests a pooler configured with nothing at all.
    pub ignore_startup_parameters: Vec<String>,
    /// More `[pgbouncer]` settings, written as `NAME = VALUE`.
    pub settings: Vec<(String, String)>,
}

impl Default for PgBouncerOptions {
    fn default() -> Self {
        Self {
            pool_mode: "transaction".to_owned(),
            default_pool_size: 2,
            ignore_startup_parameters: vec!["extra_float_digits".to_owned()],
            settings: Vec::new(),
        }
    }
}

/// A `pgbouncer` child process on 127.0.0.1 in front of one PostgreSQL server, serving every
/// database of that server (`* =` fallback), user `postgres` with `trust` authentication; see
/// [`ServerProcess`] for kill/restart/pause/resume (reachable through `Deref`).
#[derive(Debug)]
pub struct PgBouncer {
    process: ServerProcess,
    port: u16,
    upstream: SocketAddr,
    psql: PathBuf,
}

impl PgBouncer {
    /// Start pgbouncer in front of the PostgreSQL server at `upstream` (a harness
    /// [`super::PostgresServer`]'s `addr()`, or a [`super::TcpProxy`] in front of one) and wait
    /// until it listens.
    pub async fn start(upstream: SocketAddr, options: PgBouncerOptions) -> Result<Self> {
        blocking(move || Self::start_blocking(upstream, &options)).await
    }

    /// [`Self::start`], blocking the calling thread.
    pub fn start_blocking(upstream: SocketAddr, options: &PgBouncerOptions) -> Result<Self> {
        let program = binaries::find("pgbouncer")?;
        let postgres = binaries::find("postgres")?;
        let psql = binaries::find_sibling("psql", &postgres)?;
        let (uid, gid) = pg_user()?;
        retry_addr_in_use(|| {
            let port = ports::free_port()?;
            let dir = tempdirs::server_dir("pgbouncer")?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .ctx(|| format!("chown {} to {PG_USER}", dir.path().display()))?;
            let ini = write_config(dir.path(), port, upstream, options)?;
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let process = ServerProcess::new(
                "pgbouncer",
                dir,
                Launch {
                    program: program.clone(),
                    args: vec![OsString::from(ini)],
                    run_as: Some(PG_USER.to_owned()),
                },
                Arc::new(move || {
                    TcpStream::connect_timeout(&addr, Duration::from_millis(250)).is_ok()
                }),
                READY_TIMEOUT,
            );
            process.start_blocking()?;
            Ok(Self {
                process,
                port,
                upstream,
                psql: psql.clone(),
            })
        })
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Where pgbouncer opens its server connections.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/postgres", self.port)
    }

    /// Run a command on pgbouncer's admin console (database `pgbouncer`), e.g. `SHOW SERVERS`,
    /// and return its rows as `psql -At` prints them (columns separated by `|`).
    pub async fn admin(&self, command: &str) -> Result<String> {
        let (psql, port, command) = (self.psql.clone(), self.port, command.to_owned());
        blocking(move || admin(&psql, port, &command)).await
    }
}

impl Deref for PgBouncer {
    type Target = ServerProcess;

    fn deref(&self) -> &ServerProcess {
        &self.process
    }
}

/// Writes `pgbouncer.ini` and its `userlist.txt` into `dir`; returns the ini's path.
fn write_config(
    dir: &Path,
    port: u16,
    upstream: SocketAddr,
    options: &PgBouncerOptions,
) -> Result<PathBuf> {
    // `trust` still requires the user to be listed in the auth file.
    let users = dir.join("userlist.txt");
    std::fs::write(&users, format!("\"{PG_USER}\" \"\"\n"))
        .ctx(|| format!("write {}", users.display()))?;
    let mut ini = format!(
        "[databases]\n* = host={} port={}\n\n[pgbouncer]\n",
        upstream.ip(),
        upstream.port()
    );
    let settings = [
        ("listen_addr", "127.0.0.1".to_owned()),
        ("listen_port", port.to_string()),
        // No Unix socket: two harness poolers must not share /tmp/.s.PGSQL.<port>.
        ("unix_socket_dir", String::new()),
        ("auth_type", "trust".to_owned()),
        ("auth_file", users.display().to_string()),
        ("admin_users", PG_USER.to_owned()),
        ("pool_mode", options.pool_mode.clone()),
        ("default_pool_size", options.default_pool_size.to_string()),
        ("max_client_conn", "1000".to_owned()),
        (
            "ignore_startup_parameters",
            options.ignore_startup_parameters.join(","),
        ),
        // Retry a failed server login after 1 s, not 15 s: tests restart and fail over servers.
        ("server_login_retry", "1".to_owned()),
    ];
    let extra = options
        .settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()));
    for (name, value) in settings.into_iter().chain(extra) {
        let _ = writeln!(ini, "{name} = {value}");
    }
    let path = dir.join("pgbouncer.ini");
    std::fs::write(&path, ini).ctx(|| format!("write {}", path.display()))?;
    Ok(path)
}

fn admin(psql: &Path, port: u16, command: &str) -> Result<String> {
    run(Command::new(psql)
        .args(["-X", "-A", "-t", "-q"])
        .args(["-h", "127.0.0.1", "-U", PG_USER, "-d", "pgbouncer"])
        .arg("-p")
        .arg(port.to_string())
        .arg("-c")
        .arg(command))
}

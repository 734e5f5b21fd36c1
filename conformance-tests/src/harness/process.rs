//! [`ServerProcess`]: one server child process, its temporary directory and
//! its log, shared by every server kind.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tempfile::TempDir;

use super::binaries;
use super::blocking;
use super::error::{HarnessError, Result, ResultExt};
use super::spawner;
use super::tempdirs::{stat_pgrp, stat_ppid, stat_state};

/// How long to wait for a killed server's process group to disappear.
const GONE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often readiness is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How many times a restart retries when its (fixed) port is still taken.
const RESTART_ADDR_IN_USE_RETRIES: u32 = 20;
/// Lines of log shown in errors.
const LOG_TAIL_LINES: usize = 40;

/// A blocking readiness check: `true` once the server answers.
pub(crate) type Probe = Arc<dyn Fn() -> bool + Send + Sync>;

/// What to execute: `program args…`, optionally as another user.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    /// The server binary.
    pub(crate) program: PathBuf,
    /// Its arguments.
    pub(crate) args: Vec<OsString>,
    /// Run as this user (and its group) instead of root.
    pub(crate) run_as: Option<String>,
}

struct Inner {
    name: String,
    launch: Launch,
    probe: Probe,
    dir: PathBuf,
    log_path: PathBuf,
    ready_timeout: Duration,
    child: Mutex<Option<Child>>,
    starts: AtomicU32,
}

/// A server running as a child process of the test process.
///
/// The server runs in its own process group; signals go to that group and to
/// every descendant of the server (PostgreSQL backends leave the group with
/// `setsid()`, and must be killed, stopped and continued with the
/// postmaster). It runs in a temporary directory that holds its data and its log
/// (stdout and stderr, appended across restarts).
///
/// Dropping the handle kills the server with SIGKILL, reaps it and removes
/// the directory; this also happens when a test panics. If the test process
/// itself dies, the kernel kills the server (`setpriv --pdeathsig KILL`).
pub struct ServerProcess {
    inner: Arc<Inner>,
    /// Declared last: removed after `Drop::drop` killed the server.
    dir: TempDir,
}

impl std::fmt::Debug for ServerProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerProcess")
            .field("name", &self.inner.name)
            .field("pid", &self.pid())
            .field("dir", &self.inner.dir)
            .finish()
    }
}

impl ServerProcess {
    /// A server not started yet.
    pub(crate) fn new(
        name: &str,
        dir: TempDir,
        launch: Launch,
        probe: Probe,
        ready_timeout: Duration,
    ) -> Self {
        let dir_path = dir.path().to_path_buf();
        let inner = Inner {
            name: name.to_owned(),
            launch,
            probe,
            log_path: dir_path.join("server.log"),
            dir: dir_path,
            ready_timeout,
            child: Mutex::new(None),
            starts: AtomicU32::new(0),
        };
        Self {
            inner: Arc::new(inner),
            dir,
        }
    }

    /// Start the server and wait until it is ready (blocking).
    pub(crate) fn start_blocking(&self) -> Result<()> {
        let offset = self.inner.launch()?;
        self.inner.wait_ready(offset)
    }

    /// Spawn the server without waiting; returns the log offset for
    /// [`Self::poll_ready`].
    pub(crate) fn launch(&self) -> Result<u64> {
        self.inner.launch()
    }

    /// One readiness check: `Ok(true)` when ready, an error (with the log
    /// tail) if the server exited.
    pub(crate) fn poll_ready(&self, log_offset: u64) -> Result<bool> {
        self.inner.poll_ready(log_offset)
    }

    /// The server's name (its binary), as used in messages.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The process id of the running server (which is also its process
    /// group id; for PostgreSQL, the postmaster), or `None` after [`Self::kill`].
    pub fn pid(&self) -> Option<u32> {
        self.inner.lock().as_ref().map(Child::id)
    }

    /// Whether the server process exists (it may be paused).
    pub fn is_running(&self) -> bool {
        let mut child = self.inner.lock();
        match child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The server's temporary directory (data and log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log file (stdout and stderr of every run).
    pub fn log_path(&self) -> &Path {
        &self.inner.log_path
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        self.inner.log_tail(0)
    }

    /// SIGKILL the server and all its descendants at once (like a crash),
    /// reap it, and wait until every one of them is gone. Killing a server that is not running
    /// is a no-op. The data directory is kept for [`Self::restart`].
    pub fn kill(&self) -> Result<()> {
        self.inner.kill()
    }

    /// SIGSTOP the server and its descendants: it stops answering but keeps its
    /// connections open, like a long GC pause or a frozen VM.
    pub fn pause(&self) -> Result<()> {
        self.inner.signal(Signal::SIGSTOP)
    }

    /// SIGCONT the server and its descendants after [`Self::pause`].
    pub fn resume(&self) -> Result<()> {
        self.inner.signal(Signal::SIGCONT)
    }

    /// Start the server again on the same port(s) with the same data
    /// directory, killing it first if it is still running, and wait until it
    /// is ready.
    pub async fn restart(&self) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.restart()).await
    }

    /// [`Self::restart`], blocking the calling thread.
    pub fn restart_blocking(&self) -> Result<()> {
        self.inner.restart()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Err(e) = self.inner.kill() {
            tracing::warn!("dropping {}: {e}", self.inner.name);
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn launch(&self) -> Result<u64> {
        let mut guard = self.lock();
        if guard.is_some() {
            return Err(HarnessError::new(format!(
                "{} is already running",
                self.name
            )));
        }
        let setpriv = binaries::find("setpriv")?;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .ctx(|| format!("open {}", self.log_path.display()))?;
        let start = self.starts.fetch_add(1, Ordering::Relaxed) + 1;
        writeln!(
            log,
            "==== fencelock harness: start #{start} of {} ====",
            self.name
        )
        .ctx(|| format!("write {}", self.log_path.display()))?;
        let offset = log
            .metadata()
            .ctx(|| format!("stat {}", self.log_path.display()))?
            .len();
        let stderr = log
            .try_clone()
            .ctx(|| format!("dup {}", self.log_path.display()))?;

        let mut command = Command::new(setpriv);
        if let Some(user) = &self.launch.run_as {
            command
                .arg(format!("--reuid={user}"))
                .arg(format!("--regid={user}"))
                .arg("--init-groups");
        }
        command
            .args(["--pdeathsig", "KILL", "--"])
            .arg(&self.launch.program)
            .args(&self.launch.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .process_group(0);
        let child = spawner::spawn(command).map_err(|e| e.context(&self.name))?;
        *guard = Some(child);
        Ok(offset)
    }

    fn poll_ready(&self, log_offset: u64) -> Result<bool> {
        {
            let mut guard = self.lock();
            let Some(child) = guard.as_mut() else {
                return Err(HarnessError::new(format!(
                    "{} was killed before it became ready",
                    self.name
                )));
            };
            if let Some(status) = child.try_wait().ctx(|| format!("wait for {}", self.name))? {
                let pid = child.id();
                *guard = None;
                drop(guard);
                let tree = signal_tree(pid, Signal::SIGKILL);
                let _ = wait_gone(pid, &tree, GONE_TIMEOUT);
                let tail = self.log_tail(log_offset);
                let message = format!(
                    "{} exited during startup ({status}); log {}:\n{tail}",
                    self.name,
                    self.log_path.display()
                );
                return Err(if tail.to_lowercase().contains("address already in use") {
                    HarnessError::addr_in_use(message)
                } else {
                    HarnessError::new(message)
                });
            }
        }
        Ok((self.probe)())
    }

    fn wait_ready(&self, log_offset: u64) -> Result<()> {
        let deadline = Instant::now() + self.ready_timeout;
        loop {
            if self.poll_ready(log_offset)? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = self.kill();
                return Err(HarnessError::new(format!(
                    "{} not ready after {:?}; log {}:\n{}",
                    self.name,
                    self.ready_timeout,
                    self.log_path.display(),
                    self.log_tail(log_offset)
                )));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn restart(&self) -> Result<()> {
        self.kill()?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let offset = self.launch()?;
            match self.wait_ready(offset) {
                Err(e) if e.is_addr_in_use() && attempt < RESTART_ADDR_IN_USE_RETRIES => {
                    std::thread::sleep(Duration::from_millis(150));
                }
                other => return other,
            }
        }
    }

    fn kill(&self) -> Result<()> {
        let Some(mut child) = self.lock().take() else {
            return Ok(());
        };
        let pid = child.id();
        // Freeze the tree first (twice: to catch a fork racing the first
        // listing), so nothing forks or exits while it is listed, then kill
        // all of it at once, like a crash.
        signal_tree(pid, Signal::SIGSTOP);
        signal_tree(pid, Signal::SIGSTOP);
        let tree = signal_tree(pid, Signal::SIGKILL);
        let _ = child.kill();
        child
            .wait()
            .ctx(|| format!("reap {} (pid {pid})", self.name))?;
        wait_gone(pid, &tree, GONE_TIMEOUT).map_err(|e| e.context(&self.name))
    }

    fn signal(&self, signal: Signal) -> Result<()> {
        let pid = self.lock().as_ref().map(Child::id).ok_or_else(|| {
            HarnessError::new(format!("{} is not running, cannot {signal}", self.name))
        })?;
        signal_tree(pid, signal);
        if signal == Signal::SIGSTOP {
            // Again, for a child forked while the first listing was made.
            signal_tree(pid, signal);
        }
        Ok(())
    }

    fn log_tail(&self, offset: u64) -> String {
        log_tail(&self.log_path, offset, LOG_TAIL_LINES)
    }
}

/// Send `signal` to the process group of `root` (the server runs in its own
/// group) and to every descendant of `root`: PostgreSQL backends call
/// `setsid()`, so they are in groups of their own. Returns the descendants.
fn signal_tree(root: u32, signal: Signal) -> Vec<u32> {
    // List first: once the root is dead its children are orphans, no longer
    // findable as its descendants.
    let tree = descendants(root);
    if let Ok(pgid) = i32::try_from(root) {
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
    for &pid in &tree {
        if let Ok(pid) = i32::try_from(pid) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }
    tree
}

/// Every process whose parent chain leads to `root`.
fn descendants(root: u32) -> Vec<u32> {
    let processes = processes();
    let mut tree = Vec::new();
    let mut parents = vec![root];
    while let Some(parent) = parents.pop() {
        for p in processes.iter().filter(|p| p.ppid == parent) {
            if !tree.contains(&p.pid) {
                tree.push(p.pid);
                parents.push(p.pid);
            }
        }
    }
    tree
}

struct ProcInfo {
    pid: u32,
    ppid: u32,
    pgrp: i32,
    live: bool,
}

/// All processes, from `/proc`.
fn processes() -> Vec<ProcInfo> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some(ProcInfo {
                pid,
                ppid: stat_ppid(&stat)?,
                pgrp: stat_pgrp(&stat)?,
                live: !matches!(stat_state(&stat), Some('Z' | 'X') | None),
            })
        })
        .collect()
}

/// Wait until no live (non-zombie) process is left in the process group
/// `pgid` or among `pids`. Zombies are ignored: orphans are reparented to
/// init, which may never reap them, and they hold no ports, files or shared
/// memory.
fn wait_gone(pgid: u32, pids: &[u32], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let pgid_i32 = i32::try_from(pgid).unwrap_or(-1);
    loop {
        let left: Vec<u32> = processes()
            .into_iter()
            .filter(|p| p.live && (p.pgrp == pgid_i32 || pids.contains(&p.pid)))
            .map(|p| p.pid)
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(HarnessError::new(format!(
                "processes {left:?} of server {pgid} still alive {timeout:?} after SIGKILL"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The last `lines` lines of the file at `path`, from byte `offset` on.
pub(crate) fn log_tail(path: &Path, offset: u64, lines: usize) -> String {
    let mut text = String::new();
    let read = std::fs::File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(offset))?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        text = String::from_utf8_lossy(&bytes).into_owned();
        Ok(())
    });
    if let Err(e) = read {
        return format!("(cannot read log {}: {e})", path.display());
    }
    let all: Vec<&str> = text.lines().collect();
    let skip = all.len().saturating_sub(lines);
    all[skip..].join("\n")
}

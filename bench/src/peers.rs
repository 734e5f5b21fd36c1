//! Peer libraries, run as subprocesses against the same Redis: the `rslock` crate (its own
//! cargo project, out of the main workspace's dependency graph) and redis-py's `Lock` and
//! `python-redis-lock` from a venv this harness creates. Each prints one JSON object.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Deserialize;
use tokio::process::Command;

use crate::error::{BenchError, Result};

/// The repository root (the bench crate's parent).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn peers_dir() -> PathBuf {
    repo_root().join("bench").join("peers")
}

/// One peer: a program and the arguments before the subcommand.
#[derive(Clone, Debug)]
pub struct Peer {
    /// Name in the report.
    pub name: String,
    program: PathBuf,
    prefix: Vec<String>,
}

/// What a peer prints.
#[derive(Clone, Debug, Deserialize)]
pub struct PeerOutput {
    /// Library name and version.
    pub library: String,
    /// One sample per cycle or hand-off, in microseconds.
    pub samples_us: Vec<f64>,
    /// Length of a hand-off run.
    pub elapsed_secs: Option<f64>,
    /// Grants while another waiter held the lock, in a hand-off run (must be 0).
    #[serde(default)]
    pub overlaps: u64,
}

impl Peer {
    /// The program run (with the arguments before the subcommand).
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Runs `args` and parses the JSON line it prints.
    pub async fn run(&self, args: &[String]) -> Result<PeerOutput> {
        let output = Command::new(&self.program)
            .args(&self.prefix)
            .args(args)
            .current_dir(peers_dir())
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .await
            .map_err(|e| BenchError::from(e).context(format!("starting peer {}", self.name)))?;
        if !output.status.success() {
            return Err(BenchError::new(format!(
                "peer {} failed ({}) for {args:?}",
                self.name, output.status
            )));
        }
        serde_json::from_slice(&output.stdout)
            .map_err(|e| BenchError::from(e).context(format!("reading peer {}'s JSON", self.name)))
    }

    /// `uncontended --url … --iterations … --warmup …`.
    pub async fn uncontended(
        &self,
        url: &str,
        iterations: usize,
        warmup: usize,
    ) -> Result<PeerOutput> {
        self.run(&[
            "uncontended".into(),
            "--url".into(),
            url.into(),
            "--iterations".into(),
            iterations.to_string(),
            "--warmup".into(),
            warmup.to_string(),
        ])
        .await
    }

    /// `handoff --url … --waiters … --secs … --max-handoffs …`.
    pub async fn handoff(
        &self,
        url: &str,
        waiters: usize,
        secs: f64,
        max: usize,
    ) -> Result<PeerOutput> {
        self.run(&[
            "handoff".into(),
            "--url".into(),
            url.into(),
            "--waiters".into(),
            waiters.to_string(),
            "--secs".into(),
            secs.to_string(),
            "--max-handoffs".into(),
            max.to_string(),
        ])
        .await
    }
}

async fn check(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .await
        .map_err(|e| BenchError::from(e).context(what))?;
    if status.success() {
        Ok(())
    } else {
        Err(BenchError::new(format!("{what} failed ({status})")))
    }
}

/// Creates the venv if missing and installs `bench/peers/requirements.txt` into it; returns its
/// python.
pub async fn prepare_venv(venv: &Path) -> Result<PathBuf> {
    let venv = if venv.is_absolute() {
        venv.to_path_buf()
    } else {
        repo_root().join(venv)
    };
    let python = venv.join("bin").join("python");
    if !python.exists() {
        eprintln!("creating the Python venv {}", venv.display());
        check(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            "python3 -m venv (install python3-venv)",
        )
        .await?;
    }
    // Pinned versions already installed are "already satisfied" without touching the network.
    let requirements = peers_dir().join("requirements.txt");
    check(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements),
        "pip install -r bench/peers/requirements.txt",
    )
    .await?;
    Ok(python)
}

/// Builds the rslock peer in release mode; returns its binary.
pub async fn build_rslock(target_dir: Option<&Path>) -> Result<PathBuf> {
    let manifest = peers_dir().join("rslock-peer").join("Cargo.toml");
    let target = match target_dir {
        Some(dir) => dir.to_path_buf(),
        None => match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => PathBuf::from(dir).join("rslock-peer"),
            None => peers_dir().join("rslock-peer").join("target"),
        },
    };
    eprintln!("building the rslock peer");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    check(
        Command::new(cargo)
            .args([
                "build",
                "--release",
                "--quiet",
                "--locked",
                "--manifest-path",
            ])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target),
        "cargo build of bench/peers/rslock-peer",
    )
    .await?;
    Ok(target.join("release").join("rslock-peer"))
}

/// The three peers, ready to run.
pub async fn prepare(venv: &Path, target_dir: Option<&Path>) -> Result<Vec<Peer>> {
    let rslock = build_rslock(target_dir).await?;
    let python = prepare_venv(venv).await?;
    let script = |file: &str| vec![peers_dir().join(file).display().to_string()];
    Ok(vec![
        Peer {
            name: "rslock".into(),
            program: rslock,
            prefix: vec![],
        },
        Peer {
            name: "redis-py Lock".into(),
            program: python.clone(),
            prefix: script("redis_py_lock.py"),
        },
        Peer {
            name: "python-redis-lock".into(),
            program: python,
            prefix: script("python_redis_lock.py"),
        },
    ])
}

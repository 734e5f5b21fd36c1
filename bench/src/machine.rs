//! The machine a run happened on, for the report.

use serde::{Deserialize, Serialize};

/// What the report says about the machine.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Machine {
    /// Cores available to this process.
    pub nproc: usize,
    /// `/proc/cpuinfo` model name.
    pub cpu: String,
    /// Total memory.
    pub memory: String,
    /// Kernel release.
    pub kernel: String,
    /// Distribution.
    pub os: String,
    /// The compiler the harness was built with.
    pub rustc: String,
    /// When the run started (UTC).
    pub date: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn command(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// The 1, 5 and 15 minute load averages.
pub fn load() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The 1-minute load average.
pub fn load1() -> f64 {
    read("/proc/loadavg")
        .split_whitespace()
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or(0.0)
}

impl Machine {
    /// Describes this machine.
    pub fn describe() -> Self {
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_default();
        let memory = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or_else(String::new, |kib| {
                format!("{:.1} GiB", kib / 1024.0 / 1024.0)
            });
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_default();
        Self {
            nproc: std::thread::available_parallelism().map_or(0, usize::from),
            cpu,
            memory,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            os,
            rustc: command("rustc", &["--version"]),
            date: command("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        }
    }
}

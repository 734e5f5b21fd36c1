//! Peer: the `rslock` crate (Redlock over one Redis: `SET NX PX` to lock, a Lua script to
//! unlock; a blocked `acquire` retries `lock`, which retries 3 times with a random 0–200 ms
//! delay, its defaults). Follows the protocol of `bench/peers/peer_common.py` and prints one JSON
//! object: `{"library", "samples_us", "elapsed_secs"}`.
//!
//! ```text
//! rslock-peer uncontended --url redis://… --iterations N --warmup W
//! rslock-peer handoff --url redis://… --waiters 16 --secs 5 --max-handoffs 2000
//! rslock-peer throughput --url redis://… --tasks 64 --secs 2
//! ```
//!
//! `throughput` (the cost-per-cycle benchmark) prints `ready` on a line of its own once warmed
//! up, then runs `--tasks` loops of `lock` + `unlock`, each on its own name, for `--secs`, and
//! prints `{"library", "cycles", "elapsed_secs", "cpu_secs"}`: the process's own CPU (user +
//! system, `getrusage`) over that window.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rslock::LockManager;
use tokio::sync::watch;

const TTL: Duration = Duration::from_secs(10);
/// How long each holder keeps the lock in the hand-off run (as in `peer_common.py`).
const HOLD: Duration = Duration::from_millis(5);

type Error = Box<dyn std::error::Error + Send + Sync>;

fn flags(args: &[String]) -> HashMap<String, String> {
    args.chunks(2)
        .filter_map(|pair| match pair {
            [k, v] => Some((k.trim_start_matches("--").to_owned(), v.clone())),
            _ => None,
        })
        .collect()
}

fn flag<T: std::str::FromStr>(flags: &HashMap<String, String>, name: &str) -> Result<T, Error> {
    flags
        .get(name)
        .ok_or_else(|| format!("missing --{name}"))?
        .parse()
        .map_err(|_| format!("bad --{name}").into())
}

fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}-{nanos:x}", std::process::id())
}

async fn uncontended(lm: &LockManager, iterations: usize, warmup: usize) -> Result<Vec<f64>, Error> {
    let prefix = format!("bench/rslock/{}", unique());
    for i in 0..warmup {
        let lock = lm.lock(format!("{prefix}/w/{i}").as_bytes(), TTL).await?;
        lm.unlock(&lock).await;
    }
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let name = format!("{prefix}/{i}");
        let started = Instant::now();
        let lock = lm.lock(name.as_bytes(), TTL).await?;
        lm.unlock(&lock).await;
        samples.push(started.elapsed().as_secs_f64() * 1e6);
    }
    Ok(samples)
}

/// CPU seconds (user + system) this process used so far.
fn cpu_secs() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return f64::NAN;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// `tasks` loops of `lock` + `unlock` (each on its own name) for `secs`: (cycles, elapsed, CPU).
async fn throughput(lm: &LockManager, tasks: usize, secs: f64) -> Result<(u64, f64, f64), Error> {
    let prefix = format!("bench/rslock-tp/{}", unique());
    let run = |window: Duration| {
        let stop = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = (0..tasks)
            .map(|task| {
                let (lm, stop, name) = (lm.clone(), stop.clone(), format!("{prefix}/{task}"));
                tokio::spawn(async move {
                    let mut cycles = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let lock = lm.lock(name.as_bytes(), TTL).await?;
                        lm.unlock(&lock).await;
                        cycles += 1;
                    }
                    Ok::<u64, rslock::LockError>(cycles)
                })
            })
            .collect();
        async move {
            let (cpu, started) = (cpu_secs(), Instant::now());
            tokio::time::sleep(window).await;
            stop.store(true, Ordering::Relaxed);
            let mut cycles = 0;
            for handle in handles {
                cycles += handle.await??;
            }
            Ok::<_, Error>((cycles, started.elapsed().as_secs_f64(), cpu_secs() - cpu))
        }
    };
    run(Duration::from_millis(200)).await?;
    println!("ready");
    run(Duration::from_secs_f64(secs)).await
}

enum Event {
    Granted(Instant),
    Releasing(Instant),
}

async fn handoff(
    lm: &LockManager,
    waiters: usize,
    secs: f64,
    max: usize,
) -> Result<(Vec<f64>, f64, u64), Error> {
    let name = format!("bench/rslock-handoff/{}", unique());
    let limit = max as u64 + 1;
    let events = Arc::new(Mutex::new(Vec::new()));
    let grants = Arc::new(watch::Sender::new(0u64));
    // Mutual exclusion, checked: a grant while another task holds the lock is an overlap.
    let holding = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..waiters {
        let (lm, name, events, grants) = (lm.clone(), name.clone(), events.clone(), grants.clone());
        let (holding, overlaps) = (holding.clone(), overlaps.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = grants.subscribe();
            loop {
                let lock = lm.acquire_no_guard(name.as_bytes(), TTL).await?;
                let at = Instant::now();
                if holding.swap(true, Ordering::SeqCst) {
                    overlaps.fetch_add(1, Ordering::Relaxed);
                }
                let mut mine = 0;
                grants.send_modify(|n| {
                    if *n < limit {
                        events.lock().map(|mut e| e.push(Event::Granted(at))).ok();
                        *n += 1;
                    }
                    mine = *n;
                });
                if mine >= limit {
                    holding.store(false, Ordering::SeqCst);
                    lm.unlock(&lock).await;
                    return Ok::<(), rslock::LockError>(());
                }
                tokio::time::sleep(HOLD).await;
                events.lock().map(|mut e| e.push(Event::Releasing(Instant::now()))).ok();
                holding.store(false, Ordering::SeqCst);
                lm.unlock(&lock).await;
                let _ = seen.wait_for(|n| *n > mine).await;
                if *grants.borrow() >= limit {
                    return Ok(());
                }
            }
        }));
    }
    let started = Instant::now();
    let mut progress = grants.subscribe();
    let _ = tokio::time::timeout(Duration::from_secs_f64(secs), progress.wait_for(|n| *n >= limit)).await;
    let elapsed = started.elapsed().as_secs_f64();
    grants.send_modify(|n| *n = u64::MAX);
    for task in tasks {
        task.await??;
    }
    let events = std::mem::take(&mut *events.lock().map_err(|_| "poisoned")?);
    let mut samples = Vec::new();
    let mut released = None;
    for event in events {
        match event {
            Event::Releasing(at) => released = Some(at),
            Event::Granted(at) => {
                if let Some(from) = released.take() {
                    samples.push(at.duration_since(from).as_secs_f64() * 1e6);
                }
            }
        }
    }
    Ok((samples, elapsed, overlaps.load(Ordering::Relaxed)))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    // Measured on a runtime worker, as the fencelock side is: a future driven by `block_on` on
    // the main thread is woken through a thread park/unpark after every reply.
    tokio::spawn(run()).await?
}

async fn run() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, rest) = args.split_first().ok_or("usage: rslock-peer uncontended|handoff --url …")?;
    let flags = flags(rest);
    let url: String = flag(&flags, "url")?;
    let lm = LockManager::new(vec![url]);
    let library = "rslock 0.10.0";
    let (samples, elapsed, overlaps) = match command.as_str() {
        "uncontended" => {
            let samples = uncontended(&lm, flag(&flags, "iterations")?, flag(&flags, "warmup")?).await?;
            (samples, None, 0)
        }
        "handoff" => {
            let (samples, elapsed, overlaps) =
                handoff(&lm, flag(&flags, "waiters")?, flag(&flags, "secs")?, flag(&flags, "max-handoffs")?).await?;
            (samples, Some(elapsed), overlaps)
        }
        "throughput" => {
            let (cycles, elapsed, cpu) = throughput(&lm, flag(&flags, "tasks")?, flag(&flags, "secs")?).await?;
            println!(
                "{}",
                serde_json::json!({
                    "library": library,
                    "cycles": cycles,
                    "elapsed_secs": elapsed,
                    "cpu_secs": cpu,
                })
            );
            return Ok(());
        }
        other => return Err(format!("unknown command {other}").into()),
    };
    println!(
        "{}",
        serde_json::json!({
            "library": library,
            "samples_us": samples,
            "elapsed_secs": elapsed,
            "overlaps": overlaps,
        })
    );
    Ok(())
}

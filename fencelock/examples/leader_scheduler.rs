//! A job scheduler that runs only on the elected leader and fences every write with its term:
//! copy it into a service, swap `memory://` for your store's URL.
//!
//! Each scheduler process campaigns in the election `scheduler`. The leader dispatches jobs,
//! and the job table (the downstream store) refuses any write whose term is below the highest
//! it has seen. Two things are shown:
//!
//! 1. **Hand-over**: `web-1` and `web-2` campaign together; one leads, the other waits, and
//!    takes over with a greater term when the first steps down.
//! 2. **A paused leader**: `web-3` leads, stops renewing (as a process in a long GC pause or a
//!    frozen VM would), and finishes a job it had started after its lease ran out. `web-4` was
//!    elected meanwhile; the table rejects `web-3`'s late write because its term is older.
//!
//! Run: `cargo run -p fencelock --example leader_scheduler` (no server needed). `cargo test`
//! runs the same scenario and checks it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fencelock::{AcquireOptions, Election, Error, FenceGate, FencingToken, Locker, OwnerLabel};
use tokio::time::Instant;

/// One dispatched job, as the job table stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Dispatch {
    job: String,
    term: FencingToken,
    by: String,
}

/// The downstream store: the dispatched jobs behind a fence on the term (in a database this
/// is `UPDATE … WHERE fence_token <= $term` or a `Fence` handle from the backend crate).
#[derive(Default)]
struct JobTable {
    fence: FenceGate,
    rows: Mutex<Vec<Dispatch>>,
}

impl JobTable {
    /// Records a dispatch iff `term` is not below any term the table has accepted.
    fn dispatch(&self, job: &str, term: FencingToken, by: &str) -> Result<(), Error> {
        self.fence.admit_with("jobs", term, || {
            self.rows().push(Dispatch {
                job: job.to_owned(),
                term,
                by: by.to_owned(),
            });
        })
    }

    fn rows(&self) -> std::sync::MutexGuard<'_, Vec<Dispatch>> {
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the run showed, for the printout and the test.
#[derive(Debug, Default)]
struct Report {
    /// Each leadership's (label, term), in the order they were elected.
    leaders: Vec<(String, FencingToken)>,
    /// Writes the table refused: (label, term, error).
    refused: Vec<(String, FencingToken, String)>,
    dispatched: Vec<Dispatch>,
}

/// A scheduler instance: campaigns, and while it leads dispatches `jobs` jobs, one per
/// `every`, each write carrying its term. Steps down when done.
async fn lead(
    election: &Election,
    me: &str,
    table: &JobTable,
    jobs: usize,
    every: Duration,
    say: &impl Fn(&str, String),
) -> Result<FencingToken, Error> {
    let options = AcquireOptions::new()
        .with_ttl(Duration::from_secs(2))
        .with_wait_forever()
        .with_label(OwnerLabel::new(me)?);
    let leadership = election.campaign(options).await?;
    let term = leadership.term();
    say(me, format!("elected, term {term}"));
    // `run` drops the loop the moment leadership is lost.
    leadership
        .run(async {
            for n in 0..jobs {
                tokio::time::sleep(every).await;
                // Right before each write: still leading? (The fence is the guarantee; this
                // check only avoids writes that are bound to fail.)
                let term = leadership.check()?;
                table.dispatch(&format!("job-{n}"), term, me)?;
                say(me, format!("dispatched job-{n} with term {term}"));
            }
            Ok::<_, Error>(())
        })
        .await??;
    leadership.resign().await?;
    say(me, "resigned".to_owned());
    Ok(term)
}

async fn scenario(say: impl Fn(&str, String) + Send + Sync) -> Result<Report, Error> {
    let locker = Locker::from_arc(fencelock::connect("memory://").await?);
    let election = locker.election("scheduler")?;
    let table = Arc::new(JobTable::default());
    let mut report = Report::default();

    // 1. Two schedulers campaign together; the second leads once the first steps down.
    let every = Duration::from_millis(50);
    let (one, two) = tokio::join!(
        lead(&election, "web-1", &table, 3, every, &say),
        lead(&election, "web-2", &table, 3, every, &say),
    );
    let (one, two) = (one?, two?);
    let (first, second) = if one < two {
        (("web-1", one), ("web-2", two))
    } else {
        (("web-2", two), ("web-1", one))
    };
    report.leaders.push((first.0.to_owned(), first.1));
    report.leaders.push((second.0.to_owned(), second.1));

    // 2. web-3 leads with renewal stopped (a paused process) and a job in flight that ignores
    //    cancellation; web-4 is elected once web-3's lease runs out.
    let ttl = Duration::from_millis(300);
    let paused = AcquireOptions::new()
        .with_ttl(ttl)
        .without_renewal()
        .with_label(OwnerLabel::new("web-3")?);
    let web3 = election.campaign(paused).await?;
    let old_term = web3.term();
    say("web-3", format!("elected, term {old_term}; pauses now"));
    report.leaders.push(("web-3".to_owned(), old_term));
    // The job started before the pause and finishes after it: its write comes once web-4
    // has been elected and has written.
    let (resume, paused_until) = tokio::sync::oneshot::channel::<()>();
    let in_flight = {
        let table = Arc::clone(&table);
        tokio::spawn(async move {
            let _ = paused_until.await;
            table.dispatch("job-paused", old_term, "web-3")
        })
    };
    if let Some(leader) = election.leader().await? {
        let label = leader.label.as_ref().map_or("?", |l| l.as_str());
        say(
            "observer",
            format!("leader is {label}, term {}", leader.term),
        );
    }
    let options = AcquireOptions::new()
        .with_ttl(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5))
        .with_label(OwnerLabel::new("web-4")?);
    let web4 = election.campaign(options).await?;
    let new_term = web4.term();
    say("web-4", format!("elected, term {new_term}"));
    report.leaders.push(("web-4".to_owned(), new_term));
    table.dispatch("job-0", web4.check()?, "web-4")?;
    say("web-4", format!("dispatched job-0 with term {new_term}"));
    let _ = resume.send(());

    match in_flight
        .await
        .map_err(|e| Error::invalid("job", e.to_string()))?
    {
        Ok(()) => say("web-3", "late write ACCEPTED (must not happen)".to_owned()),
        Err(error) => {
            say(
                "web-3",
                format!("late write with term {old_term} refused: {error}"),
            );
            report
                .refused
                .push(("web-3".to_owned(), old_term, error.to_string()));
        }
    }
    say(
        "web-3",
        format!("wakes up: still leader? {}", web3.is_valid()),
    );
    web4.resign().await?;
    report.dispatched = table.rows().clone();
    Ok(report)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let start = Instant::now();
    let say = move |who: &str, what: String| {
        println!("[{:>4.2}s] {who:<9} {what}", start.elapsed().as_secs_f64());
    };
    let report = scenario(say).await?;
    println!("\nleaders, in order: {:?}", report.leaders);
    println!("the job table holds:");
    for row in &report.dispatched {
        println!("  {:<12} term {:<3} by {}", row.job, row.term, row.by);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_the_leader_writes_and_a_paused_leader_is_fenced() {
        let report = scenario(|_, _| {}).await.expect("the scenario runs");
        let terms: Vec<_> = report.leaders.iter().map(|(_, t)| *t).collect();
        assert!(
            terms.windows(2).all(|w| w[0] < w[1]),
            "terms rise from leader to leader: {:?}",
            report.leaders
        );
        // Each leader's writes come as one block, in election order: nobody wrote while
        // another led.
        let writers: Vec<&str> =
            report
                .dispatched
                .iter()
                .map(|d| d.by.as_str())
                .fold(Vec::new(), |mut runs, by| {
                    if runs.last() != Some(&by) {
                        runs.push(by);
                    }
                    runs
                });
        let order: Vec<&str> = report
            .leaders
            .iter()
            .map(|(label, _)| label.as_str())
            .filter(|l| *l != "web-3")
            .collect();
        assert_eq!(
            writers, order,
            "who wrote, in order: {:?}",
            report.dispatched
        );
        assert!(
            report.dispatched.windows(2).all(|w| w[0].term <= w[1].term),
            "the table's terms never go back: {:?}",
            report.dispatched
        );
        let (who, term, _) = report
            .refused
            .first()
            .expect("web-3's late write is refused");
        assert_eq!(
            (who.as_str(), *term),
            ("web-3", report.leaders[2].1),
            "{:?}",
            report.refused
        );
        assert!(
            report.dispatched.iter().all(|d| d.by != "web-3"),
            "no write of the paused leader was accepted: {:?}",
            report.dispatched
        );
        assert_eq!(report.dispatched.len(), 3 + 3 + 1);
    }
}

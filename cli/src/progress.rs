//! The live "waiting for …" line on stderr, drawn only when stderr is a terminal.

use std::convert::Infallible;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use fencelock::{LeaseStore, LockName, PermitLimit};
use tokio::time::{Instant, sleep};

use crate::duration::{WaitFor, short};
use crate::hold::holders;

/// How long an acquire may take before the line appears (uncontended ones never show it).
const SHOW_AFTER: Duration = Duration::from_millis(200);
/// How often the holder is looked up again.
const REFRESH_EVERY: Duration = Duration::from_millis(500);

/// A line on stderr that redraws itself in place.
pub(crate) struct ProgressLine {
    enabled: bool,
    drawn: bool,
}

impl ProgressLine {
    /// A line that draws only if stderr is a terminal.
    pub(crate) fn on_stderr() -> Self {
        Self {
            enabled: std::io::stderr().is_terminal(),
            drawn: false,
        }
    }

    fn draw(&mut self, text: &str) {
        if !self.enabled {
            return;
        }
        let mut err = std::io::stderr().lock();
        // `\r` + "erase line": redraw in place. A failed write to stderr is not worth dying for.
        let _ = write!(err, "\r\x1b[2K{text}");
        let _ = err.flush();
        self.drawn = true;
    }

    /// Erases the line if it was drawn.
    pub(crate) fn clear(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
            self.drawn = false;
        }
    }

    /// Shows who holds `name` (the lock, or the semaphore's permits when `permits` is given)
    /// until dropped (run it in a `select!` next to the acquire).
    pub(crate) async fn show_holder(
        &mut self,
        store: Arc<dyn LeaseStore>,
        name: &LockName,
        permits: Option<PermitLimit>,
        wait: WaitFor,
        per_request: Duration,
    ) -> Infallible {
        let started = Instant::now();
        sleep(SHOW_AFTER).await;
        loop {
            if self.enabled {
                let holder = match permits {
                    Some(limit) => permit_holders(&*store, name, limit, per_request).await,
                    None => lock_holder(&*store, name, per_request).await,
                };
                let waited = short(started.elapsed());
                let limit = match wait {
                    WaitFor::Up(limit) => format!(" of {}", short(limit)),
                    WaitFor::Forever => String::new(),
                };
                let what = if permits.is_some() {
                    "a permit of "
                } else {
                    ""
                };
                self.draw(&format!(
                    "fencelock: waiting for {what}`{name}`: {holder}; waited {waited}{limit}"
                ));
            }
            sleep(REFRESH_EVERY).await;
        }
    }
}

/// The lock's holder, for the line: "held by token 17 (12.4s left, holder 3cae4156…)".
async fn lock_holder(store: &dyn LeaseStore, name: &LockName, per_request: Duration) -> String {
    match tokio::time::timeout(per_request, store.inspect(name)).await {
        Ok(Ok(Some(info))) => {
            let id = info
                .holder
                .map(|h| format!(", holder {:08x}…", h.as_u128() >> 96))
                .unwrap_or_default();
            format!(
                "held by token {} ({} left{id})",
                info.token,
                short(info.remaining)
            )
        }
        Ok(Ok(None)) => "free, acquiring".to_owned(),
        Ok(Err(_)) | Err(_) => "holder unknown (store not answering)".to_owned(),
    }
}

/// The semaphore's holders, for the line: "2 of 2 held (tokens 17, 18; the soonest …)".
async fn permit_holders(
    store: &dyn LeaseStore,
    name: &LockName,
    limit: PermitLimit,
    per_request: Duration,
) -> String {
    match tokio::time::timeout(per_request, store.inspect_permits(name)).await {
        Ok(Ok(permits)) if permits.holders.len() < limit.get() as usize => {
            format!("{} of {limit} held, acquiring", permits.holders.len())
        }
        Ok(Ok(permits)) => format!(
            "{} of {limit} held ({})",
            permits.holders.len(),
            holders(&permits)
        ),
        Ok(Err(_)) | Err(_) => "holders unknown (store not answering)".to_owned(),
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.clear();
    }
}

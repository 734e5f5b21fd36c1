//! The "server": a table of leases and fenced values with its own clock, standing in for the
//! database or key-value store a real backend talks to. Its methods are the wire protocol:
//! each is one atomic step on the server, and each fails with [`Down`] while it is stopped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use fencelock_core::FencingToken;
use fencelock_core::backend::{WakeupHub, lock_unpoisoned as lock};
use tokio::time::Instant;

/// The server did not take the request: it is stopped. Nothing was applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Down;

impl std::fmt::Display for Down {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the table server is stopped")
    }
}

impl std::error::Error for Down {}

/// A lock as the server holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The grant's token.
    pub token: u64,
    /// The holder id the client chose.
    pub holder: u128,
    /// Time left, by the server's clock.
    pub remaining: Duration,
    /// The owner label stored with the grant, if any.
    pub label: Option<String>,
}

/// A table server. Clones share the same server; it keeps its tables across
/// [`TableServer::stop`] and [`TableServer::start`], like a server with durable storage.
#[derive(Clone, Debug, Default)]
pub struct TableServer {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    stopped: AtomicBool,
    tables: Mutex<Tables>,
    /// Connected clients' wake-up hubs: the server's "pub/sub" for releases.
    listeners: Mutex<Vec<Weak<WakeupHub>>>,
}

#[derive(Debug, Default)]
struct Tables {
    locks: HashMap<String, Row>,
    fenced: HashMap<String, (u64, Vec<u8>)>,
}

/// A lock's row. Rows are never deleted: `last_token` is what keeps tokens rising across
/// release and expiry.
#[derive(Debug, Default)]
struct Row {
    last_token: u64,
    held: Option<Held>,
}

#[derive(Debug, Clone)]
struct Held {
    token: u64,
    holder: u128,
    expires_at: Instant,
    label: Option<String>,
}

/// What an acquire got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// Granted with this token.
    Granted(u64),
    /// A live grant holds the name.
    Held,
    /// The name's token counter reached `FencingToken::MAX_EXACT`.
    Exhausted,
}

/// `ttl_ms` from `now`. Clients validate TTLs (at most ten years), so this cannot overflow;
/// if it ever did, the grant would end at once: fail closed.
fn expiry(now: Instant, ttl_ms: u64) -> Instant {
    now.checked_add(Duration::from_millis(ttl_ms))
        .unwrap_or(now)
}

impl Row {
    /// The grant, if it has not expired by the server's clock.
    fn live(&self, now: Instant) -> Option<Held> {
        self.held.clone().filter(|h| h.expires_at > now)
    }
}

impl TableServer {
    /// A running server with empty tables.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops answering: every request fails with [`Down`] until [`TableServer::start`].
    pub fn stop(&self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
    }

    /// Answers again, with the tables it had.
    pub fn start(&self) {
        self.shared.stopped.store(false, Ordering::SeqCst);
    }

    fn tables(&self) -> Result<std::sync::MutexGuard<'_, Tables>, Down> {
        if self.shared.stopped.load(Ordering::SeqCst) {
            return Err(Down);
        }
        Ok(lock(&self.shared.tables))
    }

    /// Registers a client's hub for release notices (held weakly: a dropped client's hub is
    /// forgotten).
    pub fn subscribe(&self, hub: &Arc<WakeupHub>) {
        let mut listeners = lock(&self.shared.listeners);
        listeners.retain(|l| l.strong_count() > 0);
        listeners.push(Arc::downgrade(hub));
    }

    /// Publishes "`name` may be free" to every connected client.
    fn publish(&self, name: &str) {
        let listeners: Vec<Arc<WakeupHub>> = lock(&self.shared.listeners)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for hub in listeners {
            hub.notify(name);
        }
    }

    /// Grants `name` to `holder` for `ttl_ms` if no live grant holds it, minting the token in
    /// the same step, above every token ever granted for the name, and storing `label` with it.
    pub fn acquire(
        &self,
        name: &str,
        holder: u128,
        ttl_ms: u64,
        label: Option<&str>,
    ) -> Result<Grant, Down> {
        let mut tables = self.tables()?;
        let now = Instant::now();
        let row = tables.locks.entry(name.to_owned()).or_default();
        if row.live(now).is_some() {
            return Ok(Grant::Held);
        }
        let Some(token) = row
            .last_token
            .checked_add(1)
            .filter(|t| *t <= FencingToken::MAX_EXACT)
        else {
            return Ok(Grant::Exhausted);
        };
        row.last_token = token;
        row.held = Some(Held {
            token,
            holder,
            expires_at: expiry(now, ttl_ms),
            label: label.map(str::to_owned),
        });
        Ok(Grant::Granted(token))
    }

    /// Extends the grant iff this exact one (holder and token) is live; else `Err` with the
    /// live grant's token, if any.
    pub fn renew(
        &self,
        name: &str,
        holder: u128,
        token: u64,
        ttl_ms: u64,
    ) -> Result<Result<(), Option<u64>>, Down> {
        let mut tables = self.tables()?;
        let now = Instant::now();
        let Some(row) = tables.locks.get_mut(name) else {
            return Ok(Err(None));
        };
        match row.live(now) {
            Some(h) if h.holder == holder && h.token == token => {
                row.held = Some(Held {
                    expires_at: expiry(now, ttl_ms),
                    ..h
                });
                Ok(Ok(()))
            }
            live => Ok(Err(live.map(|h| h.token))),
        }
    }

    /// Frees the grant iff this exact one is live; else `Err` with the live grant's token.
    pub fn release(
        &self,
        name: &str,
        holder: u128,
        token: u64,
    ) -> Result<Result<(), Option<u64>>, Down> {
        let answer = {
            let mut tables = self.tables()?;
            let now = Instant::now();
            match tables.locks.get_mut(name) {
                None => Err(None),
                Some(row) => match row.live(now) {
                    Some(h) if h.holder == holder && h.token == token => {
                        row.held = None;
                        Ok(())
                    }
                    live => Err(live.map(|h| h.token)),
                },
            }
        };
        if answer.is_ok() {
            self.publish(name);
        }
        Ok(answer)
    }

    /// The live grant of `name`.
    pub fn inspect(&self, name: &str) -> Result<Option<Holder>, Down> {
        let tables = self.tables()?;
        let now = Instant::now();
        Ok(tables
            .locks
            .get(name)
            .and_then(|row| row.live(now))
            .map(|h| Holder {
                token: h.token,
                holder: h.holder,
                remaining: h.expires_at - now,
                label: h.label,
            }))
    }

    /// Ends whatever grant holds `name`; answers its token.
    pub fn break_lock(&self, name: &str) -> Result<Option<u64>, Down> {
        let broken = {
            let mut tables = self.tables()?;
            let now = Instant::now();
            tables.locks.get_mut(name).and_then(|row| {
                let live = row.live(now).map(|h| h.token);
                row.held = None;
                live
            })
        };
        if broken.is_some() {
            self.publish(name);
        }
        Ok(broken)
    }

    /// Writes `value` under `key` iff `token` is at least the key's mark, raising the mark in
    /// the same step; else `Err` with the mark.
    pub fn fenced_write(
        &self,
        key: &str,
        token: u64,
        value: &[u8],
    ) -> Result<Result<(), u64>, Down> {
        let mut tables = self.tables()?;
        match tables.fenced.get(key) {
            Some((mark, _)) if token < *mark => Ok(Err(*mark)),
            _ => {
                tables
                    .fenced
                    .insert(key.to_owned(), (token, value.to_vec()));
                Ok(Ok(()))
            }
        }
    }

    /// The value last admitted under `key`, with its mark.
    pub fn fenced_read(&self, key: &str) -> Result<Option<(u64, Vec<u8>)>, Down> {
        Ok(self.tables()?.fenced.get(key).cloned())
    }
}

//! Redis: `RedisLeaseStore` (one EVALSHA to acquire, one to release) against `SET NX PX` + `DEL`
//! on the same multiplexed connection.

use fencelock_core::Locker;
use fencelock_redis::RedisLeaseStore;
use fencelock_redis::redis::{self, aio::ConnectionManager};

use super::{PERMIT_ROW, TTL, locker_cycle, permit_cycle, run_id, store_cycle, unexpectedly_held};

// The backend's own scripts (`SCRIPTS.acquire`, `SCRIPTS.release`), for the "scripts by hand"
// row: the acquire script is its file after the shared token code, as the store runs it.
use crate::cycle::{Cycle, Role, Variant, cycle};
use crate::error::Result;
use fencelock_redis::scripts::SCRIPTS;

/// The store and a raw connection sharing its multiplexed connection.
#[derive(Clone)]
pub struct RedisBench {
    /// Our store.
    pub store: RedisLeaseStore,
    /// A locker over it.
    pub locker: Locker,
    /// The store's connection, for the raw floor.
    pub conn: ConnectionManager,
    prefix: String,
}

impl RedisBench {
    /// Connects to `url`.
    pub async fn connect(url: &str) -> Result<Self> {
        let store = RedisLeaseStore::connect(url).await?;
        Ok(Self {
            locker: Locker::new(store.clone()),
            conn: store.connection().clone(),
            store,
            prefix: format!("bench/{}", run_id()),
        })
    }

    /// The server's version.
    pub async fn version(&self) -> Result<String> {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .map_or_else(|| "unknown".to_owned(), |v| format!("Redis {}", v.trim())))
    }

    /// Ours through `Locker`, on a fresh name per call.
    pub fn ours(&self, tag: &str) -> Cycle {
        locker_cycle(&self.locker, format!("{}/{tag}", self.prefix))
    }

    /// Ours through the store alone.
    pub fn ours_store(&self, tag: &str) -> Cycle {
        store_cycle(&self.store, format!("{}/{tag}", self.prefix))
    }

    /// The raw floor: `SET key value NX PX ttl` + `DEL key`.
    pub fn raw(&self, tag: &str) -> Cycle {
        let prefix = format!("{}:raw:{tag}", self.prefix);
        set_nx_del(&self.conn, move |i| format!("{prefix}:{i}"))
    }

    /// The backend's acquire and release scripts invoked by hand (`EVALSHA`), without the
    /// store: what the scripts cost on the server.
    pub fn scripts(&self, tag: &str) -> Cycle {
        let conn = self.conn.clone();
        let prefix = format!("{}:lua:{tag}", self.prefix);
        let ttl_ms = TTL.as_millis() as u64;
        cycle(move |i| {
            let mut conn = conn.clone();
            let (key, counter) = (format!("{prefix}:{i}"), format!("{prefix}:{i}:token"));
            // A channel per lock, as the store publishes on since releases got their own.
            let channel = format!("{prefix}:{i}:released");
            async move {
                let granted: Vec<redis::Value> = SCRIPTS
                    .acquire
                    .key(&key)
                    .key(&counter)
                    .arg("0123456789abcdef0123456789abcdef")
                    .arg(ttl_ms)
                    .invoke_async(&mut conn)
                    .await?;
                let [redis::Value::Int(1), redis::Value::BulkString(value)] = granted.as_slice()
                else {
                    return Err(unexpectedly_held("acquire.lua"));
                };
                let released: Vec<redis::Value> = SCRIPTS
                    .release
                    .key(&key)
                    .arg(value.as_slice())
                    .arg(&channel)
                    .arg(&key)
                    .invoke_async(&mut conn)
                    .await?;
                if released.first() != Some(&redis::Value::Int(1)) {
                    return Err(unexpectedly_held("release.lua freed nothing"));
                }
                Ok(())
            }
        })
    }

    /// One round trip: `PING`.
    pub fn ping(&self) -> Cycle {
        let conn = self.conn.clone();
        cycle(move |_| {
            let mut conn = conn.clone();
            async move {
                let _: String = redis::cmd("PING").query_async(&mut conn).await?;
                Ok(())
            }
        })
    }

    /// One write round trip: `SET key value PX ttl`.
    pub fn write(&self) -> Cycle {
        let conn = self.conn.clone();
        let key = format!("{}:rtt", self.prefix);
        cycle(move |_| {
            let mut conn = conn.clone();
            let key = key.clone();
            async move {
                let _: String = redis::cmd("SET")
                    .arg(&key)
                    .arg("x")
                    .arg("PX")
                    .arg(10_000)
                    .query_async(&mut conn)
                    .await?;
                Ok(())
            }
        })
    }

    /// The uncontended variants, headline first.
    pub fn uncontended(&self, reference_every: usize) -> Vec<Variant> {
        vec![
            Variant::new(
                "fencelock `Locker` acquire + release",
                Role::Ours,
                self.ours("u"),
            ),
            Variant::new(
                "fencelock store try_acquire + release",
                Role::OursStore,
                self.ours_store("s"),
            ),
            Variant::new("raw `SET NX PX` + `DEL`", Role::Raw, self.raw("u")),
            Variant::new(
                "the store's Lua scripts by hand (`EVALSHA` acquire + release)",
                Role::Reference,
                self.scripts("u"),
            ),
            Variant::new(
                PERMIT_ROW,
                Role::Reference,
                permit_cycle(&self.locker, format!("{}/permit", self.prefix)),
            ),
            Variant::new("one round trip (`PING`)", Role::Reference, self.ping())
                .every(reference_every),
            Variant::new("one write (`SET PX`)", Role::Reference, self.write())
                .every(reference_every),
        ]
    }

    /// Throughput cycles, ours and raw: called with the task's index, so each task keeps one name.
    pub fn throughput(&self) -> (Cycle, Cycle) {
        (self.ours("tp"), self.raw("tp"))
    }

    /// The name the hand-off waiters share.
    pub fn handoff_name(&self) -> String {
        format!("{}/handoff", self.prefix)
    }
}

impl std::fmt::Debug for RedisBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBench")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The raw floor on key `key(i)` over any connection (a cluster connection routes it to the
/// key's slot owner): `SET key value NX PX ttl` + `DEL key`.
pub fn set_nx_del<C>(conn: &C, key: impl Fn(u64) -> String + Send + Sync + 'static) -> Cycle
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    let conn = conn.clone();
    let ttl_ms = TTL.as_millis() as u64;
    cycle(move |i| {
        let mut conn = conn.clone();
        let key = key(i);
        async move {
            let set: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg("0123456789abcdef0123456789abcdef:1763712345678901")
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .query_async(&mut conn)
                .await?;
            set.ok_or_else(|| unexpectedly_held("SET NX"))?;
            let _: i64 = redis::cmd("DEL").arg(&key).query_async(&mut conn).await?;
            Ok(())
        }
    })
}

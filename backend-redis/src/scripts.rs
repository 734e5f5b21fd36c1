//! The Lua scripts, one per operation, loaded once per process and run with EVALSHA.
//!
//! The store and the fence run every script through one `Call`. A call carries its script,
//! and when the server answers `NOSCRIPT` (after a restart, a failover or `SCRIPT FLUSH`) it
//! loads that script and sends the command once more, as
//! [`redis::Script::invoke_async`] does. Building the `EVALSHA` ourselves writes keys and
//! arguments straight into the command, without the invocation's copy of each.
//! Scripts take every name and value as `KEYS`/`ARGV`; no script text is ever built from input.

use std::sync::LazyLock;

use redis::aio::ConnectionLike;
use redis::{Cmd, ErrorKind, RedisError, RedisResult, Script, ServerErrorKind, ToRedisArgs, Value};

/// The scripts of the lease store and the fenced write.
#[derive(Debug)]
pub struct Scripts {
    /// Mint a token and set the grant (`acquire.lua`).
    pub acquire: Script,
    /// Compare holder and token, then `PEXPIRE` (`renew.lua`).
    pub renew: Script,
    /// Compare holder and token, then `DEL` and `PUBLISH` (`release.lua`).
    pub release: Script,
    /// Read the grant and its `PTTL` (`inspect.lua`).
    pub inspect: Script,
    /// `DEL` and `PUBLISH` whatever grant holds (`force_release.lua`).
    pub force_release: Script,
    /// Compare-and-set of a value and its high-water token (`fenced_set.lua`).
    pub fenced_set: Script,
    /// Redlock phase 1: read the grant and the (clock-floored) counter (`redlock_read.lua`).
    pub redlock_read: Script,
    /// Redlock phase 2: set the grant with a proposed token above the counter
    /// (`redlock_write.lua`).
    pub redlock_write: Script,
}

/// The scripts, hashed once per process.
pub static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    acquire: Script::new(include_str!("lua/acquire.lua")),
    renew: Script::new(include_str!("lua/renew.lua")),
    release: Script::new(include_str!("lua/release.lua")),
    inspect: Script::new(include_str!("lua/inspect.lua")),
    force_release: Script::new(include_str!("lua/force_release.lua")),
    fenced_set: Script::new(include_str!("lua/fenced_set.lua")),
    redlock_read: Script::new(include_str!("lua/redlock_read.lua")),
    redlock_write: Script::new(include_str!("lua/redlock_write.lua")),
});

/// One `EVALSHA` of a script, built argument by argument straight into the command, and the
/// script it runs (the only one a `NOSCRIPT` reload may load).
pub(crate) struct Call {
    script: &'static Script,
    cmd: Cmd,
}

impl Call {
    /// `EVALSHA <hash of script> <number of keys> <keys>`; add the arguments with
    /// [`Self::arg`].
    pub(crate) fn new(script: &'static Script, keys: &[&str]) -> Self {
        let mut cmd = Cmd::with_capacity(8, 192);
        cmd.arg("EVALSHA").arg(script.get_hash()).arg(keys.len());
        for key in keys {
            cmd.arg(*key);
        }
        Self { script, cmd }
    }

    /// Appends an argument (`ARGV`).
    pub(crate) fn arg(mut self, arg: impl ToRedisArgs) -> Self {
        self.cmd.arg(arg);
        self
    }

    /// Sends the call; loads the script and sends the call again if the server does not have
    /// it.
    pub(crate) async fn run<C: ConnectionLike>(&self, conn: &mut C) -> RedisResult<Value> {
        match self.cmd.query_async(conn).await {
            Err(e) if is_no_script(&e) => {
                self.script.load_async(conn).await?;
                self.cmd.query_async(conn).await
            }
            result => result,
        }
    }
}

fn is_no_script(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

//! The Lua scripts, one per operation, loaded once per process and run with EVALSHA.
//!
//! Every script runs through one `Call`: one `EVALSHA`, built argument by argument straight
//! into the command (without the copy of each that redis' `ScriptInvocation` makes), carrying
//! the script it runs. When the server answers `NOSCRIPT` (after a restart, a failover or
//! `SCRIPT FLUSH`), the call loads that script and is sent once more, as
//! [`redis::Script::invoke_async`] does. A `Batch` pipelines calls with the same handling.
//! The single-server store, the fence and Redlock (one call shared by every server, each
//! within its own time limit) send calls; batched renewals send a batch.
//! Scripts take every name and value as `KEYS`/`ARGV`; no script text is ever built from input.
//!
//! Code several scripts share is written once and prepended to them when they are hashed:
//! `token.lua` (the server clock and the token rule: `max(previous + 1, TIME in µs)`) to the
//! lock's and the semaphores' acquire scripts, `permits.lua` (expiry of a semaphore's
//! permits) to every semaphore script, and `announce.lua` (`PUBLISH` or `SPUBLISH`) to the
//! scripts that free a lock or a permit.

use std::sync::LazyLock;

use redis::aio::ConnectionLike;
use redis::{
    Cmd, ErrorKind, Pipeline, RedisError, RedisResult, Script, ServerErrorKind, ToRedisArgs, Value,
};

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
    /// Read a fenced value, its high-water token and its stamp (`fenced_get.lua`).
    pub fenced_get: Script,
    /// Redlock's fenced write on one server: compare-and-set with a stamp that orders the
    /// writes of one token (`redlock_fenced_set.lua`).
    pub redlock_fenced_set: Script,
    /// Redlock phase 1: read the grant and the (clock-floored) counter (`redlock_read.lua`).
    pub redlock_read: Script,
    /// Redlock phase 2: set the grant with a proposed token above the counter
    /// (`redlock_write.lua`).
    pub redlock_write: Script,
    /// Drop expired permits, check the limit, mint a token and add the permit
    /// (`permit_acquire.lua`).
    pub permit_acquire: Script,
    /// Compare holder and token of one permit, then move its expiry (`permit_renew.lua`).
    pub permit_renew: Script,
    /// Compare holder and token of one permit, then remove it and `PUBLISH`
    /// (`permit_release.lua`).
    pub permit_release: Script,
    /// Read the live permits, their time left, labels and the limit (`permit_inspect.lua`).
    pub permit_inspect: Script,
}

/// The server clock and the token rule, prepended to the scripts that mint tokens or read the
/// clock.
const TOKEN: &str = include_str!("lua/token.lua");
/// A semaphore's permits and their expiry, prepended (after [`TOKEN`]) to the semaphore
/// scripts.
const PERMITS: &str = include_str!("lua/permits.lua");

/// The release announcement, prepended to the scripts that free a lock or a permit.
const ANNOUNCE: &str = include_str!("lua/announce.lua");

/// `body` after the shared code it uses.
fn joined(shared: &[&str], body: &str) -> Script {
    let mut text = shared.concat();
    text.push_str(body);
    Script::new(&text)
}

/// The scripts, hashed once per process.
pub static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    acquire: joined(&[TOKEN], include_str!("lua/acquire.lua")),
    renew: Script::new(include_str!("lua/renew.lua")),
    release: joined(&[ANNOUNCE], include_str!("lua/release.lua")),
    inspect: Script::new(include_str!("lua/inspect.lua")),
    force_release: joined(&[ANNOUNCE], include_str!("lua/force_release.lua")),
    fenced_set: Script::new(include_str!("lua/fenced_set.lua")),
    fenced_get: Script::new(include_str!("lua/fenced_get.lua")),
    redlock_fenced_set: Script::new(include_str!("lua/redlock_fenced_set.lua")),
    redlock_read: Script::new(include_str!("lua/redlock_read.lua")),
    redlock_write: Script::new(include_str!("lua/redlock_write.lua")),
    permit_acquire: joined(&[TOKEN, PERMITS], include_str!("lua/permit_acquire.lua")),
    permit_renew: joined(&[TOKEN, PERMITS], include_str!("lua/permit_renew.lua")),
    permit_release: joined(
        &[TOKEN, PERMITS, ANNOUNCE],
        include_str!("lua/permit_release.lua"),
    ),
    permit_inspect: joined(&[TOKEN, PERMITS], include_str!("lua/permit_inspect.lua")),
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

/// Calls sent together in one pipeline (one write and one read on the connection), each
/// answered on its own.
///
/// A call the server answers with `NOSCRIPT` is handled as [`Call::run`] handles it: its
/// script is loaded and it is sent once more (with the other such calls, in one pipeline).
/// Calls that ran are never sent twice.
pub(crate) struct Batch {
    pipe: Pipeline,
    scripts: Vec<&'static Script>,
}

impl Batch {
    pub(crate) fn with_capacity(calls: usize) -> Self {
        let mut pipe = Pipeline::with_capacity(calls);
        pipe.ignore_errors();
        Self {
            pipe,
            scripts: Vec::with_capacity(calls),
        }
    }

    pub(crate) fn push(&mut self, call: Call) {
        self.pipe.add_command(call.cmd);
        self.scripts.push(call.script);
    }

    /// Sends the batch: one answer per call, in order. `Err` when the batch as a whole failed
    /// (the connection broke, or the first send got the wrong number of answers).
    pub(crate) async fn run<C: ConnectionLike>(
        &self,
        conn: &mut C,
    ) -> RedisResult<Vec<RedisResult<Value>>> {
        let mut answers = send(&self.pipe, conn).await?;
        let mut again = Pipeline::new();
        again.ignore_errors();
        let mut retried = Vec::new();
        for ((i, answer), cmd) in answers.iter().enumerate().zip(self.pipe.cmd_iter()) {
            if answer.as_ref().is_err_and(is_no_script) {
                again.add_command(cmd.clone());
                retried.push(i);
            }
        }
        if retried.is_empty() {
            return Ok(answers);
        }
        let second = match self.load(&retried, conn).await {
            Ok(()) => send(&again, conn).await,
            Err(e) => Err(e),
        };
        match second {
            Ok(second) => {
                for (&i, answer) in retried.iter().zip(second) {
                    answers[i] = answer;
                }
            }
            Err(e) => {
                for &i in &retried {
                    answers[i] = Err(e.clone());
                }
            }
        }
        Ok(answers)
    }

    /// Loads each distinct script among the calls at `indices`, once.
    async fn load<C: ConnectionLike>(&self, indices: &[usize], conn: &mut C) -> RedisResult<()> {
        let mut loaded: Vec<&str> = Vec::new();
        for &i in indices {
            let script = self.scripts[i];
            if !loaded.contains(&script.get_hash()) {
                script.load_async(conn).await?;
                loaded.push(script.get_hash());
            }
        }
        Ok(())
    }
}

/// One pipeline, exactly one answer per command.
async fn send<C: ConnectionLike>(
    pipe: &Pipeline,
    conn: &mut C,
) -> RedisResult<Vec<RedisResult<Value>>> {
    let answers: Vec<RedisResult<Value>> = pipe.query_async(conn).await?;
    if answers.len() != pipe.len() {
        return Err(RedisError::from((
            ErrorKind::UnexpectedReturnType,
            "wrong number of answers to a pipeline",
            format!("{} answers to {} script calls", answers.len(), pipe.len()),
        )));
    }
    Ok(answers)
}

fn is_no_script(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

#[cfg(test)]
mod tests {
    use redis::{Arg, RedisFuture};

    use super::*;

    static A: LazyLock<Script> = LazyLock::new(|| Script::new("return 'a'"));
    static B: LazyLock<Script> = LazyLock::new(|| Script::new("return 'b'"));

    /// A server that has the scripts named in `loaded` and logs what it is sent.
    #[derive(Default)]
    struct Fake {
        loaded: Vec<&'static str>,
        refuse_loads: bool,
        log: Vec<String>,
    }

    impl Fake {
        fn answer(&mut self, cmd: &Cmd) -> Value {
            let args: Vec<String> = cmd
                .args_iter()
                .map(|a| match a {
                    Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                    _ => String::new(),
                })
                .collect();
            let name = |hash_or_code: &str| {
                let a = hash_or_code == A.get_hash() || hash_or_code.contains("'a'");
                if a { "a" } else { "b" }
            };
            match args[0].as_str() {
                "SCRIPT" if self.refuse_loads => {
                    self.log.push(format!("LOAD {} refused", name(&args[2])));
                    error("-ERR no\r\n")
                }
                "SCRIPT" => {
                    let script = name(&args[2]);
                    self.log.push(format!("LOAD {script}"));
                    self.loaded.push(script);
                    let hash = if script == "a" {
                        A.get_hash()
                    } else {
                        B.get_hash()
                    };
                    Value::BulkString(hash.as_bytes().to_vec())
                }
                _ => {
                    let script = name(&args[1]);
                    let ran = self.loaded.contains(&script);
                    let arg = &args[3];
                    self.log
                        .push(format!("{script}({arg}){}", if ran { "" } else { "?" }));
                    if ran {
                        Value::BulkString(format!("{script}{arg}").into_bytes())
                    } else {
                        error("-NOSCRIPT No matching script.\r\n")
                    }
                }
            }
        }
    }

    fn error(resp: &str) -> Value {
        redis::parse_redis_value(resp.as_bytes()).unwrap_or(Value::Nil)
    }

    impl ConnectionLike for Fake {
        fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
            let value = self.answer(cmd);
            Box::pin(async move { Ok(value) })
        }

        fn req_packed_commands<'a>(
            &'a mut self,
            pipeline: &'a Pipeline,
            offset: usize,
            count: usize,
        ) -> RedisFuture<'a, Vec<Value>> {
            let values = pipeline
                .cmd_iter()
                .skip(offset)
                .take(count)
                .map(|cmd| self.answer(cmd))
                .collect();
            Box::pin(async move { Ok(values) })
        }

        fn get_db(&self) -> i64 {
            0
        }
    }

    fn call(script: &'static Script, arg: u32) -> Call {
        Call::new(script, &[]).arg(arg)
    }

    fn ok(answers: RedisResult<Vec<RedisResult<Value>>>) -> Vec<String> {
        let answers = answers.unwrap_or_default();
        answers
            .into_iter()
            .map(|a| match a {
                Ok(Value::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
                other => format!("{other:?}").chars().take(12).collect(),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_call_loads_its_own_script_once_and_runs_again() {
        let mut server = Fake::default();
        let answer = call(&A, 1).run(&mut server).await;
        assert_eq!(answer, Ok(Value::BulkString(b"a1".to_vec())));
        assert_eq!(server.log, ["a(1)?", "LOAD a", "a(1)"]);
    }

    #[tokio::test]
    async fn a_batch_reloads_only_what_was_missing_and_resends_only_those_calls() {
        let mut server = Fake {
            loaded: vec!["a"],
            ..Fake::default()
        };
        let mut batch = Batch::with_capacity(4);
        for (script, arg) in [(&A, 1), (&B, 2), (&A, 3), (&B, 4)] {
            batch.push(call(script, arg));
        }
        assert_eq!(ok(batch.run(&mut server).await), ["a1", "b2", "a3", "b4"]);
        assert_eq!(
            server.log,
            ["a(1)", "b(2)?", "a(3)", "b(4)?", "LOAD b", "b(2)", "b(4)"]
        );
    }

    #[tokio::test]
    async fn a_failed_reload_fails_only_the_calls_that_needed_it() {
        let mut server = Fake {
            loaded: vec!["a"],
            refuse_loads: true,
            ..Fake::default()
        };
        let mut batch = Batch::with_capacity(2);
        batch.push(call(&A, 1));
        batch.push(call(&B, 2));
        let answers = batch.run(&mut server).await.unwrap_or_default();
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[0], Ok(Value::BulkString(b"a1".to_vec())));
        assert!(answers[1].is_err());
        assert_eq!(server.log, ["a(1)", "b(2)?", "LOAD b refused"]);
    }
}

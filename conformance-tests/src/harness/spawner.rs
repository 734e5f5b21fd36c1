//! The dedicated spawner thread.
//!
//! Servers are started under `setpriv --pdeathsig KILL`, so the kernel kills
//! them when their parent dies, even if the test process is killed with
//! SIGKILL and no destructor runs. Linux ties `PR_SET_PDEATHSIG` to the
//! *thread* that forked the child, not the process: forking from a tokio test
//! thread would kill the server when that thread exits after its test. So
//! every server is forked by this one thread, which lives until the process
//! exits.

use std::process::{Child, Command};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Mutex, OnceLock, PoisonError};

use super::error::{HarnessError, Result};

type Request = (Command, Sender<std::io::Result<Child>>);

/// Spawn `command` from the long-lived spawner thread.
pub(crate) fn spawn(command: Command) -> Result<Child> {
    static SPAWNER: OnceLock<Result<Mutex<Sender<Request>>, HarnessError>> = OnceLock::new();
    let spawner = SPAWNER
        .get_or_init(|| {
            let (tx, rx) = channel::<Request>();
            std::thread::Builder::new()
                .name("fencelock-spawner".into())
                .spawn(move || {
                    // The static sender is never dropped, so this loop (and
                    // the thread) lasts as long as the process.
                    while let Ok((mut command, reply)) = rx.recv() {
                        let _ = reply.send(command.spawn());
                    }
                })
                .map_err(|e| HarnessError::new(format!("start the spawner thread: {e}")))?;
            Ok(Mutex::new(tx))
        })
        .as_ref()
        .map_err(Clone::clone)?;
    let (reply_tx, reply_rx) = channel();
    let program = format!("{:?}", command.get_program());
    spawner
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .send((command, reply_tx))
        .map_err(|_| HarnessError::new("the spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| HarnessError::new("the spawner thread dropped a request"))?
        .map_err(|e| HarnessError::new(format!("spawn {program}: {e}")))
}

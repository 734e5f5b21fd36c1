//! One torture worker process; started by `fencelock-torture` with its settings as JSON.

use fencelock_torture::WorkerConfig;

fn main() -> std::process::ExitCode {
    let Some(arg) = std::env::args().nth(1) else {
        eprintln!("usage: fencelock-torture-worker '<worker config as JSON>'");
        return std::process::ExitCode::from(2);
    };
    let cfg: WorkerConfig = match serde_json::from_str(&arg) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("fencelock-torture-worker: bad config: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // One thread: the starved-holder fault blocks it, and with it the watchdog.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("fencelock-torture-worker: no runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fencelock_torture::worker::run(cfg)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fencelock-torture-worker: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

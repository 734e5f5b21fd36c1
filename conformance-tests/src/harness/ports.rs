//! Free loopback ports.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Mutex, PoisonError};

use super::error::{HarnessError, Result, ResultExt};

/// Ports this process already handed out, so two servers started at the
/// same moment never get the same one.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// `n` distinct free ports on 127.0.0.1: bind port 0, read the port, close.
///
/// Another process may grab a port between this call and the server's bind;
/// the server start functions retry with new ports when that happens.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    // Keep every listener open until all ports are chosen, so they differ.
    let mut listeners = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    let mut attempts = 0;
    while ports.len() < n {
        attempts += 1;
        let listener = TcpListener::bind("127.0.0.1:0").ctx(|| "bind 127.0.0.1:0".into())?;
        let port = listener
            .local_addr()
            .ctx(|| "local_addr of a fresh listener".into())?
            .port();
        if handed_out.insert(port) || attempts > 1000 {
            ports.push(port);
        }
        listeners.push(listener);
    }
    Ok(ports)
}

/// One free port on 127.0.0.1 (see [`free_ports`]).
pub fn free_port() -> Result<u16> {
    free_ports(1)?
        .into_iter()
        .next()
        .ok_or_else(|| HarnessError::new("no free port found"))
}

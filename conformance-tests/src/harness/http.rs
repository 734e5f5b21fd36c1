//! A minimal HTTP/1.0 client, enough for etcd's `/health` and JSON gateway.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::error::{HarnessError, Result, ResultExt};

/// Send one request and return the status code and the body.
pub(crate) fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<(u16, String)> {
    let what = || format!("{method} http://{addr}{path}");
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ctx(what)?;
    stream.set_read_timeout(Some(timeout)).ctx(what)?;
    stream.set_write_timeout(Some(timeout)).ctx(what)?;
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ctx(what)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ctx(what)?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| HarnessError::new(format!("{}: truncated response", what())))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| HarnessError::new(format!("{}: bad status line in {head:?}", what())))?;
    Ok((status, body.to_owned()))
}

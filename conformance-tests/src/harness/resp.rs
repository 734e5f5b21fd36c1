//! A minimal RESP2 client: send one command, read one reply frame.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::error::{HarnessError, Result, ResultExt};

/// Send `args` as one command to the Redis server at `addr` and return the
/// reply frame exactly as received (e.g. `"+PONG\r\n"`, `"-ERR …\r\n"`,
/// `"$3\r\nfoo\r\n"`).
pub(crate) fn command(addr: SocketAddr, args: &[String], timeout: Duration) -> Result<String> {
    let what = || format!("redis command {args:?} to {addr}");
    let stream = TcpStream::connect_timeout(&addr, timeout).ctx(what)?;
    stream.set_read_timeout(Some(timeout)).ctx(what)?;
    stream.set_write_timeout(Some(timeout)).ctx(what)?;
    let _ = stream.set_nodelay(true);
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    (&stream).write_all(&request).ctx(what)?;
    let mut reader = BufReader::new(&stream);
    let mut raw = Vec::new();
    read_frame(&mut reader, &mut raw).map_err(|e| e.context(what()))?;
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

/// Read one frame, appending its bytes to `raw`.
fn read_frame(reader: &mut impl BufRead, raw: &mut Vec<u8>) -> Result<()> {
    let start = raw.len();
    let n = reader.read_until(b'\n', raw).ctx(|| "read".into())?;
    if n == 0 {
        return Err(HarnessError::new("connection closed before a reply"));
    }
    let line = String::from_utf8_lossy(&raw[start..]).trim_end().to_owned();
    let (kind, rest) = line.split_at(line.char_indices().nth(1).map_or(line.len(), |(i, _)| i));
    match kind {
        "+" | "-" | ":" => Ok(()),
        "$" => {
            let len: i64 = rest.parse().ctx(|| format!("bad bulk length {line:?}"))?;
            if len >= 0 {
                let mut body = vec![0; usize::try_from(len).unwrap_or(0) + 2];
                reader.read_exact(&mut body).ctx(|| "read bulk".into())?;
                raw.extend_from_slice(&body);
            }
            Ok(())
        }
        "*" => {
            let len: i64 = rest.parse().ctx(|| format!("bad array length {line:?}"))?;
            for _ in 0..len.max(0) {
                read_frame(reader, raw)?;
            }
            Ok(())
        }
        _ => Err(HarnessError::new(format!("unexpected RESP line {line:?}"))),
    }
}

//! The line protocol between workers and the coordinator (JSON, one request, one reply).

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// What a worker asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// May I start another cycle?
    Cycle {
        /// The worker.
        worker: u32,
    },
    /// I checked my guard and am about to write: the coordinator's chance to hit the holder
    /// at the worst moment.
    Checkpoint {
        /// The worker.
        worker: u32,
        /// Its token.
        token: u64,
    },
    /// Read the counter (through the fence unless `fenced` is false).
    Read {
        /// The worker.
        worker: u32,
        /// Its token.
        token: u64,
        /// Whether the fence checks the token.
        fenced: bool,
        /// The place to read (semaphore runs); `None`: the one counter.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slot: Option<u32>,
    },
    /// Write the counter (through the fence unless `fenced` is false).
    Write {
        /// The worker.
        worker: u32,
        /// Its token.
        token: u64,
        /// The new value.
        value: u64,
        /// Whether the fence checks the token.
        fenced: bool,
        /// The place to write (semaphore runs); `None`: the one counter.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slot: Option<u32>,
    },
    /// A permit holder takes a place (semaphore runs): one whose last holder's token is below
    /// `token` and not among `live` (the other permits the semaphore holds now), the one taken
    /// longest ago first; taking it is a fenced read there, which raises its mark to `token`.
    Claim {
        /// The worker.
        worker: u32,
        /// Its permit's token.
        token: u64,
        /// The tokens of the other permits that hold now (`Semaphore::holders`).
        live: Vec<u64>,
        /// Whether the fence checks the token.
        fenced: bool,
    },
}

/// What the coordinator answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// Carry on.
    Go,
    /// Stop: the run is over.
    Stop,
    /// Block the runtime thread for this long before writing (the starved-holder fault).
    Starve {
        /// How long, in milliseconds.
        ms: u64,
    },
    /// The counter's value (after a write: the value written).
    Value {
        /// The value.
        value: u64,
    },
    /// The fence rejected the token.
    Rejected {
        /// The resource's mark.
        high_water: u64,
    },
    /// The place claimed, and its value.
    Place {
        /// The place's index.
        slot: u32,
        /// Its value.
        value: u64,
    },
    /// No place is free: each is held by a live permit or by a newer one.
    NoPlace,
}

/// One side of a connection.
#[derive(Debug)]
pub struct Channel {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
    line: String,
}

impl Channel {
    /// Wraps a connected stream.
    pub fn new(stream: UnixStream) -> Self {
        let (read, write) = stream.into_split();
        Self {
            read: BufReader::new(read),
            write,
            line: String::new(),
        }
    }

    /// Sends one message.
    ///
    /// # Errors
    /// I/O errors.
    pub async fn send(&mut self, message: &impl Serialize) -> std::io::Result<()> {
        let mut line = serde_json::to_string(message).map_err(std::io::Error::other)?;
        line.push('\n');
        self.write.write_all(line.as_bytes()).await
    }

    /// Receives one message; `None` when the peer closed.
    ///
    /// # Errors
    /// I/O errors and malformed messages.
    pub async fn recv<T: for<'de> Deserialize<'de>>(&mut self) -> std::io::Result<Option<T>> {
        self.line.clear();
        if self.read.read_line(&mut self.line).await? == 0 {
            return Ok(None);
        }
        serde_json::from_str(&self.line)
            .map(Some)
            .map_err(std::io::Error::other)
    }

    /// Sends `request` and waits for the reply.
    ///
    /// # Errors
    /// I/O errors, or the coordinator closing the connection.
    pub async fn call(&mut self, request: &Request) -> std::io::Result<Reply> {
        self.send(request).await?;
        self.recv()
            .await?
            .ok_or_else(|| std::io::Error::other("the coordinator closed the connection"))
    }
}

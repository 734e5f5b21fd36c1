//! A TCP proxy for fault injection: delay, stall and cut connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::error::{Result, ResultExt};

/// A TCP proxy on a free 127.0.0.1 port forwarding every connection to an
/// upstream address, with knobs to delay, stall and cut traffic.
///
/// It runs on its own thread with its own tokio runtime, so it does not
/// depend on (and outlives) the runtime of the test that uses it. Dropping it
/// stops it and closes every connection.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct State {
    upstream: watch::Sender<SocketAddr>,
    delay: watch::Sender<Duration>,
    stalled: watch::Sender<bool>,
    cut: watch::Sender<u64>,
    connections: AtomicUsize,
}

impl TcpProxy {
    /// Start a proxy to `upstream`.
    pub fn start(upstream: SocketAddr) -> Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .ctx(|| "bind the proxy listener on 127.0.0.1:0".into())?;
        listener
            .set_nonblocking(true)
            .ctx(|| "make the proxy listener non-blocking".into())?;
        let addr = listener
            .local_addr()
            .ctx(|| "proxy listener address".into())?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .ctx(|| "build the proxy runtime".into())?;
        let state = Arc::new(State {
            upstream: watch::Sender::new(upstream),
            delay: watch::Sender::new(Duration::ZERO),
            stalled: watch::Sender::new(false),
            cut: watch::Sender::new(0),
            connections: AtomicUsize::new(0),
        });
        let (shutdown, shutdown_rx) = oneshot::channel();
        let thread_state = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name(format!("fencelock-proxy-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        _ = shutdown_rx => {}
                        () = accept_loop(listener, thread_state) => {}
                    }
                });
                // Dropping the runtime drops every connection task, closing
                // their sockets.
            })
            .ctx(|| "start the proxy thread".into())?;
        Ok(Self {
            addr,
            state,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Where new connections go.
    pub fn upstream(&self) -> SocketAddr {
        *self.state.upstream.borrow()
    }

    /// Send new connections to `upstream` from now on, like a router re-pointed after a
    /// failover. Current connections stay with the old server until it or [`Self::cut`] ends
    /// them.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        self.state.upstream.send_replace(upstream);
    }

    /// Deliver every chunk `delay` after it was read, in both directions
    /// (latency, not a bandwidth limit: chunks in flight are pipelined).
    /// Applies to data not yet forwarded, on current and new connections.
    pub fn set_delay(&self, delay: Duration) {
        self.state.delay.send_replace(delay);
    }

    /// Hold all bytes, in both directions, until [`Self::unstall`]; they are
    /// still read and buffered, so nothing is lost. New connections are still
    /// accepted (and stalled too).
    pub fn stall(&self) {
        self.state.stalled.send_replace(true);
    }

    /// Forward again, starting with the held bytes.
    pub fn unstall(&self) {
        self.state.stalled.send_replace(false);
    }

    /// Drop every current connection abruptly (TCP reset to both sides),
    /// discarding held bytes. Later connections work normally.
    pub fn cut(&self) {
        self.state.cut.send_modify(|n| *n += 1);
    }

    /// How many proxied connections are open.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                let upstream = *state.upstream.borrow();
                tokio::spawn(handle(client, upstream, Arc::clone(&state)));
            }
            Err(e) => {
                tracing::warn!("proxy accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Decrements the connection count on drop.
struct Counted<'a>(&'a AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(mut client: TcpStream, upstream: SocketAddr, state: Arc<State>) {
    let mut cut = state.cut.subscribe();
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        let _ = client.set_zero_linger();
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    state.connections.fetch_add(1, Ordering::SeqCst);
    let _counted = Counted(&state.connections);
    let was_cut = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        tokio::select! {
            _ = async {
                tokio::join!(
                    forward(client_read, server_write, &state),
                    forward(server_read, client_write, &state),
                )
            } => false,
            _ = cut.changed() => true,
        }
    };
    if was_cut {
        // Zero linger: closing sends RST instead of FIN.
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
    }
}

/// Copy one direction, applying the delay and the stall to every chunk.
async fn forward(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin, state: &State) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
        // Dropping `tx` ends the writer once it has forwarded everything.
    };
    let write = async {
        let mut stalled = state.stalled.subscribe();
        while let Some((read_at, bytes)) = rx.recv().await {
            let delay = *state.delay.borrow();
            tokio::time::sleep_until(read_at + delay).await;
            if stalled.wait_for(|s| !*s).await.is_err() {
                break;
            }
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

//! A TCP proxy that delays every byte its client sends by a set time, as `tc netem delay` on
//! the client's link does (Toxiproxy's latency toxic, upstream): what arrives is passed on, in
//! order, once it is that old, with no limit on throughput; each round trip takes that much
//! longer. Answers pass at once. The partition tests put it in the database's namespace, between an
//! instance and PostgreSQL, since this kernel has no `netem` to delay the link itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::netns::Network;

pub struct LatencyProxy {
    /// Where it listens, in the database's namespace.
    pub address: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    watch: Arc<Watch>,
    stop: Option<oneshot::Sender<()>>,
}

/// Bytes to look for in what clients send, and a wake-up when a chunk holding them arrives.
#[derive(Default)]
struct Watch {
    needle: std::sync::Mutex<Option<Vec<u8>>>,
    seen: tokio::sync::Notify,
}

impl Watch {
    fn look_at(&self, chunk: &[u8]) {
        let needle = self.needle.lock().expect("the needle");
        let Some(needle) = needle.as_deref() else {
            return;
        };
        if chunk.windows(needle.len()).any(|window| window == needle) {
            self.seen.notify_waiters();
        }
    }
}

impl LatencyProxy {
    /// A proxy in the database's namespace listening on `listen` (an address of that
    /// namespace, port chosen by the system) and passing on to `target`, with no delay yet.
    pub fn start(network: &Network, listen: &str, target: SocketAddr) -> LatencyProxy {
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = oneshot::channel();
        let (bound, address) = std::sync::mpsc::channel();
        let listen = listen.to_owned();
        let delay = delay_ms.clone();
        let watch = Arc::new(Watch::default());
        let watching = watch.clone();
        network.in_database_namespace(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the proxy");
            runtime.block_on(async move {
                let listener = TcpListener::bind((listen.as_str(), 0))
                    .await
                    .expect("the proxy listens");
                let _ = bound.send(listener.local_addr().expect("its address"));
                tokio::select! {
                    _ = stopped => {}
                    () = serve(listener, target, delay, watching) => {}
                }
            });
        });
        LatencyProxy {
            address: address.recv().expect("the proxy started"),
            delay_ms,
            watch,
            stop: Some(stop),
        }
    }

    /// Returns when a client next sends bytes holding `needle` (a statement's text, say): with
    /// a delay set, that statement has not reached the database yet, nor its answer the client.
    pub async fn sent(&self, needle: &[u8]) {
        *self.watch.needle.lock().expect("the needle") = Some(needle.to_vec());
        self.watch.seen.notified().await;
    }

    /// Every byte the client sends from now on is passed on `delay` after it arrived.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }
}

impl Drop for LatencyProxy {
    /// Ends the proxy's runtime, and with it every connection through it.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn serve(
    listener: TcpListener,
    target: SocketAddr,
    delay: Arc<AtomicU64>,
    watch: Arc<Watch>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let (delay, watch) = (delay.clone(), watch.clone());
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(target).await else {
                return;
            };
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(pass_on(client_read, server_write, delay, Some(watch)));
            tokio::spawn(pass_on(server_read, client_write, Arc::default(), None));
        });
    }
}

/// Copies `from` to `to`, each chunk once it is `delay` old, shown to `watch` as it arrives;
/// closes `to` after `from` ends.
async fn pass_on(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    delay: Arc<AtomicU64>,
    watch: Option<Arc<Watch>>,
) {
    let (queue, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((at, bytes)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buffer = vec![0u8; 64 * 1024];
    while let Ok(read) = from.read(&mut buffer).await {
        if read == 0 {
            break;
        }
        if let Some(watch) = &watch {
            watch.look_at(&buffer[..read]);
        }
        let at = Instant::now() + Duration::from_millis(delay.load(Ordering::Relaxed));
        if queue.send((at, buffer[..read].to_vec())).is_err() {
            break;
        }
    }
    drop(queue);
    let _ = writer.await;
}

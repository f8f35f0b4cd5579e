//! `Connection`: one keep-alive HTTP/1.1 connection of one virtual user, reopened when the
//! server closes it.
//!
//! hyper's connection future is driven inside the user's own task, raced against the request,
//! rather than spawned: a request and its answer then cost no wake-up of another task, which
//! matters when the load generator shares two cores with the server.

use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::client::conn::http1;
use hyper::header;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::target::Body;

/// After a failed connect the user waits this long, so a server that is down does not turn
/// the load generator into a busy loop of refused connects.
const RECONNECT_PAUSE: Duration = Duration::from_millis(20);

type Driver = Pin<Box<http1::Connection<TokioIo<TcpStream>, Body>>>;

struct Live {
    sender: http1::SendRequest<Body>,
    driver: Driver,
}

/// Why a request got no HTTP answer.
#[derive(Debug)]
pub enum TransportError {
    Connect(std::io::Error),
    Http(hyper::Error),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Connect(error) => write!(f, "connect: {error}"),
            TransportError::Http(error) => write!(f, "http: {error}"),
        }
    }
}

impl std::error::Error for TransportError {}

pub struct Connection {
    addr: SocketAddr,
    live: Option<Live>,
}

impl Connection {
    pub fn new(addr: SocketAddr) -> Connection {
        Connection { addr, live: None }
    }

    /// Opens the connection now (setup does, so the first measured request pays no connect).
    pub async fn connect(&mut self) -> Result<(), TransportError> {
        if self.live.is_none() {
            self.live = Some(self.open().await?);
        }
        Ok(())
    }

    async fn open(&self) -> Result<Live, TransportError> {
        let stream = match TcpStream::connect(self.addr).await {
            Ok(stream) => stream,
            Err(error) => {
                tokio::time::sleep(RECONNECT_PAUSE).await;
                return Err(TransportError::Connect(error));
            }
        };
        stream.set_nodelay(true).map_err(TransportError::Connect)?;
        let (sender, driver) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(TransportError::Http)?;
        Ok(Live {
            sender,
            driver: Box::pin(driver),
        })
    }

    /// Sends `request` and reads the whole answer. A connection the server closed is dropped
    /// (the error is this request's), and the next request opens a new one.
    pub async fn send(
        &mut self,
        request: Request<Body>,
    ) -> Result<(StatusCode, Bytes), TransportError> {
        let Live {
            mut sender,
            mut driver,
        } = match self.live.take() {
            Some(live) => live,
            None => self.open().await?,
        };
        let (answer, driver_ended) = {
            let exchange = async {
                sender.ready().await?;
                let response = sender.send_request(request).await?;
                let status = response.status();
                let closing = response
                    .headers()
                    .get(header::CONNECTION)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                let body = response.into_body().collect().await?.to_bytes();
                Ok::<_, hyper::Error>((status, body, closing))
            };
            tokio::pin!(exchange);
            tokio::select! {
                biased;
                answer = &mut exchange => (answer, false),
                // The connection ended; the exchange still finishes (with the answer the
                // connection delivered before closing, or with its error).
                _ = driver.as_mut() => (exchange.await, true),
            }
        };
        let (status, body, closing) = answer.map_err(TransportError::Http)?;
        if !(driver_ended || closing) {
            self.live = Some(Live { sender, driver });
        }
        Ok((status, body))
    }
}

//! A raw HTTP/1.1 client over a `TcpStream`: it sends exactly the bytes it is given (so a
//! failure can be replayed byte for byte) and reads one answer, keeping the connection for
//! the next request when the server does.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One answer, as read off the wire.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// The server will not take another request on this connection.
    pub close: bool,
}

#[derive(Debug)]
pub enum Outcome {
    Answer(Response),
    /// The connection ended (closed or reset) before a complete answer.
    Closed(String),
    /// No complete answer before the deadline.
    Hung,
}

/// A keep-alive connection to the server, opened again whenever the last one ended.
pub struct Connection {
    address: SocketAddr,
    stream: Option<TcpStream>,
    buffer: Vec<u8>,
    /// Requests sent again because the kept-alive connection they met was closed.
    pub retries: u64,
}

impl Connection {
    pub fn new(address: SocketAddr) -> Connection {
        Connection {
            address,
            stream: None,
            buffer: Vec::new(),
            retries: 0,
        }
    }

    /// Whether a kept-alive connection is waiting for the next request.
    pub fn is_open(&self) -> bool {
        self.stream.is_some()
    }

    /// Sends `request` and reads its answer (without a body when `head`). A fresh connection
    /// is used when `fresh`, and the connection is dropped afterwards when it cannot be
    /// trusted: the server closes it, or the request was not written whole.
    pub async fn exchange(
        &mut self,
        request: &[u8],
        head: bool,
        fresh: bool,
        half_close: bool,
        deadline: Duration,
    ) -> Outcome {
        let reused = self.stream.is_some() && !fresh;
        if fresh {
            self.stream = None;
        }
        let mut outcome = self.attempt(request, head, half_close, deadline).await;
        // A server may close a kept-alive connection whenever it likes (its keep-alive timer,
        // a previous request's unread body); a request that met such a closed connection got
        // no answer at all, and any client sends it again on a new one.
        if reused && matches!(&outcome, Outcome::Closed(why) if why.ends_with(" after 0 bytes")) {
            self.retries += 1;
            self.stream = None;
            outcome = self.attempt(request, head, half_close, deadline).await;
        }
        if fresh {
            // Whatever followed the request on its own connection must not meet the next one.
            self.stream = None;
        }
        outcome
    }

    async fn attempt(
        &mut self,
        request: &[u8],
        head: bool,
        half_close: bool,
        deadline: Duration,
    ) -> Outcome {
        if self.stream.is_none() {
            match TcpStream::connect(self.address).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    self.stream = Some(stream);
                    self.buffer.clear();
                }
                Err(e) => return Outcome::Closed(format!("connect: {e}")),
            }
        }
        let Some(stream) = self.stream.as_mut() else {
            unreachable!("connected just above");
        };
        let buffer = &mut self.buffer;
        let (mut reader, mut writer) = stream.split();
        let exchange = async {
            let write = async {
                let written = writer.write_all(request).await;
                let _ = writer.flush().await;
                if half_close {
                    let _ = writer.shutdown().await;
                }
                written
            };
            let read = read_response(&mut reader, buffer, head);
            tokio::pin!(write, read);
            // The server may answer before the whole request is written (a body over the
            // limit), so reading never waits for writing.
            let written = tokio::select! {
                written = &mut write => written.is_ok(),
                outcome = &mut read => return (outcome, false),
            };
            (read.await, written)
        };
        let (outcome, written) = match tokio::time::timeout(deadline, exchange).await {
            Ok(done) => done,
            Err(_) => (Outcome::Hung, false),
        };
        let keep = written && !half_close && matches!(&outcome, Outcome::Answer(r) if !r.close);
        if !keep {
            self.stream = None;
            self.buffer.clear();
        }
        outcome
    }
}

/// Sends `first` at once, then `rest` a `piece` at a time, one every `every`, then nothing,
/// until the server answers or ends the connection. Returns what came and when.
pub async fn dribble(
    address: SocketAddr,
    first: &[u8],
    rest: &[u8],
    piece: usize,
    every: Duration,
    deadline: Duration,
) -> (Outcome, Duration) {
    let started = std::time::Instant::now();
    let mut stream = match TcpStream::connect(address).await {
        Ok(stream) => stream,
        Err(e) => return (Outcome::Closed(format!("connect: {e}")), started.elapsed()),
    };
    let (mut reader, mut writer) = stream.split();
    let mut buffer = Vec::new();
    let write = async {
        if writer.write_all(first).await.is_err() {
            return std::future::pending().await;
        }
        for piece in rest.chunks(piece.max(1)) {
            tokio::time::sleep(every).await;
            if writer.write_all(piece).await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await
    };
    let read = read_response(&mut reader, &mut buffer, false);
    let outcome = tokio::time::timeout(deadline, async {
        tokio::select! {
            outcome = read => outcome,
            () = write => unreachable!("the writer never finishes"),
        }
    })
    .await
    .unwrap_or(Outcome::Hung);
    (outcome, started.elapsed())
}

/// Reads until `buffer` holds `want` bytes; `Err` with how many bytes came when the stream ends.
async fn fill(
    reader: &mut (impl AsyncRead + Unpin),
    buffer: &mut Vec<u8>,
    want: usize,
) -> Result<(), String> {
    let mut chunk = [0u8; 16 * 1024];
    while buffer.len() < want {
        match reader.read(&mut chunk).await {
            Ok(0) => return Err(format!("eof after {} bytes", buffer.len())),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("{} after {} bytes", e.kind(), buffer.len())),
        }
    }
    Ok(())
}

async fn fill_until(
    reader: &mut (impl AsyncRead + Unpin),
    buffer: &mut Vec<u8>,
    needle: &[u8],
    from: usize,
) -> Result<usize, String> {
    loop {
        if let Some(at) = find(&buffer[from.min(buffer.len())..], needle) {
            return Ok(from + at);
        }
        fill(reader, buffer, buffer.len() + 1).await?;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One response: interim 1xx answers are skipped, the body is framed by `Content-Length`,
/// chunked encoding, or the end of the connection.
async fn read_response(
    reader: &mut (impl AsyncRead + Unpin),
    buffer: &mut Vec<u8>,
    head: bool,
) -> Outcome {
    loop {
        let end = match fill_until(reader, buffer, b"\r\n\r\n", 0).await {
            Ok(end) => end,
            Err(why) => return Outcome::Closed(why),
        };
        let head_text = String::from_utf8_lossy(&buffer[..end]).into_owned();
        buffer.drain(..end + 4);
        let mut lines = head_text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let Some(status) = parts.next().and_then(|s| s.parse::<u16>().ok()) else {
            return Outcome::Closed(format!("not a status line: {status_line:?}"));
        };
        let headers: Vec<(String, Vec<u8>)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().as_bytes().to_vec()))
            .collect();
        if (100..200).contains(&status) {
            continue;
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| String::from_utf8_lossy(v).to_ascii_lowercase())
        };
        // After `Connection: upgrade` the server hands the connection over, and ends it.
        let mut close = version == "HTTP/1.0"
            || header("connection").is_some_and(|v| v.contains("close") || v.contains("upgrade"));
        let body = if head || status == 204 || status == 304 {
            Vec::new()
        } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            match read_chunked(reader, buffer).await {
                Ok(body) => body,
                Err(why) => return Outcome::Closed(format!("in a chunked body: {why}")),
            }
        } else if let Some(length) = header("content-length") {
            let Ok(length) = length.trim().parse::<usize>() else {
                return Outcome::Closed(format!("bad content-length {length:?}"));
            };
            if let Err(why) = fill(reader, buffer, length).await {
                return Outcome::Closed(format!("in a body of {length} bytes: {why}"));
            }
            buffer.drain(..length).collect()
        } else {
            close = true;
            let mut rest = std::mem::take(buffer);
            let _ = reader.read_to_end(&mut rest).await;
            rest
        };
        return Outcome::Answer(Response {
            status,
            headers,
            body,
            close,
        });
    }
}

async fn read_chunked(
    reader: &mut (impl AsyncRead + Unpin),
    buffer: &mut Vec<u8>,
) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let end = fill_until(reader, buffer, b"\r\n", 0).await?;
        let size_line = String::from_utf8_lossy(&buffer[..end]).into_owned();
        buffer.drain(..end + 2);
        let size_text = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_line:?}"))?;
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                let end = fill_until(reader, buffer, b"\r\n", 0).await?;
                buffer.drain(..end + 2);
                if end == 0 {
                    return Ok(body);
                }
            }
        }
        fill(reader, buffer, size + 2).await?;
        body.extend(buffer.drain(..size));
        buffer.drain(..2);
    }
}

/// Bytes as a Rust byte-string literal would show them, cut after `limit` bytes.
pub fn escape(bytes: &[u8], limit: usize) -> String {
    let mut shown: String = bytes[..bytes.len().min(limit)]
        .iter()
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    if bytes.len() > limit {
        shown.push_str(&format!("… ({} bytes in all)", bytes.len()));
    }
    shown
}

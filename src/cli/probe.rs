//! `tokenledger probe`: asks the instance serving on this machine whether it is ready
//! (`GET /_ready`), for a container's health check where there is no curl. Plain HTTP/1.1 over
//! loopback, two seconds at most in all.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const TIMEOUT: Duration = Duration::from_secs(2);

/// Where the instance listening on `host:port` answers from this machine: that address, or
/// loopback when it listens on every address (`0.0.0.0`, `::`).
pub fn address(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    // `[::1]`, as an address is written in a URL, is the HOST `serve` binds as `[::1]:port`.
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let listening = (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut found| found.next())
        .with_context(|| format!("HOST {host:?} does not resolve"))?;
    let loopback = match listening.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        IpAddr::V6(v6) if v6.is_unspecified() => Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        _ => None,
    };
    Ok(loopback.map_or(listening, |ip| SocketAddr::new(ip, port)))
}

/// The verdict on an answer's status line: ready on a 200, else why not.
pub fn verdict(status_line: &str) -> Result<(), String> {
    let mut parts = status_line.split(' ');
    match (parts.next(), parts.next()) {
        (Some(version), Some("200")) if version.starts_with("HTTP/1.") => Ok(()),
        (Some(version), Some(status)) if version.starts_with("HTTP/1.") => {
            Err(format!("not ready: /_ready answered {status}"))
        }
        _ => Err(format!("not an HTTP answer: {status_line:?}")),
    }
}

pub fn probe(address: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + TIMEOUT;
    let timed_out = || anyhow::anyhow!("{address}: no answer within {} s", TIMEOUT.as_secs());
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
    };
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT)
        .with_context(|| format!("nothing answers on {address}"))?;
    stream.set_write_timeout(left())?;
    write!(
        stream,
        "GET /_ready HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|_| timed_out())?;
    // The status line is all the verdict needs; it comes first, in the first read or two.
    let mut head = Vec::new();
    let mut buffer = [0; 256];
    while !head.contains(&b'\n') && head.len() < 1024 {
        stream.set_read_timeout(Some(left().ok_or_else(timed_out)?))?;
        let read = match stream.read(&mut buffer) {
            Ok(read) => read,
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timed_out());
            }
            Err(error) => return Err(error).with_context(|| format!("no answer from {address}")),
        };
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let text = String::from_utf8_lossy(&head);
    let status_line = text.lines().next().unwrap_or("").trim_end();
    match verdict(status_line) {
        Ok(()) => Ok(()),
        Err(why) => bail!("{address}: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_200_then_ready_and_given_anything_else_then_why_not() {
        assert_eq!(verdict("HTTP/1.1 200 OK"), Ok(()));
        assert_eq!(
            verdict("HTTP/1.1 503 Service Unavailable"),
            Err("not ready: /_ready answered 503".to_owned())
        );
        assert!(verdict("").unwrap_err().contains("not an HTTP answer"));
        assert!(verdict("SSH-2.0-OpenSSH_9.2").is_err());
    }

    #[test]
    fn given_a_server_that_answers_a_byte_at_a_time_then_it_is_given_two_seconds_in_all() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            for byte in b"HTTP/1.1 200 OK\r\n" {
                if stream.write_all(&[*byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        // Each byte comes well within a read's timeout; only a deadline for the whole answer
        // stops the probe before the line is complete.
        let error = probe(address).unwrap_err().to_string();
        assert!(error.contains("no answer within 2 s"), "{error}");
        server.join().unwrap();
    }

    #[test]
    fn given_every_address_then_loopback_is_probed() {
        assert_eq!(
            address("0.0.0.0", 1337).unwrap().to_string(),
            "127.0.0.1:1337"
        );
        assert_eq!(address("::", 80).unwrap().to_string(), "[::1]:80");
        assert_eq!(address("10.1.2.3", 9).unwrap().to_string(), "10.1.2.3:9");
        assert!(address("localhost", 9).unwrap().ip().is_loopback());
        assert_eq!(address("[::1]", 9).unwrap().to_string(), "[::1]:9");
        assert_eq!(address("[::]", 9).unwrap().to_string(), "[::1]:9");
        assert!(address("no-such-host.invalid", 9).is_err());
    }
}

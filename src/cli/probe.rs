//! `tokenledger probe`: asks the instance serving on this machine whether it is ready
//! (`GET /_ready`), for a container's health check where there is no curl. Plain HTTP/1.1 over
//! loopback, two seconds at most.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};

const TIMEOUT: Duration = Duration::from_secs(2);

/// Where the instance listening on `host:port` answers from this machine: that address, or
/// loopback when it listens on every address (`0.0.0.0`, `::`).
pub fn address(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
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
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT)
        .with_context(|| format!("nothing answers on {address}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(
        stream,
        "GET /_ready HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    // The status line is all the verdict needs; it comes first, in the first read or two.
    let mut head = Vec::new();
    let mut buffer = [0; 256];
    while !head.contains(&b'\n') && head.len() < 1024 {
        let read = stream
            .read(&mut buffer)
            .with_context(|| format!("no answer from {address}"))?;
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
    fn given_every_address_then_loopback_is_probed() {
        assert_eq!(
            address("0.0.0.0", 1337).unwrap().to_string(),
            "127.0.0.1:1337"
        );
        assert_eq!(address("::", 80).unwrap().to_string(), "[::1]:80");
        assert_eq!(address("10.1.2.3", 9).unwrap().to_string(), "10.1.2.3:9");
        assert!(address("localhost", 9).unwrap().ip().is_loopback());
        assert!(address("no-such-host.invalid", 9).is_err());
    }
}

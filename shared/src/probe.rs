//! `--probe`: a service checks its own `/readyz`, for images without curl
//! (compose healthchecks, exec probes). A plain HTTP/1.0 request over TCP with
//! one deadline: no TLS, no client library, nothing to set up.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The whole probe (connect, request, status line) must finish within this.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where to reach an ops server that listens on `listen`: an unspecified
/// address (`0.0.0.0`, `::`) is reached on the loopback of the same family.
pub fn target(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

/// `GET /readyz` on `addr`: `Ok` on a 200, otherwise why not.
pub async fn readyz(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, request(addr, "/readyz")).await {
        Ok(Ok(200)) => Ok(()),
        Ok(Ok(status)) => Err(format!("http://{addr}/readyz answered {status}")),
        Ok(Err(e)) => Err(format!("http://{addr}/readyz: {e}")),
        Err(_) => Err(format!(
            "http://{addr}/readyz: no answer within {timeout:?}"
        )),
    }
}

/// Sends one request and returns the status code of the answer.
async fn request(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    // The status line is all we need: read until its end (or the answer's).
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    status_code(&head).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the answer is not HTTP (no status line)",
        )
    })
}

/// `HTTP/1.x 200 OK` → 200.
fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-shot server answering every connection with `answer`.
    async fn server(answer: &'static str) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_200_is_ready_and_anything_else_is_not() {
        let ok = server("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        assert_eq!(readyz(ok, PROBE_TIMEOUT).await, Ok(()));

        let unavailable = server("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        let err = readyz(unavailable, PROBE_TIMEOUT).await.unwrap_err();
        assert!(err.contains("503"), "{err}");

        let garbage = server("SSH-2.0-OpenSSH\r\n").await;
        let err = readyz(garbage, PROBE_TIMEOUT).await.unwrap_err();
        assert!(err.contains("not HTTP"), "{err}");
    }

    #[tokio::test]
    async fn nothing_listening_or_a_silent_server_is_not_ready() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert!(readyz(addr, PROBE_TIMEOUT).await.is_err());

        // Accepts (the backlog does) but never answers: the deadline decides.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let err = readyz(silent.local_addr().unwrap(), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(err.contains("no answer"), "{err}");
    }

    #[test]
    fn an_unspecified_listen_address_is_probed_on_loopback() {
        let v4: SocketAddr = "0.0.0.0:9101".parse().unwrap();
        assert_eq!(target(v4), "127.0.0.1:9101".parse().unwrap());
        let v6: SocketAddr = "[::]:9102".parse().unwrap();
        assert_eq!(target(v6), "[::1]:9102".parse().unwrap());
        let fixed: SocketAddr = "10.1.2.3:9103".parse().unwrap();
        assert_eq!(target(fixed), fixed);
    }
}

//! A loopback TCP forwarder that a test can cut, to take a server away from
//! one client mid-test without touching the server itself (PostgreSQL is
//! shared by every test): after [`TcpProxy::cut`] every forwarded connection
//! is closed under its client and new ones are refused, exactly what a
//! client sees when the server behind it dies. [`TcpProxy::restore`] brings
//! it back on the same port, as a server that restarts.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A running forwarder to one upstream address.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    /// Cancels the current listener and its connections.
    cut: Arc<Mutex<CancellationToken>>,
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port for the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let cut = CancellationToken::new();
        tokio::spawn(accept(listener, upstream, cut.clone()));
        Self {
            addr,
            upstream,
            cut: Arc::new(Mutex::new(cut)),
        }
    }

    /// The port clients should connect to instead of the upstream's.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Closes every forwarded connection and stops listening: from now on a
    /// connection attempt is refused.
    pub fn cut(&self) {
        self.current().cancel();
    }

    /// Listens again on the same port after [`TcpProxy::cut`]: new
    /// connections are forwarded again (the cut ones stay closed).
    pub async fn restore(&self) {
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("bind the proxy's port again");
        let cut = CancellationToken::new();
        *self.cut.lock().expect("proxy lock") = cut.clone();
        tokio::spawn(accept(listener, self.upstream, cut));
    }

    fn current(&self) -> CancellationToken {
        self.cut.lock().expect("proxy lock").clone()
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.current().cancel();
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, cut: CancellationToken) {
    loop {
        let client = tokio::select! {
            () = cut.cancelled() => return, // drops the listener: refused from now on
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(_) => continue,
            },
        };
        tokio::spawn(forward(client, upstream, cut.clone()));
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, cut: CancellationToken) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        () = cut.cancelled() => {} // both sockets close here, mid-conversation
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
    }
}

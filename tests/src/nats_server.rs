//! Spawns private nats-server processes for tests, from the pinned binary
//! (`deploy/install-tools.sh` puts nats-server 2.15.1 under `.tools/`; set
//! `SWITCHYARD_NATS_SERVER` to use another path). Never the machine's own
//! server: Debian ships 2.9, which Switchyard refuses.

use std::{
    fs,
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tempfile::TempDir;

/// The nats-server version the tests pin.
pub const PINNED_VERSION: &str = "2.15.1";

/// Path of the pinned nats-server binary, or a panic that says how to get it.
pub fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("SWITCHYARD_NATS_SERVER") {
        return PathBuf::from(path);
    }
    let path = crate::repo_root().join(".tools/nats-server/bin/nats-server");
    assert!(
        path.exists(),
        "nats-server {PINNED_VERSION} not found at {}; run `bash deploy/install-tools.sh` (the test command does this for you)",
        path.display()
    );
    path
}

/// A free loopback TCP port (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// TLS material for a server (PEM files in the server's directory).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate a client must trust (self-signed: the cert itself).
    pub ca: PathBuf,
}

/// One running nats-server; killed and its store removed on drop.
pub struct NatsServer {
    child: Child,
    dir: TempDir,
    port: u16,
    config: String,
    scheme: &'static str,
}

impl std::fmt::Debug for NatsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsServer")
            .field("port", &self.port)
            .finish()
    }
}

impl NatsServer {
    /// A single JetStream server on a random loopback port.
    pub fn start() -> Self {
        Self::start_with(|_, _| String::new(), "nats")
    }

    /// A JetStream server that requires TLS, with a self-signed certificate for
    /// `localhost` made on the spot.
    pub fn start_tls() -> (Self, TlsFiles) {
        let mut tls_files = None;
        let server = Self::start_with(
            |dir, _| {
                let files = write_self_signed(dir);
                let block = format!(
                    "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
                    files.cert.display(),
                    files.key.display()
                );
                tls_files = Some(files);
                block
            },
            "tls",
        );
        let files = tls_files.expect("tls files written");
        (server, files)
    }

    fn start_with(
        extra: impl FnOnce(&std::path::Path, u16) -> String,
        scheme: &'static str,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let store = dir.path().join("store");
        let config = format!(
            "listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: \"{}\"\n  max_memory_store: 256MB\n  max_file_store: 4GB\n}}\n{}",
            store.display(),
            extra(dir.path(), port)
        );
        let child = spawn(&dir, &config, "server");
        let server = Self {
            child,
            dir,
            port,
            config,
            scheme,
        };
        server.wait_until_listening();
        server
    }

    /// `nats://127.0.0.1:<port>` (or `tls://localhost:<port>`).
    pub fn url(&self) -> String {
        match self.scheme {
            "tls" => format!("tls://localhost:{}", self.port),
            _ => format!("nats://127.0.0.1:{}", self.port),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id (for CPU and memory figures).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process (as a crash would), keeping its store.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the same server again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(&self.dir, &self.config, "server");
        self.wait_until_listening();
    }

    fn wait_until_listening(&self) {
        wait_for_port(self.port, &self.dir, "server");
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(dir: &TempDir, config: &str, name: &str) -> Child {
    let conf_path = dir.path().join(format!("{name}.conf"));
    fs::write(&conf_path, config).expect("write nats config");
    let log = fs::File::create(dir.path().join(format!("{name}.log"))).expect("log file");
    Command::new(binary())
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn nats-server")
}

fn wait_for_port(port: u16, dir: &TempDir, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            let log =
                fs::read_to_string(dir.path().join(format!("{name}.log"))).unwrap_or_default();
            panic!("nats-server did not listen on {port} within 20 s; its log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write_self_signed(dir: &std::path::Path) -> TlsFiles {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("self-signed certificate");
    let cert = dir.join("server-cert.pem");
    let key = dir.join("server-key.pem");
    fs::write(&cert, certified.cert.pem()).expect("write cert");
    fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    TlsFiles {
        ca: cert.clone(),
        cert,
        key,
    }
}

/// Three JetStream servers clustered on loopback ports, for fault tests.
pub struct NatsCluster {
    nodes: Vec<(Child, TempDir, u16, String)>,
}

impl std::fmt::Debug for NatsCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsCluster")
            .field("urls", &self.urls())
            .finish()
    }
}

impl NatsCluster {
    pub fn start() -> Self {
        let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes = route_ports
            .iter()
            .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let nodes: Vec<_> = (0..3)
            .map(|i| {
                let dir = tempfile::tempdir().expect("temp dir");
                let config = format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{}\njetstream {{\n  store_dir: \"{}\"\n  max_file_store: 2GB\n}}\ncluster {{\n  name: switchyard-test\n  listen: 127.0.0.1:{}\n  routes: [{routes}]\n}}\n",
                    client_ports[i],
                    dir.path().join("store").display(),
                    route_ports[i],
                );
                let child = spawn(&dir, &config, "server");
                (child, dir, client_ports[i], config)
            })
            .collect();
        for (_, dir, port, _) in &nodes {
            wait_for_port(*port, dir, "server");
        }
        Self { nodes }
    }

    /// Client URLs of every node, comma-separated as NATS_URL accepts.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|(_, _, port, _)| format!("nats://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Kills node `i` (0..3).
    pub fn kill(&mut self, i: usize) {
        let (child, _, _, _) = &mut self.nodes[i];
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Restarts node `i` with its store.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        let (child, dir, port, config) = &mut self.nodes[i];
        *child = spawn(dir, config, "server");
        wait_for_port(*port, dir, "server");
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

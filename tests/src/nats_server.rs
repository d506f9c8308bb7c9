//! Spawns private nats-server processes for tests, from the pinned binary
//! (`deploy/install-tools.sh` puts nats-server 2.15.1 under `.tools/`; set
//! `SWITCHYARD_NATS_SERVER` to use another path). Never the machine's own
//! server: Debian ships 2.9, which Switchyard refuses.

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
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

/// A free loopback TCP port (bound then released), for a test's own
/// listeners and unreachable addresses. Not for nats-servers: they bind port
/// `-1` (their own pick) and report it, so no other test can take it between
/// the pick and the bind.
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
    /// The client port the server picked on its first start.
    port: u16,
    /// Its `server_name`, unique to this test.
    name: String,
    /// Its configuration but for the `listen` line.
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
        Self::start_with(|_| String::new(), "nats")
    }

    /// A JetStream server with the per-service users and permissions we ship
    /// (`deploy/nats/permissions.conf`), each user's password set to
    /// [`service_password`]. Anonymous clients are refused.
    pub fn start_with_permissions() -> Self {
        Self::start_with(|_| permissions_config(), "nats")
    }

    /// A JetStream server with `config` added to its configuration (users,
    /// authorization blocks).
    pub fn start_with_config(config: String) -> Self {
        Self::start_with(|_| config, "nats")
    }

    /// A JetStream server that requires TLS, with a self-signed certificate for
    /// `localhost` made on the spot.
    pub fn start_tls() -> (Self, TlsFiles) {
        let mut tls_files = None;
        let server = Self::start_with(
            |dir| {
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

    fn start_with(extra: impl FnOnce(&Path) -> String, scheme: &'static str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let name = unique_name("switchyard-test", &dir);
        let store = dir.path().join("store");
        let config = format!(
            "server_name: {name}\njetstream {{\n  store_dir: \"{}\"\n  max_memory_store: 256MB\n  max_file_store: 4GB\n}}\n{}",
            store.display(),
            extra(dir.path())
        );
        // Port -1: the server picks a free one and reports it.
        let child = spawn(&dir, &listen_on("-1", &config), "server");
        let ports = wait_for_ports(child, &dir, "server", &name);
        Self {
            child: ports.child,
            port: ports.client,
            dir,
            name,
            config,
            scheme,
        }
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

    /// What the server has logged so far (permission violations show here).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Kills the process (as a crash would), keeping its store.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the same server again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        let config = listen_on(&self.port.to_string(), &self.config);
        let child = spawn(&self.dir, &config, "server");
        let ports = wait_for_ports(child, &self.dir, "server", &self.name);
        assert_eq!(
            ports.client, self.port,
            "nats-server {} came back on another port",
            self.name
        );
        self.child = ports.child;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The users of `deploy/nats/permissions.conf`.
pub const SERVICE_USERS: [&str; 4] = ["ingest", "router", "sender", "cli"];

/// The password a test server started with [`NatsServer::start_with_permissions`]
/// gives `user`.
pub fn service_password(user: &str) -> String {
    format!("test-password-of-{user}")
}

/// The environment a service connects as `user` with: `NATS_USER`, `NATS_PASSWORD`.
pub fn service_credentials(user: &str) -> [(String, String); 2] {
    [
        ("NATS_USER".to_owned(), user.to_owned()),
        ("NATS_PASSWORD".to_owned(), service_password(user)),
    ]
}

/// `deploy/nats/permissions.conf`, preceded by the password variables it
/// reads (defined in the file rather than the server's environment).
pub fn permissions_config() -> String {
    let path = crate::repo_root().join("deploy/nats/permissions.conf");
    let shipped =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut config = String::new();
    for user in SERVICE_USERS {
        config.push_str(&format!(
            "SY_NATS_{}_PASSWORD: \"{}\"\n",
            user.to_ascii_uppercase(),
            service_password(user)
        ));
    }
    config.push_str(&shipped);
    config
}

/// `config` with a client listener on loopback port `port`.
fn listen_on(port: &str, config: &str) -> String {
    format!("listen: 127.0.0.1:{port}\n{config}")
}

fn spawn(dir: &TempDir, config: &str, name: &str) -> Child {
    let conf_path = dir.path().join(format!("{name}.conf"));
    fs::write(&conf_path, config).expect("write nats config");
    let log = fs::File::create(dir.path().join(format!("{name}.log"))).expect("log file");
    Command::new(binary())
        .arg("-c")
        .arg(&conf_path)
        // The server writes the ports it listens on to `<exe>_<pid>.ports` here.
        .arg("--ports_file_dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn nats-server")
}

/// A `server_name` no other test's server has: `<prefix>-<the temp dir's name>`.
fn unique_name(prefix: &str, dir: &TempDir) -> String {
    let suffix = dir
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().trim_start_matches('.').to_owned())
        .unwrap_or_default();
    format!("{prefix}-{suffix}")
}

/// A started server and the ports it reported.
struct Started {
    child: Child,
    client: u16,
    /// The route port, for a cluster node.
    cluster: Option<u16>,
}

/// Waits (at most 20 s) until the server `child` has written its ports file,
/// then checks that the server answering on the client port is this one (its
/// INFO names `server_name`). If not, kills it and panics with its log.
fn wait_for_ports(mut child: Child, dir: &TempDir, name: &str, server_name: &str) -> Started {
    match read_ports(&mut child, dir.path(), server_name) {
        Ok((client, cluster)) => Started {
            child,
            client,
            cluster,
        },
        Err(why) => {
            let _ = child.kill();
            let _ = child.wait();
            let log =
                fs::read_to_string(dir.path().join(format!("{name}.log"))).unwrap_or_default();
            panic!("nats-server {server_name} {why}; its log:\n{log}");
        }
    }
}

/// The client and route ports `child` reports in `<exe>_<pid>.ports` in `dir`.
fn read_ports(
    child: &mut Child,
    dir: &Path,
    server_name: &str,
) -> Result<(u16, Option<u16>), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let suffix = format!("_{}.ports", child.id());
    let ports = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("exited ({status}) before it listened"));
        }
        let file = fs::read_dir(dir)
            .map_err(|e| e.to_string())?
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().ends_with(&suffix));
        // Read it again if we caught it half-written.
        if let Some(ports) = file
            .and_then(|f| fs::read(f.path()).ok())
            .and_then(|bytes| serde_json::from_slice::<PortsFile>(&bytes).ok())
        {
            break ports;
        }
        if Instant::now() > deadline {
            return Err("wrote no ports file within 20 s".to_owned());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let client = ports
        .nats
        .first()
        .and_then(|url| port_of(url))
        .ok_or_else(|| format!("reported no client port: {:?}", ports.nats))?;
    let cluster = ports.cluster.first().and_then(|url| port_of(url));
    match info_server_name(client) {
        Ok(answered) if answered == server_name => Ok((client, cluster)),
        Ok(other) => Err(format!(
            "is not the server on port {client}: {other:?} answers there"
        )),
        Err(e) => Err(format!("did not introduce itself on port {client}: {e}")),
    }
}

/// What nats-server writes to its ports file (`--ports_file_dir`).
#[derive(serde::Deserialize)]
struct PortsFile {
    #[serde(default)]
    nats: Vec<String>,
    #[serde(default)]
    cluster: Vec<String>,
}

/// The port of `scheme://host:port`.
fn port_of(url: &str) -> Option<u16> {
    url.rsplit_once(':')?.1.parse().ok()
}

/// The `server_name` in the INFO line the server on `port` greets a client
/// with (sent in plain text, also by a TLS server).
fn info_server_name(port: u16) -> std::io::Result<String> {
    let stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stream), &mut line)?;
    let info = line
        .strip_prefix("INFO ")
        .and_then(|json| serde_json::from_str::<serde_json::Value>(json).ok())
        .ok_or_else(|| std::io::Error::other(format!("not an INFO line: {line:?}")))?;
    Ok(info["server_name"].as_str().unwrap_or_default().to_owned())
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
    /// The cluster's name, unique to this test.
    name: String,
    nodes: Vec<Node>,
}

struct Node {
    child: Child,
    dir: TempDir,
    name: String,
    client: u16,
    route: u16,
}

impl std::fmt::Debug for NatsCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsCluster")
            .field("urls", &self.urls())
            .finish()
    }
}

impl NatsCluster {
    /// Starts the nodes one after the other, each on ports of its own pick;
    /// each names the route ports of those started before it (the first
    /// names port 0, where nothing listens: JetStream wants a route to start
    /// with, and the others route to it). A restarted node names the other
    /// two.
    pub fn start() -> Self {
        let dirs: Vec<TempDir> = (0..3)
            .map(|_| tempfile::tempdir().expect("temp dir"))
            .collect();
        let cluster = unique_name("switchyard-test", &dirs[0]);
        let mut nodes: Vec<Node> = Vec::new();
        for (i, dir) in dirs.into_iter().enumerate() {
            let name = format!("n{i}-{cluster}");
            let mut routes: Vec<u16> = nodes.iter().map(|n| n.route).collect();
            if routes.is_empty() {
                routes.push(0);
            }
            let config = node_config(&name, &cluster, &dir, (None, None), &routes);
            let started = wait_for_ports(spawn(&dir, &config, "server"), &dir, "server", &name);
            let route = started
                .cluster
                .unwrap_or_else(|| panic!("nats-server {name} reported no route port"));
            nodes.push(Node {
                child: started.child,
                dir,
                name,
                client: started.client,
                route,
            });
        }
        Self {
            name: cluster,
            nodes,
        }
    }

    /// Client URLs of every node, comma-separated as NATS_URL accepts.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The index of the node whose `server_name` is `name` (as a stream's
    /// cluster info names its leader).
    pub fn node_named(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The `server_name` of node `i` (0..3).
    pub fn node_name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// Kills node `i` (0..3).
    pub fn kill(&mut self, i: usize) {
        let child = &mut self.nodes[i].child;
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Restarts node `i` with its store, on its ports, routed to the others.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        let routes: Vec<u16> = (0..self.nodes.len())
            .filter(|&j| j != i)
            .map(|j| self.nodes[j].route)
            .collect();
        let node = &mut self.nodes[i];
        let config = node_config(
            &node.name,
            &self.name,
            &node.dir,
            (Some(node.client), Some(node.route)),
            &routes,
        );
        let started = wait_for_ports(
            spawn(&node.dir, &config, "server"),
            &node.dir,
            "server",
            &node.name,
        );
        assert_eq!(
            (started.client, started.cluster),
            (node.client, Some(node.route)),
            "nats-server {} came back on other ports",
            node.name
        );
        node.child = started.child;
    }
}

/// A cluster node's configuration: its client and route ports (`None`: its
/// own pick) and the route ports it connects to.
fn node_config(
    name: &str,
    cluster: &str,
    dir: &TempDir,
    (client, route): (Option<u16>, Option<u16>),
    routes: &[u16],
) -> String {
    let port = |p: Option<u16>| p.map_or("-1".to_owned(), |p| p.to_string());
    let routes = routes
        .iter()
        .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "server_name: {name}\nlisten: 127.0.0.1:{}\njetstream {{\n  store_dir: \"{}\"\n  max_file_store: 2GB\n}}\ncluster {{\n  name: {cluster}\n  listen: 127.0.0.1:{}\n  routes: [{routes}]\n}}\n",
        port(client),
        dir.path().join("store").display(),
        port(route),
    )
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

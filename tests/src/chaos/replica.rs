//! One service replica as an operating-system process of its own, so the
//! chaos suite can `kill -9` it (an in-process service can only be aborted,
//! which closes its connections politely and runs no destructor of the
//! kernel's kind).
//!
//! The process is the `switchyard-chaos` binary of this crate started with
//! [`REPLICA_OF`] naming the service: [`serve_if_replica`] then runs exactly
//! what that service's own `main` runs (`shared::service::run_main` with the
//! service's settings and `run`). It is not the service's own binary because
//! an integration test of this crate can only name this crate's binaries
//! (`CARGO_BIN_EXE_*`): another package's binary is built only when that
//! package is, and a stale one would be tested silently.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

/// The environment variable that turns the `switchyard-chaos` binary into a
/// replica of the service it names (`ingest`, `router`, `sender`).
pub const REPLICA_OF: &str = "SWITCHYARD_CHAOS_REPLICA_OF";

/// Which service a replica runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Ingest,
    Router,
    Sender,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Ingest, Role::Router, Role::Sender];

    /// The value of [`REPLICA_OF`] for this role.
    pub fn name(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Router => "router",
            Role::Sender => "sender",
        }
    }
}

/// In a process started as a replica, runs the service it names and returns
/// its exit code; `None` in any other process.
pub async fn serve_if_replica() -> Option<ExitCode> {
    let role = std::env::var(REPLICA_OF).ok()?;
    let version = switchyard_build_info::version!();
    Some(match role.as_str() {
        "ingest" => {
            switchyard_shared::service::run_main(
                "switchyard-ingest",
                version,
                switchyard_ingest::DEFAULT_OPS_PORT,
                switchyard_ingest::Settings::from_env,
                switchyard_ingest::run,
            )
            .await
        }
        "router" => {
            switchyard_shared::service::run_main(
                "switchyard-router",
                version,
                switchyard_router::DEFAULT_OPS_PORT,
                switchyard_router::Settings::from_env,
                switchyard_router::run,
            )
            .await
        }
        "sender" => {
            switchyard_shared::service::run_main(
                "switchyard-sender",
                version,
                switchyard_sender::DEFAULT_OPS_PORT,
                switchyard_sender::Settings::from_env,
                switchyard_sender::run,
            )
            .await
        }
        other => {
            eprintln!("{REPLICA_OF}={other:?}: expected ingest, router or sender");
            ExitCode::from(2)
        }
    })
}

/// A running replica: its process, and what it takes to start it again on
/// the same ports (a restarted pod behind the same service address).
pub struct Replica {
    pub role: Role,
    pub index: usize,
    program: PathBuf,
    env: Vec<(String, String)>,
    ops_port: u16,
    /// The webhook port, for ingest.
    pub http_port: Option<u16>,
    log: PathBuf,
    child: Option<Child>,
    /// When the current process became ready.
    ready_at: Instant,
    /// How often it was killed.
    pub kills: u32,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.role.name(), self.index)
    }
}

impl Replica {
    /// Starts `program` as replica `index` of `role` with `env` (which must
    /// hold everything but the ops and webhook addresses, picked here), its
    /// output appended to `<log_dir>/<role>-<index>.log`, and waits until it
    /// reports ready.
    pub async fn start(
        program: &Path,
        role: Role,
        index: usize,
        env: Vec<(String, String)>,
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let free = crate::nats_server::free_port;
        let mut replica = Self {
            role,
            index,
            program: program.to_owned(),
            env,
            ops_port: free(),
            http_port: (role == Role::Ingest).then(free),
            log: log_dir.join(format!("{}-{index}.log", role.name())),
            child: None,
            ready_at: Instant::now(),
            kills: 0,
        };
        replica.spawn_until_ready().await?;
        Ok(replica)
    }

    /// `http://127.0.0.1:<webhook port>` of an ingest replica.
    pub fn ingest_base(&self) -> Option<String> {
        self.http_port.map(|p| format!("http://127.0.0.1:{p}"))
    }

    /// The replica's log so far (for a report of what went wrong).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Whether the process has exited (on its own: [`Replica::kill9`] is
    /// followed by a restart).
    pub fn has_exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| !matches!(c.try_wait(), Ok(None)))
    }

    /// How long the current process has been ready.
    pub fn up_for(&self) -> Duration {
        self.ready_at.elapsed()
    }

    /// SIGKILL: no hand-over, no drain, connections cut by the kernel.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL on Unix
            let _ = child.wait();
            self.kills += 1;
        }
    }

    /// Starts the replica again on its ports and waits until it is ready.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        self.spawn_until_ready().await
    }

    /// Spawns and waits for `/readyz`; a process that exits during start-up
    /// (on a cluster that has just formed the first stream and bucket
    /// creates can outlast a service's request timeout) is started again,
    /// up to five times.
    async fn spawn_until_ready(&mut self) -> anyhow::Result<()> {
        for attempt in 1..=5 {
            let mut child = self.spawn()?;
            match wait_ready(&mut child, self.ops_port).await {
                Ok(()) => {
                    self.child = Some(child);
                    self.ready_at = Instant::now();
                    return Ok(());
                }
                Err(why) if attempt < 5 => {
                    let _ = child.kill();
                    let _ = child.wait();
                    note_in_log(&self.log, &format!("start attempt {attempt}: {why:#}"));
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(why).with_context(|| {
                        format!("{self:?} did not start; see {}", self.log.display())
                    });
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    fn spawn(&self) -> anyhow::Result<Child> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("open {}", self.log.display()))?;
        note_in_log(&self.log, "starting");
        let mut command = Command::new(&self.program);
        command
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(REPLICA_OF, self.role.name())
            .env(
                "SWITCHYARD_OPS_ADDR",
                format!("127.0.0.1:{}", self.ops_port),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(port) = self.http_port {
            command.env("SWITCHYARD_HTTP_ADDR", format!("127.0.0.1:{port}"));
        }
        command
            .spawn()
            .with_context(|| format!("spawn {}", self.program.display()))
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A line of our own in a replica's log, between its runs.
fn note_in_log(log: &Path, note: &str) {
    use std::io::Write as _;
    if let Ok(mut file) = fs::OpenOptions::new().create(true).append(true).open(log) {
        let now = time::OffsetDateTime::now_utc();
        let _ = writeln!(file, "==== chaos driver {now}: {note}");
    }
}

/// Waits (at most 60 s) until `/readyz` on `ops_port` answers 2xx; fails at
/// once if the process exits.
async fn wait_ready(child: &mut Child, ops_port: u16) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let url = format!("http://127.0.0.1:{ops_port}/readyz");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("exited during start-up ({status})");
        }
        if let Ok(answer) = http.get(&url).send().await
            && answer.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("not ready within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

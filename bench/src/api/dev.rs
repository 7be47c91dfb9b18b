//! The system under test: the real `pacer dev` binary (release build, embedded store) started
//! as a child process on a free loopback port with a throwaway data directory, and stopped with
//! SIGTERM at the end (killed if it does not stop, and on drop).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use tokio::process::{Child, Command};

/// How long `pacer dev` may take to answer `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `pacer dev` may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A running `pacer dev`; killed when dropped.
pub struct DevServer {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    binary: PathBuf,
    log: PathBuf,
    /// Holds the data directory and the log until the server is gone.
    dir: tempfile::TempDir,
}

/// What the results say about the server.
#[derive(Debug, Clone, Serialize)]
pub struct ServerInfo {
    /// How the API was run.
    pub mode: &'static str,
    /// The binary that ran.
    pub binary: String,
    /// Where it listened.
    pub base_url: String,
    /// Its data directory (a temporary one, removed afterwards).
    pub data_dir: String,
    /// Lines of its log at WARN or ERROR level (it logs at `warn`): should be 0.
    pub log_warnings: usize,
    /// The first few of them.
    pub log_excerpt: Vec<String>,
    /// Whether it exited cleanly on SIGTERM.
    pub clean_exit: bool,
}

impl DevServer {
    /// Starts `binary dev` on a free port and waits until it answers `GET /healthz`.
    pub async fn start(binary: &Path, client: &reqwest::Client) -> Result<Self> {
        Self::start_with_args(binary, client, &[]).await
    }

    /// As [`start`](Self::start), with `extra_args` after `dev --listen … --data-dir …` (the
    /// placement suite passes `--no-agent`).
    pub async fn start_with_args(
        binary: &Path,
        client: &reqwest::Client,
        extra_args: &[&str],
    ) -> Result<Self> {
        if !binary.is_file() {
            bail!(
                "{} does not exist: build it with `cargo build --release -p pacer` \
                 (hack/bench.sh does), or pass --pacer-bin",
                binary.display()
            );
        }
        let dir = tempfile::tempdir().context("create a directory for pacer dev")?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .context("find a free port")?
            .port();
        let address = format!("127.0.0.1:{port}");
        let log = dir.path().join("pacer-dev.log");
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let child = Command::new(binary)
            .args(["dev", "--listen", &address, "--data-dir"])
            .arg(dir.path().join("data"))
            .args(extra_args)
            .env("PACER_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {} dev", binary.display()))?;
        let mut server = Self {
            child,
            base_url: format!("http://{address}"),
            binary: binary.to_owned(),
            log,
            dir,
        };
        server.wait_healthy(client).await?;
        Ok(server)
    }

    async fn wait_healthy(&mut self, client: &reqwest::Client) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let url = format!("{}/healthz", self.base_url);
        loop {
            if let Some(status) = self.child.try_wait().context("poll pacer dev")? {
                bail!(
                    "pacer dev exited with {status} before serving; its log:\n{}",
                    self.log_text()
                );
            }
            let healthy = client
                .get(&url)
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if healthy {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "pacer dev did not answer GET /healthz within {START_TIMEOUT:?}; its log:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its process id, while it runs (the placement suite reads its CPU time and RSS from
    /// `/proc`).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the server with SIGTERM (SIGKILL if it does not exit in time) and describes it.
    pub async fn stop(mut self) -> Result<ServerInfo> {
        let mut clean_exit = false;
        if let Some(pid) = self.child.id() {
            // `kill` from the shell: this crate forbids the unsafe code a direct signal needs.
            let sent = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await
                .is_ok_and(|status| status.success());
            if sent {
                match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
                    Ok(Ok(status)) => clean_exit = status.success(),
                    Ok(Err(error)) => tracing::warn!(%error, "waiting for pacer dev failed"),
                    Err(_) => tracing::warn!("pacer dev did not stop on SIGTERM"),
                }
            }
        }
        if !clean_exit {
            // Already gone, or stuck: make sure it is gone.
            let _ = self.child.kill().await;
        }
        let log = self.log_text();
        let warnings: Vec<String> = log
            .lines()
            .filter(|line| line.contains("WARN") || line.contains("ERROR"))
            .map(str::to_owned)
            .collect();
        Ok(ServerInfo {
            mode: "the real `pacer dev` binary in its own process (embedded store), over HTTP/1.1 \
                   on loopback",
            binary: self.binary.display().to_string(),
            base_url: self.base_url.clone(),
            data_dir: self.dir.path().join("data").display().to_string(),
            log_warnings: warnings.len(),
            log_excerpt: warnings.into_iter().take(5).collect(),
            clean_exit,
        })
    }
}

/// How a control-plane suite starts: the open-file limit raised for `connections` more
/// sockets, the TLS provider installed, one HTTP client, and `pacer dev --no-agent` (hollow
/// nodes only) from `pacer_bin` or the `pacer` next to this executable. Returns the client,
/// the binary (to start agents with) and the server.
pub async fn start_control_plane(
    pacer_bin: Option<PathBuf>,
    connections: u64,
) -> Result<(reqwest::Client, PathBuf, DevServer)> {
    super::raise_nofile_limit(connections + 256)?;
    super::install_crypto_provider();
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .context("build the HTTP client")?;
    let binary = locate_binary(pacer_bin)?;
    eprintln!("starting {} dev --no-agent", binary.display());
    let server = DevServer::start_with_args(&binary, &client, &["--no-agent"]).await?;
    Ok((client, binary, server))
}

/// The `pacer` binary to run: `--pacer-bin` if given, else `pacer` beside this executable
/// (cargo puts both in `target/release/`).
pub fn locate_binary(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path);
    }
    let me = std::env::current_exe().context("find this executable's path")?;
    let dir = me
        .parent()
        .context("this executable's path has no parent directory")?;
    Ok(dir.join(format!("pacer{}", std::env::consts::EXE_SUFFIX)))
}

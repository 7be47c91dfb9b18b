//! A throwaway single-member etcd on free loopback ports, for tests, fault drills and
//! benchmarks.
//!
//! Each [`EtcdServer`] has its own name, ports and data directory, so tests can start as many as
//! they like in parallel. Dropping it kills the process (SIGKILL), reaps it and removes the
//! directory.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long [`EtcdServer::start`] waits for etcd to report itself healthy.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times [`EtcdServer::start`] tries again when another process grabbed one of the
/// free ports it picked before etcd could bind it.
const PORT_CLASH_RETRIES: usize = 5;

/// Where etcd is looked for first; then every directory on `PATH`.
const DEFAULT_ETCD: &str = "/usr/bin/etcd";

/// The most of etcd's stderr quoted in an error.
const STDERR_TAIL_BYTES: u64 = 8 * 1024;

/// Why a throwaway etcd could not be started.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// No `etcd` binary at `/usr/bin/etcd` nor on `PATH`.
    #[error("etcd not found: run hack/install-deps.sh")]
    EtcdNotFound,
    /// A local operation (temp dir, port, spawn) failed.
    #[error("failed to {action}: {source}")]
    Io {
        /// What was being done, as a verb phrase.
        action: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// etcd exited before it became healthy.
    #[error("etcd exited during startup ({status}); its stderr:\n{stderr}")]
    EtcdExited {
        /// How it exited.
        status: ExitStatus,
        /// The end of its stderr.
        stderr: String,
    },
    /// etcd kept running but never reported itself healthy.
    #[error("etcd at {endpoint} was not healthy after {waited:?}; its stderr:\n{stderr}")]
    StartTimeout {
        /// The client endpoint that was polled.
        endpoint: String,
        /// How long it was given.
        waited: Duration,
        /// The end of its stderr.
        stderr: String,
    },
}

/// Certificates for an etcd that serves its clients over TLS (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdServerTls {
    /// The server certificate; it must be valid for the IP address `127.0.0.1`.
    pub cert_pem: PathBuf,
    /// The server certificate's private key.
    pub key_pem: PathBuf,
    /// When set, etcd requires client certificates signed by this CA (`--client-cert-auth`).
    pub client_ca_pem: Option<PathBuf>,
}

/// A running throwaway etcd: one member, client and peer URLs on free `127.0.0.1` ports, data
/// in a temporary directory. Killed, reaped and cleaned up on drop.
///
/// It is started with `--max-txn-ops 128` and `--max-request-bytes 2097152` (the store's own
/// payload limit is 1.5 MiB, and etcd counts protobuf overhead too), and with a 10 ms
/// heartbeat and 100 ms election timeout: a single member elects itself at once, and etcd's
/// minimum lease TTL (1.5 election timeouts, rounded up to whole seconds) is then 1 s, so lease
/// TTLs are granted exactly as asked.
#[derive(Debug)]
pub struct EtcdServer {
    child: Option<Child>,
    binary: PathBuf,
    name: String,
    client_port: u16,
    peer_port: u16,
    /// Plain-HTTP port serving `/health` (and metrics), whatever the client URLs use.
    metrics_port: u16,
    tls: Option<EtcdServerTls>,
    // Dropped after the process is killed (see `Drop`).
    dir: tempfile::TempDir,
}

impl EtcdServer {
    /// Starts a fresh etcd and waits (up to [`START_TIMEOUT`]) until it answers `/health`.
    ///
    /// Blocking: from async code, call it through `tokio::task::spawn_blocking`.
    pub fn start() -> Result<Self, TestkitError> {
        Self::start_with(None)
    }

    /// Like [`EtcdServer::start`], but etcd serves its clients over TLS with `tls`'s
    /// certificates: connect to [`EtcdServer::url`] (`https://…`) with a client that trusts
    /// their CA.
    pub fn start_tls(tls: EtcdServerTls) -> Result<Self, TestkitError> {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<EtcdServerTls>) -> Result<Self, TestkitError> {
        let binary = find_etcd()?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once(&binary, tls.clone()) {
                Err(TestkitError::EtcdExited { stderr, .. })
                    if attempt <= PORT_CLASH_RETRIES
                        && stderr.contains("address already in use") =>
                {
                    tracing::debug!(attempt, "a picked port was taken meanwhile; trying others");
                }
                other => return other,
            }
        }
    }

    /// The client endpoint, `127.0.0.1:PORT`.
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The client URL, `http://127.0.0.1:PORT` (`https://` when started with TLS).
    #[must_use]
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The client port.
    #[must_use]
    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// The member's name (unique per server).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory holding the member's data and its stderr log.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the process is still running (not killed, not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Kills etcd with SIGKILL, as a crash would, and reaps it. Idempotent. The data directory
    /// stays until the server is dropped.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id();
            if let Err(error) = child.kill() {
                // Only fails if it already exited; reaping below still applies.
                tracing::debug!(pid, %error, "etcd was already gone");
            }
            match child.wait() {
                Ok(status) => tracing::debug!(pid, %status, name = %self.name, "killed etcd"),
                Err(error) => tracing::warn!(pid, %error, "could not reap etcd"),
            }
        }
    }

    /// Starts etcd again on the same ports and data (after [`EtcdServer::kill`], or killing it
    /// first), as a member coming back after a crash; waits until it is healthy.
    pub fn restart(&mut self) -> Result<(), TestkitError> {
        self.kill();
        self.spawn()?;
        self.wait_healthy(START_TIMEOUT)
    }

    /// The end of etcd's stderr so far (for failure messages).
    #[must_use]
    pub fn stderr(&self) -> String {
        read_tail(&self.stderr_path())
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("etcd.stderr")
    }

    fn start_once(binary: &Path, tls: Option<EtcdServerTls>) -> Result<Self, TestkitError> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let dir = tempfile::Builder::new()
            .prefix("pacer-etcd-")
            .tempdir()
            .map_err(|source| io("create a temporary directory for etcd", source))?;
        let name = format!(
            "pacer-test-{}-{}",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        let [client_port, peer_port, metrics_port] = free_ports()?;
        let mut server = Self {
            child: None,
            binary: binary.to_path_buf(),
            name,
            client_port,
            peer_port,
            metrics_port,
            tls,
            dir,
        };
        server.spawn()?;
        // On error, dropping `server` kills the process and removes the directory.
        server.wait_healthy(START_TIMEOUT)?;
        tracing::debug!(
            endpoint = %server.endpoint(),
            peer_port = server.peer_port,
            name = %server.name,
            "throwaway etcd is up"
        );
        Ok(server)
    }

    /// Starts the process (the data directory decides whether it is a new member or one
    /// coming back).
    fn spawn(&mut self) -> Result<(), TestkitError> {
        let name = &self.name;
        let client_url = self.url();
        let metrics_url = format!("http://127.0.0.1:{}", self.metrics_port);
        let peer_url = format!("http://127.0.0.1:{}", self.peer_port);
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(self.stderr_path())
            .map_err(|source| io("open etcd's stderr log", source))?;
        let mut command = Command::new(&self.binary);
        command
            .arg("--name")
            .arg(name)
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-metrics-urls", &metrics_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("{name}={peer_url}")])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", name])
            .args(["--max-txn-ops", "128"])
            .args(["--max-request-bytes", "2097152"])
            .args(["--heartbeat-interval", "10", "--election-timeout", "100"])
            .args([
                "--logger",
                "zap",
                "--log-outputs",
                "stderr",
                "--log-level",
                "error",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        if let Some(tls) = &self.tls {
            command
                .arg("--cert-file")
                .arg(&tls.cert_pem)
                .arg("--key-file")
                .arg(&tls.key_pem);
            if let Some(client_ca) = &tls.client_ca_pem {
                command
                    .arg("--client-cert-auth")
                    .arg("--trusted-ca-file")
                    .arg(client_ca);
            }
        }
        // etcd reads ETCD_* variables as flags and refuses to start when one shadows a flag.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCD_") {
                command.env_remove(key);
            }
        }
        let child = command.spawn().map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                TestkitError::EtcdNotFound
            } else {
                io(&format!("spawn {}", self.binary.display()), source)
            }
        })?;
        self.child = Some(child);
        Ok(())
    }

    fn wait_healthy(&mut self, timeout: Duration) -> Result<(), TestkitError> {
        let started = Instant::now();
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.metrics_port));
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child
                    .try_wait()
                    .map_err(|source| io("check on etcd", source))?
            {
                self.child = None;
                return Err(TestkitError::EtcdExited {
                    status,
                    stderr: self.stderr(),
                });
            }
            if is_healthy(address) {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(TestkitError::StartTimeout {
                    endpoint: self.endpoint(),
                    waited: timeout,
                    stderr: self.stderr(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `/usr/bin/etcd`, else `etcd` on `PATH`.
fn find_etcd() -> Result<PathBuf, TestkitError> {
    let default = Path::new(DEFAULT_ETCD);
    if default.is_file() {
        return Ok(default.to_path_buf());
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
        .ok_or(TestkitError::EtcdNotFound)
}

/// Distinct ports that were free a moment ago (all are held until every one is picked).
fn free_ports<const N: usize>() -> Result<[u16; N], TestkitError> {
    let mut listeners = Vec::with_capacity(N);
    let mut ports = [0; N];
    for port in &mut ports {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|source| io("pick a free loopback port", source))?;
        *port = listener
            .local_addr()
            .map_err(|source| io("pick a free loopback port", source))?
            .port();
        listeners.push(listener);
    }
    Ok(ports)
}

/// Whether etcd answers `GET /health` with `"health":"true"` (plain HTTP over std, no deps).
fn is_healthy(address: SocketAddr) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(250))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.set_write_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response.starts_with("HTTP/1.") && response.contains(r#""health":"true""#))
    };
    attempt().unwrap_or(false)
}

fn read_tail(path: &Path) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let length = file.metadata()?.len();
        let mut bytes = Vec::new();
        if length > STDERR_TAIL_BYTES {
            std::io::Seek::seek(
                &mut file,
                std::io::SeekFrom::Start(length - STDERR_TAIL_BYTES),
            )?;
        }
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    read().unwrap_or_else(|error| format!("(could not read {}: {error})", path.display()))
}

fn io(action: &str, source: std::io::Error) -> TestkitError {
    TestkitError::Io {
        action: action.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh server, or `None` (loudly) when etcd is not installed; any other failure fails.
    fn start_or_skip() -> Option<EtcdServer> {
        match EtcdServer::start() {
            Err(TestkitError::EtcdNotFound) => {
                eprintln!("SKIPPED: etcd is not installed (run hack/install-deps.sh)");
                None
            }
            other => Some(other.expect("etcd starts")),
        }
    }

    #[test]
    fn starts_answers_and_cleans_up() {
        let Some(mut server) = start_or_skip() else {
            return;
        };
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, server.metrics_port));
        assert!(is_healthy(address));
        let client = SocketAddr::from((Ipv4Addr::LOCALHOST, server.client_port()));
        assert!(is_healthy(client), "the client URL answers /health too");
        assert_eq!(server.url(), format!("http://{}", server.endpoint()));
        assert!(server.is_running());
        let dir = server.dir().to_path_buf();
        assert!(dir.join("data").is_dir());

        server.kill();
        assert!(!server.is_running());
        assert!(!is_healthy(address), "a killed etcd no longer answers");
        server.kill(); // idempotent
        server.restart().expect("etcd restarts on its data");
        assert!(server.is_running() && is_healthy(address));
        drop(server);
        assert!(!dir.exists(), "the data directory is removed on drop");
    }

    #[test]
    fn servers_are_independent() {
        let (Some(first), Some(second)) = (start_or_skip(), start_or_skip()) else {
            return;
        };
        assert_ne!(first.endpoint(), second.endpoint());
        assert_ne!(first.name(), second.name());
        assert!(is_healthy(SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            second.metrics_port
        ))));
    }

    #[test]
    fn missing_etcd_error_says_how_to_fix_it() {
        assert_eq!(
            TestkitError::EtcdNotFound.to_string(),
            "etcd not found: run hack/install-deps.sh"
        );
    }
}

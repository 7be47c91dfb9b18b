//! Running one probe against one instance, next to it on its node: an HTTP or HTTPS GET
//! (redirects not followed — a 3xx is itself healthy — and certificates not verified, as
//! Marathon and Mesos do not verify them), a TCP connect, or a shell command in the
//! instance's context (`/bin/sh -c` in a process instance's sandbox with its environment, or
//! `docker exec` in its container). Every probe ends within its timeout; what it found is a
//! plain value the pure rules of [`super::check`] read.
//!
//! HTTP goes through `reqwest` (hyper): interim 1xx answers (100, 102, 103) are consumed by
//! hyper while it waits for the final one, so only a final 1xx (101) reaches
//! `ignoreHttp1xx`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures::StreamExt;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::OnceCell;

/// Bytes of a response body kept (readiness `lastResponse`).
pub const MAX_BODY_BYTES: usize = 4096;
/// Bytes of a failed command's output kept in its failure cause.
const MAX_CAUSE_BYTES: usize = 512;

/// Why the prober could not be built.
#[derive(Debug, thiserror::Error)]
#[error("build the health check HTTP client: {0}")]
pub struct ProberError(#[source] reqwest::Error);

/// `http` or `https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTPS, certificate not verified.
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

/// A final HTTP answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpAnswer {
    /// Status code.
    pub status: u16,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The body's first [`MAX_BODY_BYTES`] bytes, lossily decoded.
    pub body: String,
}

/// Where a command check runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandContext {
    /// A process instance: its sandbox (working directory) and environment.
    Process {
        /// The sandbox directory.
        sandbox: PathBuf,
        /// The instance's environment.
        env: BTreeMap<String, String>,
    },
    /// A container: `docker exec` in it (it has the instance's environment already).
    Docker {
        /// Container id.
        container: String,
    },
}

/// Runs probes; one per agent, shared by every instance's checks.
#[derive(Debug)]
pub struct Prober {
    http: reqwest::Client,
    docker: OnceCell<Option<Docker>>,
}

impl Prober {
    /// A prober with its HTTP client (no redirects, no proxies, certificates not verified).
    pub fn new() -> Result<Self, ProberError> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Losing a race to another installer is fine: a provider is installed either way.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .tls_danger_accept_invalid_certs(true)
            .tls_danger_accept_invalid_hostnames(true)
            .pool_max_idle_per_host(0)
            .user_agent("pacer-agent-health-check")
            .build()
            .map_err(ProberError)?;
        Ok(Self {
            http,
            docker: OnceCell::new(),
        })
    }

    /// GET `path` on `address`, within `timeout` (headers and body).
    pub async fn http(
        &self,
        scheme: Scheme,
        address: SocketAddr,
        path: &str,
        timeout: Duration,
    ) -> Result<HttpAnswer, String> {
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        let url = format!("{}://{address}{path}", scheme.as_str());
        let request = async {
            let mut response = self
                .http
                .get(&url)
                .send()
                .await
                .map_err(|error| describe(&error))?;
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            let mut body = Vec::new();
            while body.len() < MAX_BODY_BYTES {
                match response.chunk().await {
                    Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                    Ok(None) => break,
                    Err(error) => return Err(describe(&error)),
                }
            }
            body.truncate(MAX_BODY_BYTES);
            Ok(HttpAnswer {
                status,
                content_type,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        };
        tokio::time::timeout(timeout, request)
            .await
            .map_err(|_| format!("GET {url}: no answer within {}s", timeout.as_secs()))?
    }

    /// Connects to `address` within `timeout`.
    pub async fn tcp(&self, address: SocketAddr, timeout: Duration) -> Result<(), String> {
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(_stream)) => Ok(()),
            Ok(Err(error)) => Err(format!("connect to {address}: {error}")),
            Err(_) => Err(format!(
                "connect to {address}: no answer within {}s",
                timeout.as_secs()
            )),
        }
    }

    /// Runs `command` with `/bin/sh -c` in `context`; `Ok` when it exits 0 within `timeout`.
    pub async fn command(
        &self,
        context: &CommandContext,
        command: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        match context {
            CommandContext::Process { sandbox, env } => {
                process_command(sandbox, env, command, timeout).await
            }
            CommandContext::Docker { container } => {
                let Some(docker) = self.docker().await else {
                    return Err("docker does not answer: cannot run the command check".to_owned());
                };
                match tokio::time::timeout(timeout, docker_command(docker, container, command))
                    .await
                {
                    Ok(result) => result,
                    Err(_) => Err(format!(
                        "command did not finish within {}s",
                        timeout.as_secs()
                    )),
                }
            }
        }
    }

    /// The Docker engine, connected on first use (`None` when it does not answer).
    async fn docker(&self) -> Option<&Docker> {
        self.docker
            .get_or_init(|| async {
                match Docker::connect_with_local_defaults() {
                    Ok(docker) => match docker.negotiate_version().await {
                        Ok(docker) => Some(docker),
                        Err(error) => {
                            tracing::warn!(%error, "health checks: docker does not answer");
                            None
                        }
                    },
                    Err(error) => {
                        tracing::warn!(%error, "health checks: cannot connect to docker");
                        None
                    }
                }
            })
            .await
            .as_ref()
    }
}

/// An error with its sources, as one line.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

async fn process_command(
    sandbox: &std::path::Path,
    env: &BTreeMap<String, String>,
    command: &str,
    timeout: Duration,
) -> Result<(), String> {
    let child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
        )
        .envs(env)
        .env("MESOS_SANDBOX", sandbox)
        .current_dir(sandbox)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| format!("start the command in {}: {error}", sandbox.display()))?;
    let group = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .map(Pid::from_raw);
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) if output.status.success() => Ok(()),
        Ok(Ok(output)) => {
            let mut text = String::from_utf8_lossy(&output.stderr).trim().to_owned();
            if text.is_empty() {
                text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            }
            Err(command_failure(output.status.code(), &text))
        }
        Ok(Err(error)) => Err(format!("wait for the command: {error}")),
        Err(_) => {
            if let Some(group) = group {
                // The group may be gone already.
                let _ = killpg(group, Signal::SIGKILL);
            }
            Err(format!(
                "command did not finish within {}s",
                timeout.as_secs()
            ))
        }
    }
}

async fn docker_command(docker: &Docker, container: &str, command: &str) -> Result<(), String> {
    let exec = docker
        .create_exec(
            container,
            CreateExecOptions {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(vec!["/bin/sh", "-c", command]),
                ..CreateExecOptions::default()
            },
        )
        .await
        .map_err(|error| format!("docker exec in {container}: {error}"))?;
    let mut output = String::new();
    match docker
        .start_exec(&exec.id, None)
        .await
        .map_err(|error| format!("docker exec in {container}: {error}"))?
    {
        StartExecResults::Attached {
            output: mut stream, ..
        } => {
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(chunk) if output.len() < MAX_CAUSE_BYTES => {
                        output.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
                    }
                    Ok(_) => {}
                    Err(error) => return Err(format!("docker exec in {container}: {error}")),
                }
            }
        }
        StartExecResults::Detached => {}
    }
    let inspected = docker
        .inspect_exec(&exec.id)
        .await
        .map_err(|error| format!("docker exec in {container}: {error}"))?;
    match inspected.exit_code {
        Some(0) => Ok(()),
        code => Err(command_failure(
            code.and_then(|code| i32::try_from(code).ok()),
            output.trim(),
        )),
    }
}

fn command_failure(code: Option<i32>, output: &str) -> String {
    let mut output = output.to_owned();
    if output.len() > MAX_CAUSE_BYTES {
        let mut end = MAX_CAUSE_BYTES;
        while !output.is_char_boundary(end) {
            end -= 1;
        }
        output.truncate(end);
    }
    let code = code.map_or_else(
        || "by a signal".to_owned(),
        |code| format!("with code {code}"),
    );
    if output.is_empty() {
        format!("command exited {code}")
    } else {
        format!("command exited {code}: {output}")
    }
}

//! The `Runtime` trait every way of running an instance implements — start from a
//! [`Launch`], stop with a grace period, report exits, and list what it owns so that a
//! restarted agent adopts instead of restarting — and [`Runtimes`], which picks one per
//! instance (`container.docker` → docker, otherwise process; a hollow agent uses hollow for
//! everything).

pub mod docker;
pub mod hollow;
pub mod output;
pub mod process;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::launch::{InstanceKey, Launch};

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    /// Exit code, when known (`128 + signal` for a process killed by a signal, as shells
    /// report it).
    pub code: Option<i32>,
    /// Why, in words (signal, OOM kill, unknown code of an adopted process).
    pub message: String,
}

impl Exit {
    /// Whether it exited with code 0.
    pub fn is_success(&self) -> bool {
        self.code == Some(0)
    }
}

/// A runtime's report that something it runs ended.
#[derive(Clone, Debug)]
pub struct Exited {
    /// The instance.
    pub key: InstanceKey,
    /// The run's id (container id or pid) — stale reports of an earlier run are ignored.
    pub runtime_id: String,
    /// How it ended.
    pub exit: Exit,
}

/// Where runtimes send [`Exited`] reports.
pub type ExitSender = mpsc::UnboundedSender<Exited>;

/// Something a runtime runs (or ran) for this agent, found by [`Runtime::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owned {
    /// The instance.
    pub key: InstanceKey,
    /// Container id or pid.
    pub runtime_id: String,
    /// `None` while it runs; how it ended otherwise.
    pub exit: Option<Exit>,
}

/// A started run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Started {
    /// Container id or pid.
    pub runtime_id: String,
}

/// Which part of an instance's output [`Runtime::logs`] reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep streaming what the instance writes until it ends (or the reader goes away).
    pub follow: bool,
    /// Only the last this many lines (of each of stdout and stderr where they are kept
    /// apart); `None`: everything.
    pub tail_lines: Option<u64>,
}

/// An instance's output, chunk by chunk, as it is read.
pub type LogStream = futures::stream::BoxStream<'static, Result<Vec<u8>, std::io::Error>>;

/// The [`RuntimeError::reason`] of [`Runtime::logs`] when the runtime has nothing of that
/// instance.
pub const NO_LOGS: &str = "NoLogs";

/// Why a runtime could not do what was asked. `reason` is the machine-readable word that
/// goes into the Instance's `status.reason`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RuntimeError {
    /// E.g. `ImageNotFound`, `StartFailed`, `RuntimeUnavailable`.
    pub reason: &'static str,
    /// What happened, for people.
    pub message: String,
}

impl RuntimeError {
    /// An error with a reason and a message.
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// One way of running instances on this node.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// `docker`, `process` or `hollow` (as listed in the Node's `status.runtimes`).
    fn name(&self) -> &'static str;

    /// Starts `launch` and returns once it runs; its exit is later sent to `exits`.
    async fn start(&self, launch: &Launch, exits: &ExitSender) -> Result<Started, RuntimeError>;

    /// Stops a run: SIGTERM (or the image's stop signal), SIGKILL after `grace`, then
    /// releases what it held. Stopping something already gone succeeds.
    async fn stop(
        &self,
        key: &InstanceKey,
        runtime_id: &str,
        grace: Duration,
    ) -> Result<(), RuntimeError>;

    /// Releases what an ended run still holds (a stopped container, a pid file).
    async fn remove(&self, key: &InstanceKey, runtime_id: &str) -> Result<(), RuntimeError>;

    /// Everything this agent's runtime runs or ran and has not removed; runs still going are
    /// watched from now on, their exits sent to `exits` (adoption after an agent restart).
    async fn list(&self, exits: &ExitSender) -> Result<Vec<Owned>, RuntimeError>;

    /// The output (stdout and stderr) of the latest run of `key`, while the runtime still
    /// keeps it; an error with reason [`NO_LOGS`] when it has none.
    async fn logs(&self, key: &InstanceKey, options: LogOptions)
    -> Result<LogStream, RuntimeError>;
}

/// The runtimes of one agent and the rule that picks one per instance.
#[derive(Clone)]
pub struct Runtimes {
    docker: Option<Arc<dyn Runtime>>,
    process: Option<Arc<dyn Runtime>>,
    hollow: Option<Arc<dyn Runtime>>,
}

impl Runtimes {
    /// A real node's runtimes: process always, docker when it answers.
    pub fn real(docker: Option<Arc<dyn Runtime>>, process: Option<Arc<dyn Runtime>>) -> Self {
        Self {
            docker,
            process,
            hollow: None,
        }
    }

    /// A hollow node: everything "runs" on `hollow`.
    pub fn hollow(hollow: Arc<dyn Runtime>) -> Self {
        Self {
            docker: None,
            process: None,
            hollow: Some(hollow),
        }
    }

    /// Names of the runtimes offered (the Node's `status.runtimes`).
    pub fn names(&self) -> Vec<String> {
        self.all()
            .iter()
            .map(|runtime| runtime.name().to_owned())
            .collect()
    }

    /// Every runtime.
    pub fn all(&self) -> Vec<Arc<dyn Runtime>> {
        [&self.docker, &self.process, &self.hollow]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// The runtime called `name`.
    pub fn by_name(&self, name: &str) -> Option<Arc<dyn Runtime>> {
        self.all()
            .into_iter()
            .find(|runtime| runtime.name() == name)
    }

    /// The runtime for `launch`: hollow if this is a hollow node, docker for an image,
    /// process otherwise.
    pub fn for_launch(&self, launch: &Launch) -> Result<Arc<dyn Runtime>, RuntimeError> {
        if let Some(hollow) = &self.hollow {
            return Ok(Arc::clone(hollow));
        }
        let (runtime, wanted) = if launch.image.is_some() {
            (&self.docker, "docker")
        } else {
            (&self.process, "process")
        };
        runtime.clone().ok_or_else(|| {
            RuntimeError::new(
                "RuntimeUnavailable",
                format!(
                    "this node offers no {wanted} runtime (offered: {:?})",
                    self.names()
                ),
            )
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::launch::{Command, DEFAULT_KILL_GRACE};

    fn launch(image: Option<&str>) -> Launch {
        Launch {
            key: InstanceKey::new("default", "web-1"),
            app: "web".into(),
            command: Command::Shell("sleep 1".into()),
            image: image.map(str::to_owned),
            host_network: true,
            env: BTreeMap::new(),
            ports: Vec::new(),
            cpus: 0.1,
            mem: 32.0,
            kill_grace: DEFAULT_KILL_GRACE,
            labels: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn hollow_nodes_pretend_and_real_nodes_pick_by_image() {
        let (exits, _receiver) = mpsc::unbounded_channel();
        let hollow = Runtimes::hollow(Arc::new(hollow::HollowRuntime::new()));
        let runtime = hollow.for_launch(&launch(Some("nginx:1"))).unwrap();
        assert_eq!(runtime.name(), "hollow");
        let started = runtime.start(&launch(None), &exits).await.unwrap();
        let owned = runtime.list(&exits).await.unwrap();
        assert_eq!(owned.len(), 1);
        assert_eq!(owned[0].runtime_id, started.runtime_id);
        assert!(owned[0].exit.is_none());
        runtime
            .stop(&owned[0].key, &started.runtime_id, DEFAULT_KILL_GRACE)
            .await
            .unwrap();
        assert!(runtime.list(&exits).await.unwrap().is_empty());

        let sandboxes = tempfile::tempdir().unwrap();
        let process: Arc<dyn Runtime> =
            Arc::new(process::ProcessRuntime::new(sandboxes.path().join("s"), "test").unwrap());
        let real = Runtimes::real(None, Some(process));
        assert_eq!(real.names(), vec!["process".to_owned()]);
        assert_eq!(real.for_launch(&launch(None)).unwrap().name(), "process");
        let error = real.for_launch(&launch(Some("nginx:1"))).err().unwrap();
        assert_eq!(error.reason, "RuntimeUnavailable");
        assert!(error.message.contains("no docker runtime"), "{error}");
    }
}

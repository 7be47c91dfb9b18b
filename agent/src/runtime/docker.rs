//! The Docker runtime, on the Docker Engine API through `bollard` (the local socket, API
//! version negotiated, so Docker 20.10's API 1.41 works).
//!
//! Each instance is one container: the image from `container.docker.image`; `cmd` runs as
//! `/bin/sh -c <cmd>` (Marathon's shell semantics), `args` are passed as the container's
//! command (after the image's entrypoint); the environment is Marathon's task environment plus
//! the App's `env`; `cpus` and `mem` become CPU (`NanoCpus`) and memory limits; under bridge
//! networking every port mapping with a host port is published on it, under host networking
//! the container shares the node's network. Labels mark the container as Pacer's and name the
//! instance, App, node and agent: a restarted agent finds its containers by them (adoption).
//!
//! Images are never pulled: these machines reach no registry, and a pull that can only time
//! out would hold an instance in `Staging` for nothing. An image missing on the node fails the
//! instance at once with reason `ImageNotFound`; load or build images on the node beforehand.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding as DockerPortBinding};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures::StreamExt;

use crate::launch::{
    Command, InstanceKey, LABEL_AGENT, LABEL_INSTANCE, LABEL_NAMESPACE, LABEL_NODE, Launch,
};
use crate::runtime::{
    Exit, ExitSender, Exited, LogOptions, LogStream, NO_LOGS, Owned, Runtime, RuntimeError, Started,
};

/// Runs instances as Docker containers.
#[derive(Debug)]
pub struct DockerRuntime {
    docker: Docker,
    node: String,
    agent_id: String,
    /// Containers whose exit a task already waits for.
    waited: Arc<Mutex<HashSet<String>>>,
}

impl DockerRuntime {
    /// Connects to the local Docker engine (`DOCKER_HOST` or the default socket), negotiates
    /// the API version and checks that it answers.
    pub async fn connect(node: &str, agent_id: &str) -> Result<Self, RuntimeError> {
        let unavailable = |error: DockerError| {
            RuntimeError::new("RuntimeUnavailable", format!("docker: {error}"))
        };
        let docker = Docker::connect_with_local_defaults().map_err(unavailable)?;
        let docker = tokio::time::timeout(Duration::from_secs(5), docker.negotiate_version())
            .await
            .map_err(|_| RuntimeError::new("RuntimeUnavailable", "docker: no answer within 5 s"))?
            .map_err(unavailable)?;
        docker.ping().await.map_err(unavailable)?;
        Ok(Self {
            docker,
            node: node.to_owned(),
            agent_id: agent_id.to_owned(),
            waited: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    /// Waits (on a task) for `id` to stop and reports its exit, once per container.
    fn watch_exit(&self, key: InstanceKey, id: String, sender: ExitSender) {
        if !lock(&self.waited).insert(id.clone()) {
            return;
        }
        let docker = self.docker.clone();
        let waited = Arc::clone(&self.waited);
        tokio::spawn(async move {
            let options = WaitContainerOptionsBuilder::default()
                .condition("not-running")
                .build();
            let mut wait = docker.wait_container(&id, Some(options));
            let waited_code = match wait.next().await {
                Some(Ok(response)) => Some(response.status_code),
                Some(Err(DockerError::DockerContainerWaitError { code, .. })) => Some(code),
                Some(Err(error)) => {
                    tracing::warn!(instance = %key, container = %id, %error, "waiting for the container failed");
                    None
                }
                None => None,
            };
            let exit = exit_of(&docker, &id, waited_code).await;
            lock(&waited).remove(&id);
            let _ = sender.send(Exited {
                key,
                runtime_id: id,
                exit,
            });
        });
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn start(&self, launch: &Launch, exits: &ExitSender) -> Result<Started, RuntimeError> {
        let image = launch
            .image
            .clone()
            .ok_or_else(|| RuntimeError::new("StartFailed", "no container.docker.image"))?;
        match self.docker.inspect_image(&image).await {
            Ok(_) => {}
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                return Err(RuntimeError::new(
                    "ImageNotFound",
                    format!(
                        "image {image:?} is not present on node {} and the agent does not pull \
                         images; build or load it on the node",
                        self.node
                    ),
                ));
            }
            Err(error) => {
                return Err(RuntimeError::new(
                    "StartFailed",
                    format!("inspect image {image:?}: {error}"),
                ));
            }
        }
        let (entrypoint, cmd) = match &launch.command {
            Command::Shell(cmd) => (
                Some(vec!["/bin/sh".to_owned(), "-c".to_owned()]),
                Some(vec![cmd.clone()]),
            ),
            Command::Argv(args) => (None, Some(args.clone())),
            Command::ImageDefault => (None, None),
        };
        let mut exposed = Vec::new();
        let mut bindings: HashMap<String, Option<Vec<DockerPortBinding>>> = HashMap::new();
        if !launch.host_network {
            for port in &launch.ports {
                for protocol in &port.protocols {
                    let container_port = format!("{}/{protocol}", port.container_port);
                    exposed.push(container_port.clone());
                    bindings.insert(
                        container_port,
                        Some(vec![DockerPortBinding {
                            host_ip: None,
                            host_port: Some(port.host_port.to_string()),
                        }]),
                    );
                }
            }
        }
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            entrypoint,
            cmd,
            env: Some(
                launch
                    .env
                    .iter()
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect(),
            ),
            labels: Some(launch.labels.clone().into_iter().collect()),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            stop_timeout: i64::try_from(launch.kill_grace.as_secs()).ok(),
            host_config: Some(HostConfig {
                network_mode: Some(
                    if launch.host_network {
                        "host"
                    } else {
                        "bridge"
                    }
                    .to_owned(),
                ),
                port_bindings: (!bindings.is_empty()).then_some(bindings),
                nano_cpus: Some((launch.cpus * 1e9).round() as i64).filter(|cpus| *cpus > 0),
                // Docker refuses less than 6 MiB.
                memory: Some((launch.mem.max(6.0) * 1024.0 * 1024.0).round() as i64),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let created = self
            .docker
            .create_container(None, body)
            .await
            .map_err(|error| {
                RuntimeError::new(
                    "StartFailed",
                    format!("create a container of {image:?}: {error}"),
                )
            })?;
        let id = created.id;
        if let Err(error) = self.docker.start_container(&id, None).await {
            let _ = self.remove(&launch.key, &id).await;
            return Err(RuntimeError::new(
                "StartFailed",
                format!("start the container of {image:?}: {error}"),
            ));
        }
        self.watch_exit(launch.key.clone(), id.clone(), exits.clone());
        tracing::info!(instance = %launch.key, container = %id, %image, "container started");
        Ok(Started { runtime_id: id })
    }

    async fn stop(
        &self,
        key: &InstanceKey,
        runtime_id: &str,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        let seconds = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::default().t(seconds).build();
        tracing::info!(instance = %key, container = %runtime_id, grace_seconds = seconds, "stopping the container");
        match self.docker.stop_container(runtime_id, Some(options)).await {
            Ok(())
            | Err(DockerError::DockerResponseServerError {
                status_code: 304 | 404,
                ..
            }) => Ok(()),
            Err(error) => Err(RuntimeError::new(
                "KillFailed",
                format!("stop container {runtime_id}: {error}"),
            )),
        }
    }

    async fn remove(&self, _key: &InstanceKey, runtime_id: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        match self
            .docker
            .remove_container(runtime_id, Some(options))
            .await
        {
            Ok(())
            | Err(DockerError::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            }) => Ok(()),
            Err(error) => Err(RuntimeError::new(
                "RemoveFailed",
                format!("remove container {runtime_id}: {error}"),
            )),
        }
    }

    async fn list(&self, exits: &ExitSender) -> Result<Vec<Owned>, RuntimeError> {
        let filters = HashMap::from([(
            "label",
            vec![
                format!("{LABEL_NODE}={}", self.node),
                format!("{LABEL_AGENT}={}", self.agent_id),
            ],
        )]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|error| {
                RuntimeError::new("RuntimeUnavailable", format!("list containers: {error}"))
            })?;
        let mut owned = Vec::new();
        for container in containers {
            let (Some(id), Some(labels)) = (container.id, container.labels) else {
                continue;
            };
            let (Some(namespace), Some(name)) =
                (labels.get(LABEL_NAMESPACE), labels.get(LABEL_INSTANCE))
            else {
                continue;
            };
            let key = InstanceKey::new(namespace.clone(), name.clone());
            let running = container
                .state
                .as_ref()
                .is_some_and(|state| state.to_string() == "running");
            let exit = if running {
                self.watch_exit(key.clone(), id.clone(), exits.clone());
                None
            } else {
                Some(exit_of(&self.docker, &id, None).await)
            };
            owned.push(Owned {
                key,
                runtime_id: id,
                exit,
            });
        }
        Ok(owned)
    }

    /// The latest container of `key` (Docker lists the newest first), through the engine's
    /// logs API: stdout and stderr interleaved as the engine recorded them.
    async fn logs(
        &self,
        key: &InstanceKey,
        options: LogOptions,
    ) -> Result<LogStream, RuntimeError> {
        let filters = HashMap::from([(
            "label",
            vec![
                format!("{LABEL_NODE}={}", self.node),
                format!("{LABEL_AGENT}={}", self.agent_id),
                format!("{LABEL_NAMESPACE}={}", key.namespace),
                format!("{LABEL_INSTANCE}={}", key.name),
            ],
        )]);
        let list = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker
            .list_containers(Some(list))
            .await
            .map_err(|error| {
                RuntimeError::new("RuntimeUnavailable", format!("list containers: {error}"))
            })?;
        let Some(id) = containers.into_iter().find_map(|container| container.id) else {
            return Err(RuntimeError::new(
                NO_LOGS,
                format!("no container of {key} on this node"),
            ));
        };
        let tail = options
            .tail_lines
            .map_or_else(|| "all".to_owned(), |lines| lines.to_string());
        let logs = LogsOptionsBuilder::default()
            .follow(options.follow)
            .stdout(true)
            .stderr(true)
            .tail(&tail)
            .build();
        let stream = self.docker.logs(&id, Some(logs)).map(|item| {
            item.map(|output| output.into_bytes().to_vec())
                .map_err(std::io::Error::other)
        });
        Ok(stream.boxed())
    }
}

/// How container `id` ended: the waited code, or what `inspect` says, with OOM kills named.
async fn exit_of(docker: &Docker, id: &str, waited_code: Option<i64>) -> Exit {
    let state = docker
        .inspect_container(id, None)
        .await
        .ok()
        .and_then(|inspected| inspected.state);
    let code = waited_code
        .or_else(|| state.as_ref().and_then(|state| state.exit_code))
        .and_then(|code| i32::try_from(code).ok());
    let oom = state
        .as_ref()
        .and_then(|state| state.oom_killed)
        .unwrap_or(false);
    let error = state
        .as_ref()
        .and_then(|state| state.error.clone())
        .filter(|error| !error.is_empty());
    let message = match (code, oom, error) {
        (_, true, _) => "killed: out of memory (the container exceeded its mem limit)".to_owned(),
        (_, false, Some(error)) => format!("container error: {error}"),
        (Some(code), false, None) => format!("exited with code {code}"),
        (None, false, None) => "exited (code unknown)".to_owned(),
    };
    Exit { code, message }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Inserts and removes only: a panic elsewhere cannot leave the set half-changed.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

//! Pacer's node agent: registers a Node, keeps its heartbeat Lease renewed, watches the
//! Instances bound to it and runs them with a runtime — Docker containers, plain processes,
//! or *hollow* (pretend) instances for scale tests — reporting their phases through the
//! Instance `/status` subresource. It talks to the control plane only over the HTTP API
//! (`pacer-client`), never to the store.
//!
//! - [`run`]: one agent for one real node (`pacer agent`, and the in-process agent of
//!   `pacer dev`).
//! - [`fleet::run_hollow_fleet`]: many hollow agents in one process, sharing one client, one
//!   Instance watch and one lease keeper.
//!
//! Layout: `launch.rs` turns an Instance into what a runtime starts (command, Marathon's
//! environment, ports, limits, labels); `runtime/` holds the [`runtime::Runtime`] trait and its
//! three implementations; `reconcile.rs` the pure decisions; `agent.rs` the per-node loop;
//! `desired.rs` the Instances it keeps, which never go back to an older version;
//! `node.rs` registration and the lease; `machine.rs` what the machine has; `health/` the
//! health and readiness checks the agent runs next to its instances; `log_endpoint.rs` the
//! HTTP endpoint the API server proxies `pacer logs` to.

pub mod agent;
pub mod desired;
pub mod fleet;
pub mod health;
pub mod launch;
pub mod log_endpoint;
pub mod machine;
pub mod node;
pub mod reconcile;
pub mod runtime;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use pacer_client::runtime::watcher::{self, Event, watcher};
use pacer_client::runtime::{ApiSource, BackoffConfig};
use pacer_client::{Api, Client};
use pacer_schemas::Instance;
use pacer_schemas::capacity::Resources;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::agent::NodeAgent;
use crate::health::HealthSupervisor;
use crate::launch::LaunchContext;
use crate::node::{LeaseKeeper, NodeInfo};
use crate::runtime::docker::DockerRuntime;
use crate::runtime::process::ProcessRuntime;
use crate::runtime::{Runtime, Runtimes};

/// Status writes one process has in flight at most (shared by every agent of a fleet).
pub const MAX_CONCURRENT_WRITES: usize = 64;

/// Longest pause between two attempts to resume the Instance watch while the API server is
/// unreachable. A control plane back from an outage gives every node one lease duration to
/// renew before judging it (the node lifecycle controller counts expiry from when it started
/// observing), so the agent must be back on the API well inside the node lease (8 s).
pub const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(4);

/// Whether the agent runs Docker instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DockerMode {
    /// No Docker runtime.
    Off,
    /// Docker if the engine answers at start (`pacer dev`), otherwise none (logged).
    IfAvailable,
    /// Docker, or the agent does not start.
    Required,
}

/// How one agent runs.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// The Node's name.
    pub node: String,
    /// The machine's host name (`$HOST`, Marathon's task `host`).
    pub hostname: String,
    /// Node attributes for constraints.
    pub attributes: BTreeMap<String, String>,
    /// Capacity; `None` measures the machine.
    pub resources: Option<Resources>,
    /// Where sandboxes and the agent's identity live.
    pub data_dir: PathBuf,
    /// The Docker runtime.
    pub docker: DockerMode,
    /// Whether to run plain processes.
    pub process: bool,
    /// Whether processes die with this process (`pacer dev`: one process is the whole
    /// setup); otherwise they outlive it and a restarted agent adopts them.
    pub processes_die_with_agent: bool,
    /// Where the agent endpoint (instance logs) listens; `None`: an ephemeral port on the
    /// local address that routes to the API server.
    pub listen: Option<SocketAddr>,
}

/// Why an agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The data directory or the identity in it.
    #[error("agent data directory {path}: {source}")]
    DataDir {
        /// The path.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A runtime that was asked for is not available.
    #[error("{0}")]
    Runtime(#[from] runtime::RuntimeError),
    /// The health checks' HTTP client.
    #[error("{0}")]
    Health(#[from] health::probe::ProberError),
    /// No runtime at all.
    #[error("no runtime enabled: enable docker or process")]
    NoRuntime,
    /// The agent endpoint could not listen.
    #[error("{0}")]
    Endpoint(#[from] log_endpoint::EndpointError),
}

/// The agent's identity: a random id kept in `<data_dir>/agent-id`, created on first start.
/// Containers carry it, so an agent adopts exactly what it (or an earlier run on the same data
/// directory) started, even when several agents share one Docker engine.
pub fn agent_id(data_dir: &Path) -> Result<String, AgentError> {
    let path = data_dir.join("agent-id");
    let failed = |source| AgentError::DataDir {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(failed(error)),
    }
    std::fs::create_dir_all(data_dir).map_err(failed)?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, &id).map_err(failed)?;
    std::fs::rename(&temporary, &path).map_err(failed)?;
    Ok(id)
}

/// Runs one agent until `shutdown`: registers the Node (retrying until the API answers),
/// adopts what its runtimes run, keeps the lease, and reconciles its Instances. Instances
/// keep running when it stops.
pub async fn run(
    client: Client,
    options: AgentOptions,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let agent_id = agent_id(&options.data_dir)?;
    let docker = match options.docker {
        DockerMode::Off => None,
        DockerMode::IfAvailable | DockerMode::Required => {
            match DockerRuntime::connect(&options.node, &agent_id).await {
                Ok(docker) => {
                    tracing::info!(node = %options.node, "docker runtime enabled");
                    Some(Arc::new(docker) as Arc<dyn Runtime>)
                }
                Err(error) if options.docker == DockerMode::IfAvailable => {
                    tracing::info!(node = %options.node, %error, "docker does not answer: docker runtime disabled");
                    None
                }
                Err(error) => return Err(error.into()),
            }
        }
    };
    let process_runtime = if options.process {
        let mut runtime = ProcessRuntime::new(options.data_dir.join("sandboxes"), &agent_id)?;
        if options.processes_die_with_agent {
            runtime = runtime.tied_to_agent();
        }
        Some(Arc::new(runtime))
    } else {
        None
    };
    let process = process_runtime
        .clone()
        .map(|runtime| runtime as Arc<dyn Runtime>);
    if docker.is_none() && process.is_none() {
        return Err(AgentError::NoRuntime);
    }
    let runtimes = Runtimes::real(docker, process);
    let endpoint = {
        let toward = log_endpoint::address_towards_server(&client);
        let listen = options.listen.unwrap_or(SocketAddr::new(toward, 0));
        log_endpoint::start(listen, toward, Arc::new(runtimes.all()), shutdown.clone()).await?
    };
    let resources = options
        .resources
        .clone()
        .unwrap_or_else(|| machine::measure(&options.data_dir));
    let info = NodeInfo {
        name: options.node.clone(),
        hostname: options.hostname.clone(),
        attributes: options.attributes.clone(),
        labels: BTreeMap::new(),
        resources,
        runtimes: runtimes.names(),
        agent_address: Some(endpoint.advertised.to_string()),
    };
    let launch = LaunchContext {
        host: options.hostname.clone(),
        node: options.node.clone(),
        agent_id,
    };
    let writes = Arc::new(Semaphore::new(MAX_CONCURRENT_WRITES));
    let health = HealthSupervisor::new(
        client.clone(),
        launch.clone(),
        process_runtime,
        Arc::clone(&writes),
    )?;
    let mut agent = NodeAgent::new(client.clone(), runtimes, launch, writes);
    agent.adopt().await;
    if !register_until_done(&client, std::slice::from_ref(&info), &shutdown).await {
        return Ok(());
    }
    let keeper =
        tokio::spawn(LeaseKeeper::new(client.clone(), vec![info], 1).run(shutdown.clone()));
    let (events_tx, events) = mpsc::unbounded_channel();
    let api: Api<Instance> = Api::all(client);
    let source = ApiSource::new(api).fields(&format!("spec.nodeName={}", options.node));
    let (health_tx, health_events) = mpsc::unbounded_channel();
    let forward = tokio::spawn(forward_events(source, shutdown.clone(), move |event| {
        // The health supervisor follows the same Instances; the agent loop is what matters.
        let _ = health_tx.send(event.clone());
        events_tx.send(event).is_ok()
    }));
    let health = tokio::spawn(health.run(health_events, shutdown.clone()));
    agent.run(events, shutdown.clone()).await;
    shutdown.cancel();
    let _ = keeper.await;
    let _ = forward.await;
    let _ = health.await;
    Ok(())
}

/// Registers `nodes`, retrying with backoff until each succeeded; false if cancelled first.
pub(crate) async fn register_until_done(
    client: &Client,
    nodes: &[NodeInfo],
    shutdown: &CancellationToken,
) -> bool {
    let backoff = BackoffConfig::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut pending: Vec<NodeInfo> = nodes.to_vec();
    let mut attempt = 0;
    while !pending.is_empty() {
        let results: Vec<(NodeInfo, Result<(), pacer_client::Error>)> =
            futures::stream::iter(pending)
                .map(|info| {
                    let client = client.clone();
                    async move {
                        let result = node::register(&client, &info).await;
                        (info, result)
                    }
                })
                .buffer_unordered(16)
                .collect()
                .await;
        pending = results
            .into_iter()
            .filter_map(|(info, result)| match result {
                Ok(()) => None,
                Err(error) => {
                    tracing::warn!(node = %info.name, %error, "cannot register the node yet; retrying");
                    Some(info)
                }
            })
            .collect();
        if pending.is_empty() {
            break;
        }
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(backoff.delay(attempt)) => {}
        }
        attempt = attempt.saturating_add(1);
    }
    true
}

/// Runs a watcher on `source` and hands every event to `deliver` until `shutdown` or until
/// `deliver` returns false. Watch errors are retried by the watcher itself.
pub(crate) async fn forward_events(
    source: ApiSource<Instance>,
    shutdown: CancellationToken,
    mut deliver: impl FnMut(Event<Instance>) -> bool + Send,
) {
    let config = watcher::Config::default().backoff(BackoffConfig::new(
        Duration::from_millis(200),
        WATCH_BACKOFF_MAX,
    ));
    let mut stream = std::pin::pin!(watcher(source.watch_timeout(290), config));
    loop {
        let item = tokio::select! {
            () = shutdown.cancelled() => return,
            item = stream.next() => item,
        };
        match item {
            Some(Ok(event)) => {
                if !deliver(event) {
                    return;
                }
            }
            // Logged and retried by the watcher; running instances are not touched.
            Some(Err(_)) => {}
            None => return,
        }
    }
}

//! Many hollow agents in one process, for scale tests and benchmarks of the control plane:
//! each is a real [`NodeAgent`] (registration, lease, reconcile loop, status writes) whose
//! runtime only pretends. They share one HTTP client, one watch of every bound Instance
//! (`fieldSelector=spec.nodeName!=`, dispatched by `spec.nodeName`), one lease keeper and one
//! budget of concurrent writes, so the HTTP cost grows with the work, not with the node count.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use pacer_client::runtime::ApiSource;
use pacer_client::runtime::watcher::Event;
use pacer_client::{Api, Client};
use pacer_schemas::Instance;
use pacer_schemas::capacity::Resources;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::agent::NodeAgent;
use crate::health::HealthSupervisor;
use crate::launch::LaunchContext;
use crate::node::{LeaseKeeper, NodeInfo};
use crate::runtime::hollow::HollowRuntime;
use crate::runtime::{Runtime, Runtimes};
use crate::{MAX_CONCURRENT_WRITES, forward_events, register_until_done};

/// Label every hollow Node carries.
pub const HOLLOW_LABEL: &str = "pacer.dev/hollow";

/// A fleet of hollow agents.
#[derive(Clone, Debug)]
pub struct FleetOptions {
    /// How many nodes.
    pub count: usize,
    /// Nodes are named `<prefix>1` … `<prefix><count>`.
    pub name_prefix: String,
    /// Attributes every node gets.
    pub attributes: BTreeMap<String, String>,
    /// Capacity of every node.
    pub resources: Resources,
    /// Really probe hollow instances' HTTP, TCP and readiness checks, all against this
    /// address, instead of reporting them healthy and leaving it there (`None`: not probed).
    pub probe_target: Option<SocketAddr>,
}

impl FleetOptions {
    /// The names of the fleet's nodes.
    pub fn node_names(&self) -> Vec<String> {
        (1..=self.count)
            .map(|index| format!("{}{index}", self.name_prefix))
            .collect()
    }
}

/// Runs the fleet until `shutdown`. One agent endpoint serves the (synthetic) logs of every
/// hollow node; without it (it cannot listen) the nodes record no endpoint.
pub async fn run_hollow_fleet(client: Client, options: FleetOptions, shutdown: CancellationToken) {
    let hollows: Vec<Arc<HollowRuntime>> = (0..options.count)
        .map(|_| Arc::new(HollowRuntime::new()))
        .collect();
    let toward = crate::log_endpoint::address_towards_server(&client);
    let endpoint = crate::log_endpoint::start(
        std::net::SocketAddr::new(toward, 0),
        toward,
        Arc::new(
            hollows
                .iter()
                .map(|hollow| Arc::clone(hollow) as Arc<dyn Runtime>)
                .collect(),
        ),
        shutdown.clone(),
    )
    .await;
    let agent_address = match endpoint {
        Ok(endpoint) => Some(endpoint.advertised.to_string()),
        Err(error) => {
            tracing::warn!(%error, "hollow fleet: no agent endpoint, so no logs");
            None
        }
    };
    let infos: Vec<NodeInfo> = options
        .node_names()
        .into_iter()
        .map(|name| NodeInfo {
            hostname: name.clone(),
            name,
            attributes: options.attributes.clone(),
            labels: BTreeMap::from([(HOLLOW_LABEL.to_owned(), "true".to_owned())]),
            resources: options.resources.clone(),
            runtimes: vec!["hollow".to_owned()],
            agent_address: agent_address.clone(),
        })
        .collect();
    let writes = Arc::new(Semaphore::new(MAX_CONCURRENT_WRITES));
    let mut agents = JoinSet::new();
    let mut senders: HashMap<String, mpsc::UnboundedSender<Event<Instance>>> = HashMap::new();
    for (info, hollow) in infos.iter().zip(&hollows) {
        let (events_tx, events) = mpsc::unbounded_channel();
        senders.insert(info.name.clone(), events_tx);
        let agent = NodeAgent::new(
            client.clone(),
            Runtimes::hollow(Arc::clone(hollow) as Arc<dyn Runtime>),
            LaunchContext {
                host: info.hostname.clone(),
                node: info.name.clone(),
                agent_id: "hollow".to_owned(),
            },
            Arc::clone(&writes),
        );
        agents.spawn(agent.run(events, shutdown.clone()));
    }
    if !register_until_done(&client, &infos, &shutdown).await {
        return;
    }
    tracing::info!(nodes = infos.len(), "hollow fleet registered");
    let keeper = tokio::spawn(LeaseKeeper::new(client.clone(), infos, 32).run(shutdown.clone()));
    let health = probe_hollow_instances(&client, &options, &writes, &shutdown);
    let source = ApiSource::new(Api::<Instance>::all(client)).fields("spec.nodeName!=");
    let health_tx = health.as_ref().map(|(health_tx, _)| health_tx.clone());
    forward_events(source, shutdown.clone(), move |event| {
        if let Some(health_tx) = &health_tx {
            let _ = health_tx.send(event.clone());
        }
        dispatch(&senders, event);
        true
    })
    .await;
    if let Some((_, supervisor)) = health {
        let _ = supervisor.await;
    }
    shutdown.cancel();
    let _ = keeper.await;
    while agents.join_next().await.is_some() {}
}

/// Where the fleet's health supervisor takes Instance events, and its task.
type FleetProber = (
    mpsc::UnboundedSender<Event<Instance>>,
    tokio::task::JoinHandle<()>,
);

/// With a probe target, one health supervisor for the whole fleet probing every hollow
/// instance's checks against it; returns where to send the Instance events and its task.
fn probe_hollow_instances(
    client: &Client,
    options: &FleetOptions,
    writes: &Arc<Semaphore>,
    shutdown: &CancellationToken,
) -> Option<FleetProber> {
    let target = options.probe_target?;
    let context = LaunchContext {
        host: format!("{}fleet", options.name_prefix),
        node: format!("{}fleet", options.name_prefix),
        agent_id: "hollow".to_owned(),
    };
    match HealthSupervisor::new(client.clone(), context, None, Arc::clone(writes)) {
        Ok(supervisor) => {
            let (health_tx, events) = mpsc::unbounded_channel();
            tracing::info!(%target, "hollow fleet: probing every hollow instance's checks");
            let task = tokio::spawn(
                supervisor
                    .with_probe_target(target)
                    .run(events, shutdown.clone()),
            );
            Some((health_tx, task))
        }
        Err(error) => {
            tracing::error!(%error, "hollow fleet: cannot probe, instances are not probed");
            None
        }
    }
}

/// Hands an event to the agent of the instance's node; list framing goes to every agent.
fn dispatch(
    senders: &HashMap<String, mpsc::UnboundedSender<Event<Instance>>>,
    event: Event<Instance>,
) {
    let node = |instance: &Instance| instance.spec.node_name.clone().unwrap_or_default();
    match event {
        Event::Init | Event::InitDone => {
            for sender in senders.values() {
                let _ = sender.send(event.clone());
            }
        }
        Event::InitApply(ref instance)
        | Event::Apply(ref instance)
        | Event::Delete(ref instance) => {
            if let Some(sender) = senders.get(&node(instance)) {
                let _ = sender.send(event);
            }
        }
    }
}

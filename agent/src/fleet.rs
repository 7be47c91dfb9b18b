//! Many hollow agents in one process, for scale tests and benchmarks of the control plane:
//! each is a real [`NodeAgent`] (registration, lease, reconcile loop, status writes) whose
//! runtime only pretends. They share one HTTP client, one watch of every bound Instance
//! (`fieldSelector=spec.nodeName!=`, dispatched by `spec.nodeName`), one lease keeper and one
//! budget of concurrent writes, so the HTTP cost grows with the work, not with the node count.

use std::collections::{BTreeMap, HashMap};
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
use crate::launch::LaunchContext;
use crate::node::{LeaseKeeper, NodeInfo};
use crate::runtime::Runtimes;
use crate::runtime::hollow::HollowRuntime;
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
}

impl FleetOptions {
    /// The names of the fleet's nodes.
    pub fn node_names(&self) -> Vec<String> {
        (1..=self.count)
            .map(|index| format!("{}{index}", self.name_prefix))
            .collect()
    }
}

/// Runs the fleet until `shutdown`.
pub async fn run_hollow_fleet(client: Client, options: FleetOptions, shutdown: CancellationToken) {
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
            agent_address: None,
        })
        .collect();
    let writes = Arc::new(Semaphore::new(MAX_CONCURRENT_WRITES));
    let mut agents = JoinSet::new();
    let mut senders: HashMap<String, mpsc::UnboundedSender<Event<Instance>>> = HashMap::new();
    for info in &infos {
        let (events_tx, events) = mpsc::unbounded_channel();
        senders.insert(info.name.clone(), events_tx);
        let agent = NodeAgent::new(
            client.clone(),
            Runtimes::hollow(Arc::new(HollowRuntime::new())),
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
    let source = ApiSource::new(Api::<Instance>::all(client)).fields("spec.nodeName!=");
    forward_events(source, shutdown.clone(), move |event| {
        dispatch(&senders, event);
        true
    })
    .await;
    shutdown.cancel();
    let _ = keeper.await;
    while agents.join_next().await.is_some() {}
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

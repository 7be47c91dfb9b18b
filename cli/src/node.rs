//! `pacer node …`: node commands, all through the HTTP API.
//!
//! * `cordon NODE` / `uncordon NODE` set / clear `spec.unschedulable` (placement binds nothing
//!   new to a cordoned node; what runs there stays).
//! * `drain NODE` cordons, then sets `spec.goal: Decommissioned` on every non-terminal Instance
//!   bound to the node — their owners (the deployment controller) replace them elsewhere and
//!   the node's agent kills them — and, unless `--wait=false`, waits (at most `--timeout`)
//!   until none is left running there (terminal, or `Lost` on an unreachable node).
//! * `register-hollow` registers *hollow* nodes — Node objects with capacity, attributes and a
//!   `Ready=True` condition but no agent — so that placement can be tried and benchmarked
//!   without agents. They carry the `pacer.dev/agentless: "true"` annotation, which exempts
//!   them from the node lifecycle controller's lease checks (they never renew a lease). Each
//!   node is created (an existing one is kept) and its status then written through the
//!   `/status` subresource, since the API server drops `status` on create. Attributes given with
//!   `--attribute` apply to every node; unless one of them is `rack`, nodes are spread over
//!   `rack=rack-1…rack-<--racks>`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use pacer_client::{Api, Client, ListParams, PatchParams, PostParams};
use pacer_schemas::capacity::{PortRange, Resources};
use pacer_schemas::condition::{Condition, ConditionStatus};
use pacer_schemas::instance::{InstanceGoal, InstancePhase};
use pacer_schemas::node::{NodeSpec, NodeStatus};
use pacer_schemas::{Instance, Node, ObjectMeta, Time};
use serde_json::json;

use crate::config::ConnectArgs;
use crate::output::Outcome;

/// `pacer node …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum NodeCommand {
    /// Mark a node unschedulable: nothing new is placed there; what runs there stays.
    Cordon(NodeArgs),
    /// Mark a node schedulable again.
    Uncordon(NodeArgs),
    /// Cordon a node and decommission every instance on it, so that their owners replace them
    /// elsewhere; then wait until none is left running there.
    Drain(DrainArgs),
    /// Register nodes without an agent (for trying and benchmarking placement).
    RegisterHollow(HollowArgs),
}

/// Options of `pacer node cordon|uncordon`.
#[derive(Debug, clap::Args)]
pub(crate) struct NodeArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The node's name.
    node: String,
}

/// Options of `pacer node drain`.
#[derive(Debug, clap::Args)]
pub(crate) struct DrainArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The node's name.
    node: String,
    /// Wait until no instance is left running on the node (`--wait=false`: do not).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    wait: bool,
    /// Give up waiting after this long (e.g. `90s`, `5m`).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    timeout: Duration,
}

/// The annotation that marks a Node without an agent; the node lifecycle controller leaves
/// such nodes alone (it is `pacer_controllers::node_lifecycle::AGENTLESS_ANNOTATION`).
pub(crate) const AGENTLESS_ANNOTATION: &str = "pacer.dev/agentless";

/// How often `drain --wait` looks at the node's instances again.
const DRAIN_POLL: Duration = Duration::from_secs(1);

/// Options of `pacer node register-hollow`.
#[derive(Debug, clap::Args)]
pub(crate) struct HollowArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// How many nodes to register.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Nodes are named `<prefix>1`, `<prefix>2`, …
    #[arg(long, default_value = "hollow-")]
    name_prefix: String,
    /// CPUs per node.
    #[arg(long, default_value_t = 4.0)]
    cpus: f64,
    /// Memory per node, in MiB.
    #[arg(long, default_value_t = 16384.0)]
    mem: f64,
    /// Disk per node, in MiB.
    #[arg(long, default_value_t = 100_000.0)]
    disk: f64,
    /// GPUs per node.
    #[arg(long, default_value_t = 0)]
    gpus: i32,
    /// Host port ranges per node: `BEGIN-END[,BEGIN-END…]`.
    #[arg(long, default_value = "31000-32000")]
    ports: String,
    /// An attribute every node gets, `NAME=VALUE` (repeatable).
    #[arg(long = "attribute", value_name = "NAME=VALUE")]
    attributes: Vec<String>,
    /// Spread nodes over `rack=rack-1…rack-N` (unless `--attribute rack=…`); 0: no rack.
    #[arg(long, default_value_t = 10)]
    racks: usize,
    /// Registrations in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

pub(crate) async fn run(command: NodeCommand) -> anyhow::Result<Outcome> {
    match command {
        NodeCommand::Cordon(args) => set_unschedulable(&args, true).await,
        NodeCommand::Uncordon(args) => set_unschedulable(&args, false).await,
        NodeCommand::Drain(args) => drain(args).await,
        NodeCommand::RegisterHollow(args) => register_hollow(args).await,
    }
}

/// `cordon` (`unschedulable`) or `uncordon`.
async fn set_unschedulable(args: &NodeArgs, unschedulable: bool) -> anyhow::Result<Outcome> {
    let (client, _) = args.connect.connect()?;
    let verb = if unschedulable {
        "cordoned"
    } else {
        "uncordoned"
    };
    let changed = patch_unschedulable(&client, &args.node, unschedulable).await?;
    if changed {
        println!("node/{} {verb}", args.node);
    } else {
        println!("node/{} already {verb}", args.node);
    }
    Ok(Outcome::Success)
}

/// Sets `spec.unschedulable`; whether it changed.
async fn patch_unschedulable(
    client: &Client,
    node: &str,
    unschedulable: bool,
) -> anyhow::Result<bool> {
    let api: Api<Node> = Api::all(client.clone());
    let verb = if unschedulable { "cordon" } else { "uncordon" };
    let current = api
        .get(node)
        .await
        .with_context(|| format!("{verb} node {node}"))?;
    if current.spec.unschedulable.unwrap_or(false) == unschedulable {
        return Ok(false);
    }
    api.patch_merge(
        node,
        &PatchParams::default(),
        &json!({"spec": {"unschedulable": unschedulable}}),
    )
    .await
    .with_context(|| format!("{verb} node {node}"))?;
    Ok(true)
}

/// An instance still occupying its node: not terminal and not `Lost` (a lost instance's node
/// is unreachable; the node lifecycle controller expunges it).
fn still_there(instance: &Instance) -> bool {
    let phase = instance.phase();
    !phase.is_terminal() && phase != InstancePhase::Lost
}

fn qualified(instance: &Instance) -> String {
    format!(
        "{}/{}",
        instance.metadata.namespace_str(),
        instance.metadata.name_str()
    )
}

async fn drain(args: DrainArgs) -> anyhow::Result<Outcome> {
    let (client, _) = args.connect.connect()?;
    let node = args.node.as_str();
    if patch_unschedulable(&client, node, true).await? {
        println!("node/{node} cordoned");
    } else {
        println!("node/{node} already cordoned");
    }
    let started = Instant::now();
    let mut failed = false;
    let mut remaining: BTreeSet<String> = BTreeSet::new();
    loop {
        let instances = instances_on(&client, node).await?;
        // Decommission whatever still wants to run here (again on every pass: placement may
        // have bound one in flight while we cordoned).
        for instance in &instances {
            let goal = instance.spec.goal.clone().unwrap_or(InstanceGoal::Running);
            if instance.phase().is_terminal() || goal == InstanceGoal::Decommissioned {
                continue;
            }
            let api: Api<Instance> =
                Api::namespaced(client.clone(), instance.metadata.namespace_str());
            let name = instance.metadata.name_str();
            match api
                .patch_merge(
                    name,
                    &PatchParams::default(),
                    &json!({"spec": {"goal": "Decommissioned"}}),
                )
                .await
            {
                Ok(_) => println!("instance/{} decommissioned", qualified(instance)),
                // Deleted meanwhile: nothing left to stop.
                Err(error) if error.is_not_found() => {}
                Err(error) => {
                    failed = true;
                    eprintln!(
                        "{}",
                        crate::output::render_error(
                            &anyhow::Error::new(error)
                                .context(format!("decommission instance {}", qualified(instance)))
                        )
                    );
                }
            }
        }
        // A refused decommission is reported once: waiting for it would never end.
        if failed || !args.wait {
            break;
        }
        let now_there: BTreeSet<String> = instances
            .iter()
            .filter(|instance| still_there(instance))
            .map(qualified)
            .collect();
        for gone in remaining.difference(&now_there) {
            println!("instance/{gone} stopped");
        }
        remaining = now_there;
        if remaining.is_empty() {
            println!("node/{node} drained");
            break;
        }
        if started.elapsed() >= args.timeout {
            let phases: Vec<String> = instances
                .iter()
                .filter(|instance| still_there(instance))
                .map(|instance| format!("{} ({:?})", qualified(instance), instance.phase()))
                .collect();
            bail!(
                "node {node}: timed out after {}s waiting for {} instance(s) to stop: {}",
                args.timeout.as_secs(),
                phases.len(),
                phases.join(", ")
            );
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
    Ok(if failed {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}

/// Every Instance bound to `node`, in every namespace.
async fn instances_on(client: &Client, node: &str) -> anyhow::Result<Vec<Instance>> {
    let api: Api<Instance> = Api::all(client.clone());
    let list = api
        .list_all(&ListParams::default().fields(format!("spec.nodeName={node}")))
        .await
        .with_context(|| format!("list the instances on node {node}"))?;
    Ok(list.items)
}

/// `90s`, `5m`, `1h`, `1m30s` or plain seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?}: expected e.g. 90s, 5m, 1h30m");
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let span: jiff::Span = text.parse().map_err(|_| invalid())?;
    let signed = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|_| invalid())?;
    Duration::try_from(signed).map_err(|_| invalid())
}

async fn register_hollow(args: HollowArgs) -> anyhow::Result<Outcome> {
    let (client, _) = args.connect.connect()?;
    let ports = parse_ports(&args.ports)?;
    let mut attributes = BTreeMap::new();
    for attribute in &args.attributes {
        let (name, value) = attribute
            .split_once('=')
            .filter(|(name, _)| !name.is_empty())
            .with_context(|| format!("--attribute {attribute:?}: expected NAME=VALUE"))?;
        attributes.insert(name.to_owned(), value.to_owned());
    }
    let resources = Resources {
        cpus: args.cpus,
        mem: args.mem,
        disk: args.disk,
        gpus: args.gpus,
        ports,
    };
    let nodes = (1..=args.count).map(|index| {
        let mut attributes = attributes.clone();
        if args.racks > 0 && !attributes.contains_key("rack") {
            attributes.insert(
                "rack".to_owned(),
                format!("rack-{}", (index - 1) % args.racks + 1),
            );
        }
        hollow_node(
            &format!("{}{index}", args.name_prefix),
            attributes,
            &resources,
        )
    });
    let results: Vec<anyhow::Result<String>> = futures::stream::iter(nodes)
        .map(|node| register(&client, node))
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    let mut failed = 0;
    for result in results {
        match result {
            Ok(name) => println!("node/{name} registered"),
            Err(error) => {
                failed += 1;
                eprintln!("error: {error:#}");
            }
        }
    }
    Ok(if failed == 0 {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}

/// A hollow Node: spec with attributes; status with capacity = allocatable, `Ready=True`.
fn hollow_node(name: &str, attributes: BTreeMap<String, String>, resources: &Resources) -> Node {
    let now = now();
    let mut ready = Condition::new("Ready", ConditionStatus::True);
    ready.reason = Some("HollowNode".to_owned());
    ready.message = Some("registered by pacer node register-hollow; no agent".to_owned());
    ready.last_transition_time = Some(now);
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([(
                "pacer.dev/hollow".to_owned(),
                "true".to_owned(),
            )])),
            annotations: Some(BTreeMap::from([(
                AGENTLESS_ANNOTATION.to_owned(),
                "true".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        spec: NodeSpec {
            attributes: (!attributes.is_empty()).then_some(attributes),
            ..NodeSpec::default()
        },
        status: Some(NodeStatus {
            capacity: resources.clone(),
            allocatable: resources.clone(),
            hostname: Some(name.to_owned()),
            runtimes: vec!["hollow".to_owned()],
            last_heartbeat_time: Some(now),
            conditions: vec![ready],
            ..NodeStatus::default()
        }),
        ..Node::default()
    }
}

/// Creates `node` (keeping an existing one) and writes its status.
async fn register(client: &Client, node: Node) -> anyhow::Result<String> {
    let name = node.metadata.name_str().to_owned();
    let api: Api<Node> = Api::all(client.clone());
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(error) if error.is_already_exists() => {}
        Err(error) => return Err(error).with_context(|| format!("create node {name}")),
    }
    api.patch_status(&name, &json!({ "status": node.status }))
        .await
        .with_context(|| format!("write the status of node {name}"))?;
    Ok(name)
}

/// `31000-32000,40000-40010` → port ranges.
fn parse_ports(text: &str) -> anyhow::Result<Vec<PortRange>> {
    text.split(',')
        .filter(|range| !range.trim().is_empty())
        .map(|range| {
            let (begin, end) = range.trim().split_once('-').unwrap_or((range, range));
            let begin: i32 = begin
                .trim()
                .parse()
                .with_context(|| format!("--ports {range:?}: not a port"))?;
            let end: i32 = end
                .trim()
                .parse()
                .with_context(|| format!("--ports {range:?}: not a port"))?;
            if !(0..=65535).contains(&begin) || !(begin..=65535).contains(&end) {
                bail!("--ports {range:?}: expected BEGIN-END with 0 <= BEGIN <= END <= 65535");
            }
            Ok(PortRange { begin, end })
        })
        .collect()
}

fn now() -> Time {
    let now = jiff::Timestamp::now();
    Time::from_unix_seconds(now.as_second()).unwrap_or_else(|| Time::new(now))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_parse() {
        let ranges = parse_ports("31000-32000, 40000").unwrap();
        assert_eq!(
            ranges,
            vec![
                PortRange {
                    begin: 31000,
                    end: 32000
                },
                PortRange {
                    begin: 40000,
                    end: 40000
                }
            ]
        );
        assert!(parse_ports("2-1").is_err());
        assert!(parse_ports("x-1").is_err());
    }

    #[test]
    fn drain_timeouts_parse() {
        // (input, seconds or None when rejected)
        let table = [
            ("90", Some(90)),
            ("90s", Some(90)),
            ("5m", Some(300)),
            ("1h30m", Some(5400)),
            ("-5s", None),
            ("soon", None),
        ];
        for (input, expect) in table {
            assert_eq!(
                parse_duration(input).ok().map(|d| d.as_secs()),
                expect,
                "{input}"
            );
        }
    }
}

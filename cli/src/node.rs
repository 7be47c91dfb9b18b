//! `pacer node …`: node commands. Today `pacer node register-hollow`, which registers *hollow*
//! nodes — Node objects with capacity, attributes and a `Ready=True` condition but no agent —
//! through the HTTP API, so that placement can be tried and benchmarked before agents exist.
//!
//! Each node is created (an existing one is kept) and its status then written through the
//! `/status` subresource, since the API server drops `status` on create. Attributes given with
//! `--attribute` apply to every node; unless one of them is `rack`, nodes are spread over
//! `rack=rack-1…rack-<--racks>`.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use futures::StreamExt;
use pacer_client::{Api, Client, PostParams};
use pacer_schemas::capacity::{PortRange, Resources};
use pacer_schemas::condition::{Condition, ConditionStatus};
use pacer_schemas::node::{NodeSpec, NodeStatus};
use pacer_schemas::{Node, ObjectMeta, Time};

use crate::config::ConnectArgs;
use crate::output::Outcome;

/// `pacer node …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum NodeCommand {
    /// Register nodes without an agent (for trying and benchmarking placement).
    RegisterHollow(HollowArgs),
}

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
        NodeCommand::RegisterHollow(args) => register_hollow(args).await,
    }
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
    let http = reqwest::Client::builder()
        .user_agent(format!("pacer/{}", env!("CARGO_PKG_VERSION")))
        .build()
        .context("build an HTTP client")?;
    let token = args.connect.settings()?.token;
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
        .map(|node| register(&client, &http, token.as_deref(), node))
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
async fn register(
    client: &Client,
    http: &reqwest::Client,
    token: Option<&str>,
    node: Node,
) -> anyhow::Result<String> {
    let name = node.metadata.name_str().to_owned();
    let api: Api<Node> = Api::all(client.clone());
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(error) if error.is_already_exists() => {}
        Err(error) => return Err(error).with_context(|| format!("create node {name}")),
    }
    let mut url = client.base_url().clone();
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("server URL {} cannot have a path", client.base_url()))?
        .pop_if_empty()
        .extend(["apis", "pacer.dev", "v1", "nodes", &name, "status"]);
    let mut request = http
        .patch(url)
        .header("Content-Type", "application/merge-patch+json")
        .json(&serde_json::json!({ "status": node.status }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("write the status of node {name}"))?;
    if !response.status().is_success() {
        let code = response.status();
        let body = response.text().await.unwrap_or_default();
        bail!("write the status of node {name}: HTTP {code}: {body}");
    }
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
}

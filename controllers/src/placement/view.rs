//! The cluster as placement sees it: every known node's identity and attributes
//! ([`NodeView`]), the *candidates* instances may go to ([`Candidate`]: free resources on one
//! node), and where each App's instances already are.
//!
//! Candidates come from one of two sources, and the scheduler does not care which:
//!
//! * **nodes** ([`ClusterView::from_nodes`]): one candidate per node, whose free resources
//!   are its allocatable minus what its bound instances use. The placement controller places
//!   from offers, and uses this view (with [`ClusterView::withhold_unoffered`]) to explain what
//!   the offers could not take;
//! * **offers** ([`ClusterView::from_offers`], the offer broker of issue 10): one candidate per
//!   open offer, whose free resources are exactly the offered ones. Nodes are still passed in,
//!   so that constraints count the App's instances on nodes that are not being offered.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use pacer_schemas::condition::ConditionStatus;
use pacer_schemas::instance::InstanceGoal;
use pacer_schemas::offer::OfferPhase;
use pacer_schemas::{Instance, Node, Offer};

use super::constraints::{Field, mesos_value_string};
use super::resources::{PortPool, Scalars};

/// The role of unreserved resources.
pub const UNRESERVED_ROLE: &str = "*";

/// A namespaced object's identity (an App or an Instance).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// A key from its parts.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One node: what constraints read, and what placement tracks of its resources.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeView {
    /// Node name (`metadata.name`).
    pub name: String,
    /// Host name (`status.hostname`, else the node name): the `hostname` constraint field.
    pub hostname: String,
    /// Fault-domain region (`@region`).
    pub region: Option<String>,
    /// Fault-domain zone (`@zone`).
    pub zone: Option<String>,
    /// Attributes, values formatted as Mesos does (scalars rounded, sets and ranges sorted).
    pub attributes: BTreeMap<String, String>,
    /// What instances may use (`status.allocatable`).
    pub allocatable: Scalars,
    /// What bound instances use.
    pub allocated: Scalars,
    /// `spec.unschedulable`.
    pub unschedulable: bool,
    /// False when the node has a `Ready` condition that is not `True` (its agent's lease
    /// lapsed); a node without a `Ready` condition counts as ready.
    pub ready: bool,
    /// Role the node's resources are reserved for (`*`: unreserved).
    pub role: String,
}

impl NodeView {
    /// The view of a Node object (nothing allocated yet).
    pub fn from_node(node: &Node) -> Self {
        let name = node.metadata.name.clone().unwrap_or_default();
        let status = node.status.as_ref();
        Self {
            hostname: status
                .and_then(|status| status.hostname.clone())
                .unwrap_or_else(|| name.clone()),
            region: node.spec.region.clone(),
            zone: node.spec.zone.clone(),
            attributes: normalized(node.spec.attributes.iter().flatten()),
            allocatable: status
                .map(|status| Scalars::from_resources(&status.allocatable))
                .unwrap_or_default(),
            allocated: Scalars::default(),
            unschedulable: node.spec.unschedulable.unwrap_or(false),
            ready: is_ready(node),
            role: node
                .spec
                .role
                .clone()
                .unwrap_or_else(|| UNRESERVED_ROLE.to_owned()),
            name,
        }
    }

    /// A node known only by name (an instance is bound to it but it has no Node object):
    /// host name = name, no attributes, no resources.
    fn unknown(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            hostname: name.to_owned(),
            ready: true,
            role: UNRESERVED_ROLE.to_owned(),
            ..Self::default()
        }
    }

    /// The value a constraint on `field` reads, `None` when the node lacks it.
    pub fn value(&self, field: &Field) -> Option<&str> {
        match field {
            Field::Hostname => Some(&self.hostname),
            Field::Region => self.region.as_deref(),
            Field::Zone => self.zone.as_deref(),
            Field::Attribute(name) => self.attributes.get(name).map(String::as_str),
        }
    }
}

fn normalized<'a>(
    attributes: impl Iterator<Item = (&'a String, &'a String)>,
) -> BTreeMap<String, String> {
    attributes
        .map(|(name, value)| (name.clone(), mesos_value_string(value).into_owned()))
        .collect()
}

/// Where a candidate's resources come from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CandidateSource {
    /// The node's free resources (direct placement).
    Node,
    /// An offer, by name; binding to it means accepting the offer.
    Offer(String),
}

/// Free resources on one node that instances may be placed on.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// Index of the node in [`ClusterView::nodes`].
    pub node: usize,
    /// Node or offer.
    pub source: CandidateSource,
    /// Role of the resources (`*`: unreserved).
    pub role: String,
    /// Free scalar resources; shrinks as the batch places instances here.
    pub free: Scalars,
    /// Free host ports; shrinks as the batch places instances here.
    pub ports: PortPool,
    /// Size of the node, for scoring (how full the node is): its allocatable, or for an
    /// offer of an unknown node the offered amounts.
    pub capacity: Scalars,
    /// False for a node whose resources are withheld
    /// ([`ClusterView::withhold_unoffered`]): nothing is placed on it, and an instance that
    /// would fit there is told so ([`Reason::NotOffered`](super::Reason::NotOffered)).
    pub offered: bool,
}

/// An instance bound to a node, as far as placement cares: which App, which node, what it uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundInstance {
    /// The App it belongs to.
    pub app: ObjectKey,
    /// The node it is bound to.
    pub node_name: String,
    /// What it uses.
    pub resources: Scalars,
    /// Host ports it holds.
    pub host_ports: Vec<i32>,
}

impl BoundInstance {
    /// The bound part of an Instance: `None` when it is not bound to a node or has reached a
    /// terminal phase (it then holds no resources and counts for no constraint). Resources come
    /// from the instance's template (Marathon's defaults when it has none). Instances being
    /// killed, and `Lost` ones, still count: their resources are not known to be free.
    pub fn from_instance(instance: &Instance) -> Option<Self> {
        let node_name = instance.spec.node_name.clone()?;
        if instance.phase().is_terminal() {
            return None;
        }
        Some(Self {
            app: ObjectKey::new(
                instance.metadata.namespace.clone().unwrap_or_default(),
                instance.spec.app.clone(),
            ),
            node_name,
            resources: instance
                .spec
                .template
                .as_ref()
                .map(Scalars::from_spec)
                .unwrap_or_else(|| Scalars::from_spec(&Default::default())),
            host_ports: instance.spec.host_ports.clone().unwrap_or_default(),
        })
    }

    /// [`from_instance`](Self::from_instance) over many instances, skipping unbound ones.
    pub fn from_instances<'a>(instances: impl IntoIterator<Item = &'a Instance>) -> Vec<Self> {
        instances
            .into_iter()
            .filter_map(Self::from_instance)
            .collect()
    }
}

/// Whether an Instance waits for placement: no node yet, not terminal, goal `Running`.
pub fn is_pending(instance: &Instance) -> bool {
    instance.spec.node_name.is_none()
        && !instance.phase().is_terminal()
        && matches!(instance.spec.goal, None | Some(InstanceGoal::Running))
}

/// Nodes, candidates and where Apps' instances are. [`place`](super::place) consumes the
/// candidates' resources and records its placements here, so a second batch placed on the
/// same view sees the first.
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    pub(crate) nodes: Vec<NodeView>,
    by_name: HashMap<String, usize>,
    pub(crate) candidates: Vec<Candidate>,
    /// Instances per App per node index.
    pub(crate) apps: HashMap<ObjectKey, HashMap<u32, u32>>,
    pub(crate) noun: &'static str,
}

impl ClusterView {
    /// Direct placement: one candidate per node (in node-name order), with the node's
    /// allocatable minus what `bound` instances on it use, and its port ranges minus their
    /// host ports.
    pub fn from_nodes<'a>(
        nodes: impl IntoIterator<Item = &'a Node>,
        bound: impl IntoIterator<Item = BoundInstance>,
    ) -> Self {
        let mut view = Self::with_nodes(nodes, "nodes");
        view.add_bound(bound, true);
        view
    }

    /// Offer-based placement (issue 10): one candidate per offer that is still open (no status,
    /// or phase `Offered`), with exactly the offered resources, in (node name, offer name)
    /// order, each with the role of the node's reservation (unreserved resources offered to a
    /// role are still `*`). `nodes` give the attributes of offered nodes and of the nodes where `bound`
    /// instances run (so constraints count every instance of an App, offered node or not);
    /// an offer for a node not among them uses the offer's host name and attributes.
    pub fn from_offers<'a>(
        offers: impl IntoIterator<Item = &'a Offer>,
        nodes: impl IntoIterator<Item = &'a Node>,
        bound: impl IntoIterator<Item = BoundInstance>,
    ) -> Self {
        let mut view = Self::with_nodes(nodes, "offers");
        view.candidates.clear();
        for offer in offers {
            let open = offer
                .status
                .as_ref()
                .is_none_or(|status| status.phase == OfferPhase::Offered);
            if !open {
                continue;
            }
            let spec = &offer.spec;
            // The role instances must accept: that of the node's reservation (`*` for
            // unreserved resources, whatever role they were offered to); for a node not among
            // `nodes`, the offer's role.
            let (node, role) = match view.by_name.get(&spec.node_name) {
                Some(&node) => (node, view.nodes[node].role.clone()),
                None => {
                    let mut node = NodeView::unknown(&spec.node_name);
                    if let Some(hostname) = &spec.hostname {
                        node.hostname.clone_from(hostname);
                    }
                    node.attributes = normalized(spec.attributes.iter().flatten());
                    let role = if spec.role.is_empty() {
                        UNRESERVED_ROLE.to_owned()
                    } else {
                        spec.role.clone()
                    };
                    (view.push_node(node), role)
                }
            };
            let offered = Scalars::from_resources(&spec.resources);
            let allocatable = view.nodes[node].allocatable;
            view.candidates.push(Candidate {
                node,
                source: CandidateSource::Offer(offer.metadata.name.clone().unwrap_or_default()),
                role,
                free: offered,
                ports: PortPool::from_ranges(&spec.resources.ports),
                capacity: if allocatable == Scalars::default() {
                    offered
                } else {
                    allocatable
                },
                offered: true,
            });
        }
        let nodes = &view.nodes;
        view.candidates.sort_by(|a, b| {
            nodes[a.node]
                .name
                .cmp(&nodes[b.node].name)
                .then_with(|| a.source_name().cmp(b.source_name()))
        });
        view.add_bound(bound, false);
        view
    }

    /// Marks the node candidates of nodes not in `offered` as withheld: `place` puts nothing
    /// there, and explains an instance that only such a node would take as
    /// [`Reason::NotOffered`](super::Reason::NotOffered). The placement controller explains
    /// what its offers could not take with a view from nodes withheld this way, so that a
    /// node short of resources still says so, and a fine node without an open offer says
    /// "not offered".
    pub fn withhold_unoffered(&mut self, offered: &std::collections::HashSet<&str>) {
        for candidate in &mut self.candidates {
            if !offered.contains(self.nodes[candidate.node].name.as_str()) {
                candidate.offered = false;
            }
        }
    }

    /// All known nodes (those passed in, then nodes known only from bound instances or offers).
    pub fn nodes(&self) -> &[NodeView] {
        &self.nodes
    }

    /// The candidates, in placement's tie-breaking order.
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&NodeView> {
        self.by_name.get(name).map(|&index| &self.nodes[index])
    }

    /// Number of instances of `app` on the node `node_name` (bound, or placed on this view).
    pub fn instances_on(&self, app: &ObjectKey, node_name: &str) -> u32 {
        let Some(&node) = self.by_name.get(node_name) else {
            return 0;
        };
        self.apps
            .get(app)
            .and_then(|nodes| nodes.get(&node_index(node)))
            .copied()
            .unwrap_or(0)
    }

    /// Number of instances of `app` in the view.
    pub fn instances_of(&self, app: &ObjectKey) -> u32 {
        self.apps
            .get(app)
            .map(|nodes| nodes.values().sum())
            .unwrap_or(0)
    }

    /// Whether the candidates are offers ([`ClusterView::from_offers`]).
    pub fn is_offer_view(&self) -> bool {
        self.noun == "offers"
    }

    /// "nodes" or "offers", for messages.
    pub fn noun(&self) -> &'static str {
        self.noun
    }

    /// Nodes sorted by name (duplicates: the last wins), with a node candidate each.
    fn with_nodes<'a>(nodes: impl IntoIterator<Item = &'a Node>, noun: &'static str) -> Self {
        let mut sorted: BTreeMap<String, &Node> = BTreeMap::new();
        for node in nodes {
            sorted.insert(node.metadata.name.clone().unwrap_or_default(), node);
        }
        let mut view = Self {
            noun,
            ..Self::default()
        };
        for node in sorted.values() {
            let index = view.push_node(NodeView::from_node(node));
            let allocatable = view.nodes[index].allocatable;
            let ranges = node
                .status
                .as_ref()
                .map(|status| status.allocatable.ports.as_slice())
                .unwrap_or_default();
            view.candidates.push(Candidate {
                node: index,
                source: CandidateSource::Node,
                role: view.nodes[index].role.clone(),
                free: allocatable,
                ports: PortPool::from_ranges(ranges),
                capacity: allocatable,
                offered: true,
            });
        }
        view
    }

    fn push_node(&mut self, node: NodeView) -> usize {
        let index = self.nodes.len();
        self.by_name.insert(node.name.clone(), index);
        self.nodes.push(node);
        index
    }

    /// Records bound instances: per-App counts, node allocation and, when `consume`, the
    /// node candidates' free resources and ports.
    fn add_bound(&mut self, bound: impl IntoIterator<Item = BoundInstance>, consume: bool) {
        // Node candidates are at the node's index when built from nodes.
        for instance in bound {
            let node = match self.by_name.get(&instance.node_name) {
                Some(&node) => node,
                None => self.push_node(NodeView::unknown(&instance.node_name)),
            };
            let view = &mut self.nodes[node];
            view.allocated = view.allocated.plus(&instance.resources);
            if consume && let Some(candidate) = self.candidates.get_mut(node) {
                candidate.free = candidate.free.minus(&instance.resources);
                for port in &instance.host_ports {
                    if let Ok(port) = u32::try_from(*port) {
                        candidate.ports.remove(port);
                    }
                }
            }
            *self
                .apps
                .entry(instance.app)
                .or_default()
                .entry(node_index(node))
                .or_default() += 1;
        }
    }
}

impl Candidate {
    fn source_name(&self) -> &str {
        match &self.source {
            CandidateSource::Node => "",
            CandidateSource::Offer(name) => name,
        }
    }
}

/// Node indexes are stored as u32 in per-App counts (a cluster has far fewer than 2³² nodes).
pub(crate) fn node_index(node: usize) -> u32 {
    u32::try_from(node).unwrap_or(u32::MAX)
}

/// Whether the node is ready: its `Ready` condition is `True` (a node without one counts as
/// ready; a lapsed lease makes it `Unknown`).
pub fn is_ready(node: &Node) -> bool {
    node.status.as_ref().is_none_or(|status| {
        status
            .conditions
            .iter()
            .filter(|condition| condition.type_ == "Ready")
            .all(|condition| condition.status == ConditionStatus::True)
    })
}

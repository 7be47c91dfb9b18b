//! One round of the offer broker, as a pure function of the caches and the time:
//! [`plan_round`] answers the open offers (accepts to run, declines to turn into filters,
//! expired and rescinded offers to delete) and makes new ones, in Dominant Resource Fairness
//! order, and computes each Framework's status.
//!
//! The rules:
//!
//! * A node's free resources are its allocatable minus what its bound, non-terminal Instances
//!   use (their template's cpus/mem/disk/gpus and their host ports). Only ready, schedulable
//!   nodes are offered; a node reserved for a role (`Node.spec.role`) only to that role.
//! * A node has at most one offer at a time, holding all its free resources (clipped to the
//!   receiving role's quota and to what other roles' reservations leave): an offer's resources
//!   are offered to no one else until it is accepted, declined, expired or rescinded. A node
//!   whose offer was answered this round is offered again only next round, once the caches
//!   show the answer.
//! * Nodes are offered in name order; each goes to the role with the lowest weighted dominant
//!   share (instances bound with the role plus its open offers count as held), among roles
//!   with a framework that is not suppressed and has no decline filter on the node; within the
//!   role, to the framework with the fewest open offers (then by name). Each offer counts at
//!   once, so the next node goes to whichever role is then lowest.
//! * An open offer is rescinded when its node is gone, not ready or unschedulable, when the
//!   node's free resources no longer cover it (something else was bound there), or when its
//!   framework is gone or suppressed; it expires at `expiresAt`.
//! * A declined offer is deleted and its node filtered from the framework for the decline's
//!   `refuseSeconds` (default 5), as Mesos filters: only while what the node would offer fits
//!   within the declined resources (freed resources are offered at once), and only while the
//!   framework's `metadata.generation` is the one it declined under (the offer's
//!   `status.frameworkGeneration`, else the one the broker sees): a revive — `spec.reviveCount`
//!   raised — or any spec change drops its filters. An accepted one is consumed by [`accept_txn`] if its launches
//!   fit the offer, and otherwise deleted with the refusal recorded in the framework's status.
//!
//! [`accept_txn`]: super::accept::accept_txn

use std::collections::{BTreeMap, HashMap, HashSet};

use pacer_schemas::capacity::Resources;
use pacer_schemas::framework::{DEFAULT_REFUSE_SECONDS, DeclineFilter, Framework, FrameworkStatus};
use pacer_schemas::offer::{OfferPhase, OfferSpec};
use pacer_schemas::{Instance, Node, ObjectMeta, Offer, Resource, Time};

use super::accept::plan_accept;
use super::drf::{Allocator, RoleConfig, dominant_share};
use crate::placement::view::UNRESERVED_ROLE;
use crate::placement::{NodeView, PortPool, Scalars};

/// Why an offer is deleted without an accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removal {
    /// Declined by its framework (a filter is recorded).
    Declined,
    /// Not answered before `expiresAt`.
    Expired,
    /// Withdrawn by the broker; the reason says why.
    Rescinded(String),
    /// Accepted with launches that do not fit; the reason is recorded in the framework.
    Refused(String),
    /// Already marked `Expired` or `Rescinded` by someone else.
    Finished,
}

/// An offer to delete (compared at its revision).
#[derive(Clone, Debug)]
pub struct OfferRemoval {
    /// The offer, as read.
    pub offer: Offer,
    /// Why.
    pub why: Removal,
}

/// An accepted offer and the Instances its accept creates.
#[derive(Clone, Debug)]
pub struct OfferAccept {
    /// The offer, as read (phase `Accepted`).
    pub offer: Offer,
    /// The Instances to create.
    pub instances: Vec<Instance>,
}

/// What one round does.
#[derive(Clone, Debug, Default)]
pub struct RoundPlan {
    /// Offers to delete.
    pub removals: Vec<OfferRemoval>,
    /// Accepts to carry out.
    pub accepts: Vec<OfferAccept>,
    /// New offers.
    pub offers: Vec<Offer>,
    /// Frameworks whose status changes, with the new status.
    pub statuses: Vec<(Framework, FrameworkStatus)>,
    /// The earliest instant something times out (an offer or a filter), to wake up then.
    pub deadline: Option<Time>,
    /// Every role a framework has, with what it holds once the plan is carried out (bound
    /// instances, accepts and open offers, new ones included), for `/metrics`.
    pub roles: Vec<RoleHolding>,
    /// Offers open once the plan is carried out: the ones kept plus the new ones.
    pub open_offers: usize,
}

/// What one role holds after a round.
#[derive(Clone, Debug, PartialEq)]
pub struct RoleHolding {
    /// The role.
    pub role: String,
    /// What it holds.
    pub allocated: Scalars,
    /// Its dominant share of the offerable cluster (0–1), before its weight.
    pub dominant_share: f64,
}

/// The caches a round reads.
#[derive(Clone, Copy, Debug)]
pub struct RoundInput<'a> {
    /// The time.
    pub now: Time,
    /// Every Node.
    pub nodes: &'a [&'a Node],
    /// Every Instance.
    pub instances: &'a [&'a Instance],
    /// Every Offer.
    pub offers: &'a [&'a Offer],
    /// Every Framework.
    pub frameworks: &'a [&'a Framework],
}

/// A node's free resources as the broker sees them.
#[derive(Clone, Debug)]
struct NodeFree {
    view: NodeView,
    free: Scalars,
    ports: PortPool,
}

fn add_seconds(time: Time, seconds: f64) -> Time {
    let seconds = if seconds.is_finite() {
        seconds.max(0.0)
    } else {
        0.0
    };
    let duration = jiff::SignedDuration::try_from_secs_f64(seconds).unwrap_or_default();
    time.timestamp()
        .checked_add(duration)
        .map(Time::new)
        .unwrap_or(time)
}

fn earliest(deadline: &mut Option<Time>, at: Time) {
    *deadline = Some(deadline.map_or(at, |current| current.min(at)));
}

/// Scalars back to API amounts (with `ports` as given).
pub fn to_resources(
    scalars: &Scalars,
    ports: Vec<pacer_schemas::capacity::PortRange>,
) -> Resources {
    // Thousandths far below 2^52 convert exactly.
    Resources {
        cpus: scalars.cpus as f64 / 1000.0,
        mem: scalars.mem as f64 / 1000.0,
        disk: scalars.disk as f64 / 1000.0,
        gpus: i32::try_from(scalars.gpus).unwrap_or(i32::MAX),
        ports,
    }
}

/// What a bound, non-terminal instance holds (`None` for the others): node, role, scalars,
/// host ports.
fn holding(instance: &Instance) -> Option<(&str, &str, Scalars, &[i32])> {
    let node = instance.spec.node_name.as_deref()?;
    if instance.phase().is_terminal() {
        return None;
    }
    let scalars = instance
        .spec
        .template
        .as_ref()
        .map(Scalars::from_spec)
        .unwrap_or_else(|| Scalars::from_spec(&Default::default()));
    let role = instance
        .spec
        .role
        .as_deref()
        .filter(|role| !role.is_empty())
        .unwrap_or(UNRESERVED_ROLE);
    Some((
        node,
        role,
        scalars,
        instance.spec.host_ports.as_deref().unwrap_or_default(),
    ))
}

/// The role settings of the frameworks registered in it: the largest weight and
/// reservation, the smallest quota.
fn role_configs(frameworks: &[&Framework]) -> BTreeMap<String, RoleConfig> {
    let mut roles: BTreeMap<String, RoleConfig> = BTreeMap::new();
    for framework in frameworks {
        let spec = &framework.spec;
        let role = roles
            .entry(spec.role().to_owned())
            .or_insert_with(|| RoleConfig::new(spec.role()).weight(0.0));
        role.weight = role.weight.max(spec.weight());
        if let Some(quota) = &spec.quota {
            let quota = Scalars::from_resources(quota);
            role.quota = Some(match role.quota {
                Some(current) => Scalars {
                    cpus: current.cpus.min(quota.cpus),
                    mem: current.mem.min(quota.mem),
                    disk: current.disk.min(quota.disk),
                    gpus: current.gpus.min(quota.gpus),
                },
                None => quota,
            });
        }
        if let Some(reservation) = &spec.reservation {
            let reservation = Scalars::from_resources(reservation);
            let current = role.reservation;
            role.reservation = Scalars {
                cpus: current.cpus.max(reservation.cpus),
                mem: current.mem.max(reservation.mem),
                disk: current.disk.max(reservation.disk),
                gpus: current.gpus.max(reservation.gpus),
            };
        }
    }
    roles
}

/// Plans one round (see the module docs).
pub fn plan_round(input: RoundInput<'_>) -> RoundPlan {
    let now = input.now;
    let mut plan = RoundPlan::default();

    // Nodes and their free resources.
    let mut nodes: BTreeMap<String, NodeFree> = input
        .nodes
        .iter()
        .filter(|node| node.metadata.deletion_timestamp.is_none())
        .map(|node| {
            let view = NodeView::from_node(node);
            let ports = PortPool::from_ranges(
                node.status
                    .as_ref()
                    .map(|status| status.allocatable.ports.as_slice())
                    .unwrap_or_default(),
            );
            (
                view.name.clone(),
                NodeFree {
                    free: view.allocatable,
                    view,
                    ports,
                },
            )
        })
        .collect();
    let mut held: HashMap<String, Scalars> = HashMap::new();
    for instance in input.instances {
        let Some((node, role, scalars, host_ports)) = holding(instance) else {
            continue;
        };
        let sum = held.entry(role.to_owned()).or_default();
        *sum = sum.plus(&scalars);
        if let Some(entry) = nodes.get_mut(node) {
            entry.free = entry.free.minus(&scalars);
            for port in host_ports {
                if let Ok(port) = u32::try_from(*port) {
                    entry.ports.remove(port);
                }
            }
        }
    }
    let offerable = |node: &NodeFree| node.view.ready && !node.view.unschedulable;

    // Frameworks, their filters still in force, and the roles.
    let frameworks: BTreeMap<&str, &Framework> = input
        .frameworks
        .iter()
        .filter(|framework| framework.metadata.deletion_timestamp.is_none())
        .map(|framework| (framework.metadata.name_str(), *framework))
        .collect();
    let mut filters: HashMap<&str, Vec<DeclineFilter>> = frameworks
        .iter()
        .map(|(name, framework)| {
            let generation = framework.metadata.generation;
            let kept = framework
                .status
                .iter()
                .flat_map(|status| &status.filters)
                .filter(|filter| filter.in_force(now, generation))
                .cloned()
                .collect();
            (*name, kept)
        })
        .collect();
    let mut refusals: HashMap<&str, String> = HashMap::new();
    let mut outstanding: HashMap<&str, i32> = HashMap::new();
    let roles = role_configs(&frameworks.values().copied().collect::<Vec<_>>());
    let total = nodes
        .values()
        .filter(|node| offerable(node))
        .fold(Scalars::default(), |sum, node| {
            sum.plus(&node.view.allocatable)
        });
    let mut allocator = Allocator::new(total);
    for config in roles.values() {
        allocator.add_role(config.clone());
    }
    for (role, scalars) in &held {
        if roles.contains_key(role) {
            allocator.allocate(role, scalars);
        }
    }

    // The offers: answer, expire, rescind or keep.
    let mut busy: HashSet<String> = HashSet::new();
    let mut offers: Vec<&Offer> = input.offers.to_vec();
    offers.sort_by(|a, b| a.metadata.name_str().cmp(b.metadata.name_str()));
    for offer in offers {
        let spec = &offer.spec;
        busy.insert(spec.node_name.clone());
        let framework = spec
            .framework
            .as_deref()
            .and_then(|name| frameworks.get_key_value(name));
        let phase = offer
            .status
            .as_ref()
            .map(|status| status.phase)
            .unwrap_or_default();
        let remove = |why: Removal| OfferRemoval {
            offer: offer.clone(),
            why,
        };
        match phase {
            OfferPhase::Declined => {
                if let Some((name, framework)) = framework {
                    let status = offer.status.as_ref();
                    let seconds = status
                        .and_then(|status| status.refuse_seconds)
                        .unwrap_or(DEFAULT_REFUSE_SECONDS);
                    let until = add_seconds(now, seconds);
                    let list = filters.entry(name).or_default();
                    list.retain(|filter| filter.node_name != spec.node_name);
                    let mut declined = spec.resources.clone();
                    declined.ports = Vec::new();
                    list.push(DeclineFilter {
                        node_name: spec.node_name.clone(),
                        until,
                        resources: Some(declined),
                        generation: status
                            .and_then(|status| status.framework_generation)
                            .or(framework.metadata.generation),
                    });
                }
                plan.removals.push(remove(Removal::Declined));
            }
            OfferPhase::Expired | OfferPhase::Rescinded => {
                plan.removals.push(remove(Removal::Finished));
            }
            OfferPhase::Accepted => {
                let launches = offer
                    .status
                    .as_ref()
                    .map(|status| status.launch.as_slice())
                    .unwrap_or_default();
                let node = nodes.get(&spec.node_name);
                let outcome = match (framework, node) {
                    (None, _) => Err("its framework is gone".to_owned()),
                    (_, None) => Err(format!("node {} is gone", spec.node_name)),
                    (Some(_), Some(node)) => plan_accept(offer, launches, now)
                        .map_err(|error| error.to_string())
                        .and_then(|instances| {
                            let needed = instances
                                .iter()
                                .filter_map(|instance| holding(instance))
                                .fold(Scalars::default(), |sum, (_, _, scalars, _)| {
                                    sum.plus(&scalars)
                                });
                            if needed.fits_in(&node.free) {
                                Ok(instances)
                            } else {
                                Err(format!(
                                    "node {} no longer has the offered resources",
                                    spec.node_name
                                ))
                            }
                        }),
                };
                match outcome {
                    Ok(instances) => {
                        for (_, _, scalars, _) in instances.iter().filter_map(|i| holding(i)) {
                            allocator.allocate(&spec.role, &scalars);
                        }
                        plan.accepts.push(OfferAccept {
                            offer: offer.clone(),
                            instances,
                        });
                    }
                    Err(reason) => {
                        if let Some((name, _)) = framework {
                            refusals.insert(
                                name,
                                format!("offer {}: {reason}", offer.metadata.name_str()),
                            );
                        }
                        plan.removals.push(remove(Removal::Refused(reason)));
                    }
                }
            }
            OfferPhase::Offered => {
                let node = nodes.get(&spec.node_name);
                let offered = Scalars::from_resources(&spec.resources);
                let rescind = match (framework, node) {
                    (None, _) => Some("its framework is gone".to_owned()),
                    (Some((_, framework)), _) if framework.spec.suppressed == Some(true) => {
                        Some("its framework is suppressed".to_owned())
                    }
                    (_, None) => Some(format!("node {} is gone", spec.node_name)),
                    (_, Some(node)) if !node.view.ready => {
                        Some(format!("node {} is not ready", spec.node_name))
                    }
                    (_, Some(node)) if node.view.unschedulable => {
                        Some(format!("node {} is unschedulable", spec.node_name))
                    }
                    (_, Some(node))
                        if !offered.fits_in(&node.free)
                            || !spec.resources.ports.iter().all(|range| {
                                (range.begin..=range.end).all(|port| {
                                    u32::try_from(port).is_ok_and(|port| node.ports.contains(port))
                                })
                            }) =>
                    {
                        Some(format!(
                            "node {} no longer has the offered resources",
                            spec.node_name
                        ))
                    }
                    _ => None,
                };
                if let Some(reason) = rescind {
                    plan.removals.push(remove(Removal::Rescinded(reason)));
                } else if spec.expires_at.is_some_and(|at| at <= now) {
                    plan.removals.push(remove(Removal::Expired));
                } else {
                    if let Some(at) = spec.expires_at {
                        earliest(&mut plan.deadline, at);
                    }
                    plan.open_offers += 1;
                    if let Some((name, framework)) = framework {
                        *outstanding.entry(name).or_default() += 1;
                        allocator.allocate(framework.spec.role(), &offered);
                    }
                }
            }
        }
    }

    // New offers, node by node, in DRF order.
    for (name, node) in &nodes {
        if busy.contains(name) || !offerable(node) || node.free.cpus <= 0 || node.free.mem <= 0 {
            continue;
        }
        let choice = allocator
            .order()
            .into_iter()
            .filter(|role| node.view.role == UNRESERVED_ROLE || node.view.role == *role)
            .find_map(|role| {
                let amount = clip(&node.free, &allocator.headroom(role));
                if amount.cpus <= 0 || amount.mem <= 0 {
                    return None;
                }
                let framework = frameworks
                    .iter()
                    .filter(|(_, framework)| {
                        framework.spec.role() == role && framework.spec.suppressed != Some(true)
                    })
                    .filter(|(framework_name, _)| {
                        filters.get(*framework_name).is_none_or(|list| {
                            !list.iter().any(|filter| refuses(filter, name, &amount))
                        })
                    })
                    .min_by_key(|(framework_name, _)| {
                        (
                            outstanding.get(*framework_name).copied().unwrap_or(0),
                            **framework_name,
                        )
                    })?;
                Some((role.to_owned(), amount, *framework.0, *framework.1))
            });
        let Some((role, amount, framework_name, framework)) = choice else {
            continue;
        };
        let expires_at = add_seconds(now, framework.spec.offer_timeout_seconds());
        earliest(&mut plan.deadline, expires_at);
        let mut offer = Offer {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{name}.{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..12]
                )),
                uid: Some(uuid::Uuid::new_v4().to_string()),
                creation_timestamp: Some(now),
                generation: Some(1),
                ..ObjectMeta::default()
            },
            spec: OfferSpec {
                node_name: name.clone(),
                hostname: Some(node.view.hostname.clone()),
                role: role.clone(),
                resources: to_resources(&amount, node.ports.ranges()),
                attributes: (!node.view.attributes.is_empty())
                    .then(|| node.view.attributes.clone()),
                expires_at: Some(expires_at),
                framework: Some(framework_name.to_owned()),
            },
            status: None,
            ..Offer::default()
        };
        offer.set_type_meta();
        allocator.allocate(&role, &amount);
        *outstanding.entry(framework_name).or_default() += 1;
        plan.offers.push(offer);
    }
    plan.open_offers += plan.offers.len();
    plan.roles = roles
        .keys()
        .map(|role| {
            let allocated = allocator.allocated(role);
            RoleHolding {
                role: role.clone(),
                allocated,
                dominant_share: dominant_share(&allocated, &allocator.total()),
            }
        })
        .collect();

    // Framework statuses.
    for (name, framework) in &frameworks {
        let list = filters.remove(name).unwrap_or_default();
        for filter in &list {
            earliest(&mut plan.deadline, filter.until);
        }
        let old = framework.status.clone().unwrap_or_else(|| FrameworkStatus {
            role_allocated: Resources::default(),
            dominant_share: 0.0,
            outstanding_offers: 0,
            filters: Vec::new(),
            last_refused_accept: None,
        });
        let role = framework.spec.role();
        let allocated = allocator.allocated(role);
        let status = FrameworkStatus {
            role_allocated: to_resources(&allocated, Vec::new()),
            // Rounded to 4 places, so tiny changes do not rewrite every status.
            dominant_share: (dominant_share(&allocated, &allocator.total()) * 10_000.0).round()
                / 10_000.0,
            outstanding_offers: outstanding.get(name).copied().unwrap_or(0),
            filters: list,
            last_refused_accept: refusals
                .remove(name)
                .or_else(|| old.last_refused_accept.clone()),
        };
        if framework.status.as_ref() != Some(&status) {
            plan.statuses.push(((*framework).clone(), status));
        }
    }
    plan
}

/// Whether a decline filter keeps `amount` of node `node` from its framework: the node's, and
/// the amount fits within what was declined.
fn refuses(filter: &DeclineFilter, node: &str, amount: &Scalars) -> bool {
    filter.node_name == node
        && filter
            .resources
            .as_ref()
            .is_none_or(|declined| amount.fits_in(&Scalars::from_resources(declined)))
}

/// `free` clipped to `headroom`, never negative.
fn clip(free: &Scalars, headroom: &Scalars) -> Scalars {
    Scalars {
        cpus: free.cpus.min(headroom.cpus).max(0),
        mem: free.mem.min(headroom.mem).max(0),
        disk: free.disk.min(headroom.disk).max(0),
        gpus: free.gpus.min(headroom.gpus).max(0),
    }
}

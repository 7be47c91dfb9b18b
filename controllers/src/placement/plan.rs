//! The outcome of a placement: bindings, and for each instance left pending a reason in the
//! style of Kubernetes' scheduler (`0/5 nodes available: 3 insufficient mem, 2 did not match
//! constraint hostname:UNIQUE`).

use std::fmt;

use super::resources::ResourceKind;
use super::view::ObjectKey;

/// What [`place`](super::place) decided for a batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlacementPlan {
    /// Instances bound to a node, in the order they were placed.
    pub bindings: Vec<Binding>,
    /// Instances that stay pending, with the reason.
    pub unplaced: Vec<Unplaced>,
}

impl PlacementPlan {
    /// The binding of an instance, if it was placed.
    pub fn binding(&self, instance: &ObjectKey) -> Option<&Binding> {
        self.bindings
            .iter()
            .find(|binding| &binding.instance == instance)
    }

    /// The reason an instance was not placed, if it was not.
    pub fn unplaced(&self, instance: &ObjectKey) -> Option<&Unplaced> {
        self.unplaced
            .iter()
            .find(|unplaced| &unplaced.instance == instance)
    }
}

/// One instance bound to a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The instance.
    pub instance: ObjectKey,
    /// Its App.
    pub app: ObjectKey,
    /// The node (`spec.nodeName`).
    pub node_name: String,
    /// The node's host name (the instance's `status.host`).
    pub hostname: String,
    /// Host ports (`spec.hostPorts`), one per port the App asks for, in the App's order.
    pub host_ports: Vec<i32>,
    /// Role of the resources used (`spec.role`).
    pub role: String,
    /// The offer whose resources were used, when placing from offers.
    pub offer: Option<String>,
}

/// An instance that stays pending.
#[derive(Clone, Debug, PartialEq)]
pub struct Unplaced {
    /// The instance.
    pub instance: ObjectKey,
    /// Its App.
    pub app: ObjectKey,
    /// Why.
    pub reason: UnplacedReason,
}

/// Why an instance stays pending.
#[derive(Clone, Debug, PartialEq)]
pub enum UnplacedReason {
    /// No candidate fits; why each candidate does not.
    NoFit(FailureSummary),
    /// The instance's requirements cannot be evaluated (e.g. an invalid constraint).
    Invalid(String),
}

impl fmt::Display for UnplacedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoFit(summary) => summary.fmt(f),
            Self::Invalid(message) => f.write_str(message),
        }
    }
}

/// Why one candidate cannot take an instance (the first check it fails, in the order: ready,
/// schedulable, role, constraints in the App's order, cpus, mem, disk, gpus, ports, offered).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The node's `Ready` condition is not `True`.
    NotReady,
    /// The node is `unschedulable`.
    Unschedulable,
    /// The resources are reserved for a role the App does not accept.
    Role,
    /// A constraint rejects the node, named as `field:OPERATOR[:value]`.
    Constraint(String),
    /// Not enough of a resource is free.
    Insufficient(ResourceKind),
    /// Enough ports are free, but a required one is not.
    PortsTaken,
    /// The node would take the instance, but its resources are not offered to the placement
    /// framework (offered to another framework, filtered, or not offered yet); see
    /// [`ClusterView::withhold_unoffered`](super::ClusterView::withhold_unoffered).
    NotOffered,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotReady => f.write_str("not ready"),
            Self::Unschedulable => f.write_str("unschedulable"),
            Self::Role => f.write_str("reserved for another role"),
            Self::Constraint(constraint) => write!(f, "did not match constraint {constraint}"),
            Self::Insufficient(kind) => write!(f, "insufficient {kind}"),
            Self::PortsTaken => f.write_str("required host ports in use"),
            Self::NotOffered => f.write_str("not offered"),
        }
    }
}

/// How many candidates failed for which reason. Displays as
/// `0/5 nodes available: 3 insufficient mem, 2 did not match constraint hostname:UNIQUE`,
/// most frequent reason first (ties alphabetically).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureSummary {
    /// Number of candidates considered.
    pub total: usize,
    /// "nodes" or "offers".
    pub noun: &'static str,
    /// Reasons and how many candidates failed for each; each candidate is counted once.
    pub reasons: Vec<(Reason, usize)>,
}

impl FailureSummary {
    /// A summary from per-reason counts (sorted here).
    pub fn new(total: usize, noun: &'static str, mut reasons: Vec<(Reason, usize)>) -> Self {
        reasons.retain(|(_, count)| *count > 0);
        reasons.sort_by(|(reason_a, count_a), (reason_b, count_b)| {
            count_b
                .cmp(count_a)
                .then_with(|| reason_a.to_string().cmp(&reason_b.to_string()))
        });
        Self {
            total,
            noun,
            reasons,
        }
    }

    /// How many candidates failed for `reason`.
    pub fn count(&self, reason: &Reason) -> usize {
        self.reasons
            .iter()
            .find(|(candidate, _)| candidate == reason)
            .map_or(0, |(_, count)| *count)
    }
}

impl fmt::Display for FailureSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} {} available", self.total, self.noun)?;
        for (index, (reason, count)) in self.reasons.iter().enumerate() {
            let separator = if index == 0 { ": " } else { ", " };
            write!(f, "{separator}{count} {reason}")?;
        }
        Ok(())
    }
}

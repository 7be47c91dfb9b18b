//! The node lifecycle controller's decisions, as pure functions of the cached objects and
//! *now*: whether a Node is reachable ([`reachability`]), what its `Ready` condition must say
//! ([`node_transition`]), and what becomes of an Instance bound to an unreachable node
//! ([`lost_instance`]). Each also says when its answer next changes, so the controller sleeps
//! exactly until then.

use pacer_schemas::app::UnreachableStrategy;
use pacer_schemas::condition::{Condition, ConditionStatus, find_condition, set_condition};
use pacer_schemas::event::EventType;
use pacer_schemas::instance::{InstanceGoal, InstancePhase};
use pacer_schemas::{AppSpec, Instance, Lease, Node, Time};

/// The annotation that exempts a Node from lease checks: it has no agent (`pacer node
/// register-hollow`), so it never renews a lease and stays as registered.
pub const AGENTLESS_ANNOTATION: &str = "pacer.dev/agentless";
/// The node condition this controller owns the liveness side of.
pub const READY: &str = "Ready";
/// `Ready` reason (and Event reason) of a node whose lease ended.
pub const NODE_LEASE_EXPIRED: &str = "NodeLeaseExpired";
/// `Ready` reason of a node whose lease is renewed again.
pub const NODE_LEASE_RENEWED: &str = "NodeLeaseRenewed";
/// Event reason when a node becomes unreachable.
pub const NODE_NOT_READY: &str = "NodeNotReady";
/// Event reason when it is reachable again.
pub const NODE_READY: &str = "NodeReady";
/// Instance `status.reason` once its node is unreachable.
pub const NODE_UNREACHABLE: &str = "NodeUnreachable";
/// Instance `status.reason` once it was unreachable for `inactiveAfterSeconds` (goal set to
/// `Decommissioned`, so that its owner replaces it).
pub const UNREACHABLE_INACTIVE: &str = "UnreachableInactive";
/// Instance `status.reason` once it was unreachable for `expungeAfterSeconds` (phase `Gone`).
pub const UNREACHABLE_EXPUNGED: &str = "UnreachableExpunged";

/// Whether a node answers, per its lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reachability {
    /// Agentless: never checked.
    Exempt,
    /// Reachable; `until` is when that ends unless the lease is renewed (`None`: no deadline).
    Reachable {
        /// When the node becomes unreachable if nothing changes.
        until: Option<Time>,
    },
    /// Unreachable, and why (the `Ready` condition's message).
    Unreachable {
        /// Human-readable reason.
        message: String,
    },
}

/// Whether a node is annotated [`AGENTLESS_ANNOTATION`]`: "true"`.
pub fn is_agentless(node: &Node) -> bool {
    node.metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(AGENTLESS_ANNOTATION))
        .is_some_and(|value| value == "true")
}

/// `at + seconds`, saturating.
pub fn after(at: Time, seconds: i64) -> Time {
    let duration = jiff::SignedDuration::from_secs(seconds);
    Time::new(
        at.timestamp()
            .checked_add(duration)
            .unwrap_or(jiff::Timestamp::MAX),
    )
}

/// Whether `node` is reachable at `now`, given its lease (if any) and how long a node may go
/// without any lease after its creation (`grace_seconds`).
///
/// `observing_since` is when this controller (this leadership term) started watching. As in
/// Kubernetes' node lifecycle controller, a lease counts as expired only once it went unrenewed
/// for its whole duration *as observed by this controller*: the deadline is
/// `max(renewTime, observing_since) + leaseDurationSeconds`, and the no-lease grace counts from
/// `max(creationTimestamp, observing_since)`. So a control plane that was down longer than the
/// lease (agents alive but unable to renew) does not declare every node dead when it starts; the
/// agents get one lease duration to renew first. A lease without a holder (the agent released
/// it) is unreachable at once.
pub fn reachability(
    node: &Node,
    lease: Option<&Lease>,
    now: Time,
    observing_since: Time,
    grace_seconds: i64,
) -> Reachability {
    if is_agentless(node) {
        return Reachability::Exempt;
    }
    match lease {
        Some(lease) if lease.is_held(now) => Reachability::Reachable {
            until: lease.expires_at(),
        },
        Some(lease)
            if lease.holder().is_some()
                && now < after(observing_since, i64::from(lease.spec.duration_seconds())) =>
        {
            Reachability::Reachable {
                until: Some(after(
                    observing_since,
                    i64::from(lease.spec.duration_seconds()),
                )),
            }
        }
        Some(lease) => Reachability::Unreachable {
            message: match (
                lease.holder(),
                lease.spec.renew_time.or(lease.spec.acquire_time),
            ) {
                (None, _) => "the node's lease has no holder: its agent released it".to_owned(),
                (Some(_), Some(renewed)) => format!(
                    "the node's lease expired at {} (last renewed {renewed}, duration {} s)",
                    lease.expires_at().unwrap_or(renewed),
                    lease.spec.duration_seconds()
                ),
                (Some(_), None) => "the node's lease was never renewed".to_owned(),
            },
        },
        None => match node.metadata.creation_timestamp {
            Some(created) if now < after(created.max(observing_since), grace_seconds) => {
                Reachability::Reachable {
                    until: Some(after(created.max(observing_since), grace_seconds)),
                }
            }
            Some(_) => Reachability::Unreachable {
                message: format!(
                    "the node has had no lease for {grace_seconds} s since it was registered"
                ),
            },
            // Every stored Node has a creation time; without one there is nothing to count from.
            None => Reachability::Reachable { until: None },
        },
    }
}

/// An Event to record about a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEvent {
    /// `NodeNotReady` or `NodeReady`.
    pub reason: &'static str,
    /// Warning or Normal.
    pub type_: EventType,
    /// Human-readable details.
    pub message: String,
}

/// The node with its `Ready` condition changed to match `reachability`, and the Event that
/// records it; `None` when the condition already says so. Only the controller's own verdict is
/// reverted: a reachable node's `Ready` goes back to `True` only when it is
/// `NodeLeaseExpired` (the agent owns `Ready` otherwise).
pub fn node_transition(
    node: &Node,
    reachability: &Reachability,
    now: Time,
) -> Option<(Node, NodeEvent)> {
    let current = node
        .status
        .as_ref()
        .and_then(|status| find_condition(&status.conditions, READY));
    let expired_by_us = current.is_some_and(|ready| {
        ready.status != ConditionStatus::True && ready.reason.as_deref() == Some(NODE_LEASE_EXPIRED)
    });
    let (condition, event) = match reachability {
        Reachability::Exempt => return None,
        Reachability::Unreachable { message } => {
            if current.is_some_and(|ready| {
                ready.status == ConditionStatus::Unknown
                    && ready.reason.as_deref() == Some(NODE_LEASE_EXPIRED)
            }) {
                return None;
            }
            (
                Condition {
                    type_: READY.to_owned(),
                    status: ConditionStatus::Unknown,
                    observed_generation: node.metadata.generation,
                    last_transition_time: Some(now),
                    reason: Some(NODE_LEASE_EXPIRED.to_owned()),
                    message: Some(message.clone()),
                },
                NodeEvent {
                    reason: NODE_NOT_READY,
                    type_: EventType::Warning,
                    message: format!(
                        "node {} is unreachable: {message}",
                        node.metadata.name_str()
                    ),
                },
            )
        }
        Reachability::Reachable { .. } => {
            if !expired_by_us {
                return None;
            }
            let message = "the node's lease is renewed again".to_owned();
            (
                Condition {
                    type_: READY.to_owned(),
                    status: ConditionStatus::True,
                    observed_generation: node.metadata.generation,
                    last_transition_time: Some(now),
                    reason: Some(NODE_LEASE_RENEWED.to_owned()),
                    message: Some(message.clone()),
                },
                NodeEvent {
                    reason: NODE_READY,
                    type_: EventType::Normal,
                    message: format!("node {} is reachable: {message}", node.metadata.name_str()),
                },
            )
        }
    };
    let mut updated = node.clone();
    set_condition(
        &mut updated
            .status
            .get_or_insert_with(Default::default)
            .conditions,
        condition,
    );
    Some((updated, event))
}

/// The timeouts of an instance's `unreachableStrategy` (read from its template, with the
/// App defaults applied): `(inactiveAfterSeconds, expungeAfterSeconds)`, or `None` when
/// disabled.
pub fn unreachable_timeouts(template: Option<&AppSpec>) -> Option<(i64, i64)> {
    // One defaulting rule for Apps and for this: `default_app_spec` on a copy that has only
    // what the rule reads (the strategy and residency).
    let mut spec = AppSpec {
        unreachable_strategy: template.and_then(|spec| spec.unreachable_strategy.clone()),
        residency: template.and_then(|spec| spec.residency.clone()),
        ..AppSpec::default()
    };
    pacer_schemas::defaults::default_app_spec(&mut spec);
    match spec.unreachable_strategy? {
        UnreachableStrategy::Disabled => None,
        UnreachableStrategy::Enabled(enabled) => {
            let inactive = enabled.inactive_after_seconds.unwrap_or_default().max(0);
            let expunge = enabled
                .expunge_after_seconds
                .unwrap_or_default()
                .max(inactive);
            Some((inactive, expunge))
        }
    }
}

/// What becomes of an instance bound to an unreachable node at `now`: the instance as it must
/// be stored (`None`: unchanged) and when that next changes (`None`: never, while the node
/// stays unreachable).
///
/// A non-terminal instance turns `Lost` with `unreachableSince` = the first time it was seen
/// lost (kept across rounds); `inactiveAfterSeconds` after that its goal becomes
/// `Decommissioned` (so its owner replaces it, and the returning agent kills it);
/// `expungeAfterSeconds` after that its phase becomes `Gone` (terminal). A `disabled`
/// strategy keeps it `Lost`.
pub fn lost_instance(
    instance: &Instance,
    node_message: &str,
    now: Time,
) -> (Option<Instance>, Option<Time>) {
    let phase = instance.phase();
    if phase.is_terminal() {
        return (None, None);
    }
    let mut updated = instance.clone();
    let node = instance.spec.node_name.as_deref().unwrap_or_default();
    let status = updated.status.get_or_insert_with(Default::default);
    let since = match (phase, status.unreachable_since) {
        (InstancePhase::Lost, Some(since)) => since,
        _ => now,
    };
    if phase != InstancePhase::Lost {
        status.phase = InstancePhase::Lost;
        status.reason = Some(NODE_UNREACHABLE.to_owned());
        status.message = Some(format!("node {node} is unreachable: {node_message}"));
    }
    status.unreachable_since = Some(since);
    let mut next = None;
    if let Some((inactive, expunge)) = unreachable_timeouts(instance.spec.template.as_ref()) {
        let goal = instance.spec.goal.clone().unwrap_or(InstanceGoal::Running);
        let inactive_at = after(since, inactive);
        let expunge_at = after(since, expunge);
        if goal == InstanceGoal::Running {
            if now >= inactive_at {
                updated.spec.goal = Some(InstanceGoal::Decommissioned);
                updated.metadata.generation = Some(instance.metadata.generation.unwrap_or(1) + 1);
                let status = updated.status.get_or_insert_with(Default::default);
                status.reason = Some(UNREACHABLE_INACTIVE.to_owned());
                status.message = Some(format!(
                    "node {node} unreachable since {since} (inactiveAfterSeconds {inactive}): \
                     decommissioned so that a replacement starts"
                ));
            } else {
                next = Some(inactive_at);
            }
        }
        if now >= expunge_at {
            let status = updated.status.get_or_insert_with(Default::default);
            status.phase = InstancePhase::Gone;
            status.finished_at = Some(now);
            status.reason = Some(UNREACHABLE_EXPUNGED.to_owned());
            status.message = Some(format!(
                "node {node} unreachable since {since} (expungeAfterSeconds {expunge}): expunged"
            ));
            next = None;
        } else {
            next = Some(next.map_or(expunge_at, |next: Time| next.min(expunge_at)));
        }
    }
    let changed = updated != *instance;
    (changed.then_some(updated), next)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(seconds: i64) -> Time {
        Time::from_unix_seconds(1_800_000_000 + seconds).unwrap()
    }

    fn node(annotations: serde_json::Value, ready: Option<(&str, &str)>) -> Node {
        let conditions = ready
            .map(|(status, reason)| {
                vec![json!({"type": "Ready", "status": status, "reason": reason})]
            })
            .unwrap_or_default();
        serde_json::from_value(json!({
            "metadata": {"name": "n1", "annotations": annotations, "creationTimestamp": at(0)},
            "status": {"conditions": conditions},
        }))
        .unwrap()
    }

    fn lease(holder: &str, renewed: i64, duration: i32) -> Lease {
        serde_json::from_value(json!({
            "metadata": {"name": "n1", "namespace": "pacer-node-lease"},
            "spec": {"holderIdentity": holder, "renewTime": at(renewed), "leaseDurationSeconds": duration},
        }))
        .unwrap()
    }

    #[test]
    fn reachability_follows_the_lease_and_the_grace_period() {
        let plain = node(json!({}), Some(("True", "AgentReady")));
        let agentless = node(json!({AGENTLESS_ANNOTATION: "true"}), None);
        // (node, lease, observing since, now, expected)
        let table = [
            (
                &plain,
                Some(lease("n1", 100, 10)),
                0,
                109,
                Some(Some(at(110))),
            ),
            (&plain, Some(lease("n1", 100, 10)), 0, 110, None),
            (&plain, Some(lease("", 100, 10)), 0, 101, None),
            (&plain, None, 0, 39, Some(Some(at(40)))),
            (&plain, None, 0, 40, None),
            (&agentless, None, 0, 1000, Some(None)),
            // A controller that started after a long outage gives the agent one lease
            // duration of its own observation before the verdict.
            (
                &plain,
                Some(lease("n1", 100, 10)),
                500,
                500,
                Some(Some(at(510))),
            ),
            (
                &plain,
                Some(lease("n1", 100, 10)),
                500,
                509,
                Some(Some(at(510))),
            ),
            (&plain, Some(lease("n1", 100, 10)), 500, 510, None),
            // Observation started mid-lease: the lease's own end is later and wins.
            (
                &plain,
                Some(lease("n1", 100, 10)),
                95,
                104,
                Some(Some(at(110))),
            ),
            (
                &plain,
                Some(lease("n1", 100, 10)),
                95,
                106,
                Some(Some(at(110))),
            ),
            // A released lease is unreachable at once, however recent the observation.
            (&plain, Some(lease("", 100, 10)), 500, 500, None),
            // The no-lease grace counts from the later of creation and observation.
            (&plain, None, 100, 139, Some(Some(at(140)))),
            (&plain, None, 100, 140, None),
        ];
        for (index, (node, lease, observing, now, expect)) in table.into_iter().enumerate() {
            let got = reachability(node, lease.as_ref(), at(now), at(observing), 40);
            match expect {
                Some(until) if is_agentless(node) => {
                    assert_eq!(got, Reachability::Exempt, "row {index}");
                    assert_eq!(until, None);
                }
                Some(until) => assert_eq!(got, Reachability::Reachable { until }, "row {index}"),
                None => assert!(
                    matches!(got, Reachability::Unreachable { .. }),
                    "row {index}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn ready_turns_unknown_once_and_back_only_from_our_own_verdict() {
        let unreachable = Reachability::Unreachable {
            message: "gone".into(),
        };
        let reachable = Reachability::Reachable { until: None };
        // (Ready before, verdict, expected (status, event reason) or None)
        let table = [
            (
                Some(("True", "AgentReady")),
                &unreachable,
                Some(("Unknown", NODE_NOT_READY)),
            ),
            (None, &unreachable, Some(("Unknown", NODE_NOT_READY))),
            (Some(("Unknown", NODE_LEASE_EXPIRED)), &unreachable, None),
            (
                Some(("Unknown", NODE_LEASE_EXPIRED)),
                &reachable,
                Some(("True", NODE_READY)),
            ),
            (Some(("True", "AgentReady")), &reachable, None),
            (Some(("False", "DiskPressure")), &reachable, None),
            (Some(("True", "AgentReady")), &Reachability::Exempt, None),
        ];
        for (index, (before, verdict, expect)) in table.into_iter().enumerate() {
            let got = node_transition(&node(json!({}), before), verdict, at(5));
            let got = got.map(|(node, event)| {
                let ready = find_condition(&node.status.unwrap().conditions, READY)
                    .unwrap()
                    .clone();
                assert_eq!(ready.last_transition_time, Some(at(5)));
                (ready.status.to_string(), event.reason)
            });
            assert_eq!(
                got,
                expect.map(|(status, reason)| (status.to_owned(), reason)),
                "row {index}"
            );
        }
    }

    fn instance(
        strategy: serde_json::Value,
        phase: &str,
        since: Option<i64>,
        goal: &str,
    ) -> Instance {
        let mut template = json!({"cmd": "sleep 1000"});
        if !strategy.is_null() {
            template["unreachableStrategy"] = strategy;
        }
        serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "default", "generation": 2},
            "spec": {"app": "web", "nodeName": "n1", "goal": goal, "template": template},
            "status": {"phase": phase, "unreachableSince": since.map(at)},
        }))
        .unwrap()
    }

    #[test]
    fn lost_instances_follow_their_unreachable_strategy() {
        let short = json!({"inactiveAfterSeconds": 10, "expungeAfterSeconds": 30});
        // (strategy, phase, unreachableSince, goal, now) →
        // (phase, goal, unreachableSince, next deadline) or None when nothing changes
        type Row = (
            serde_json::Value,
            &'static str,
            Option<i64>,
            &'static str,
            i64,
            Option<(InstancePhase, InstanceGoal, i64, Option<i64>)>,
        );
        let table: Vec<Row> = vec![
            // First seen lost: Lost now; next the inactive deadline.
            (
                short.clone(),
                "Running",
                None,
                "Running",
                100,
                Some((InstancePhase::Lost, InstanceGoal::Running, 100, Some(110))),
            ),
            // Still lost before inactiveAfter: nothing to write.
            (short.clone(), "Lost", Some(100), "Running", 105, None),
            // inactiveAfter reached: decommissioned; next the expunge deadline.
            (
                short.clone(),
                "Lost",
                Some(100),
                "Running",
                110,
                Some((
                    InstancePhase::Lost,
                    InstanceGoal::Decommissioned,
                    100,
                    Some(130),
                )),
            ),
            // expungeAfter reached: Gone, no deadline.
            (
                short.clone(),
                "Lost",
                Some(100),
                "Decommissioned",
                130,
                Some((InstancePhase::Gone, InstanceGoal::Decommissioned, 100, None)),
            ),
            // Both at once (the controller was away): decommissioned and Gone in one write.
            (
                short.clone(),
                "Lost",
                Some(100),
                "Running",
                500,
                Some((InstancePhase::Gone, InstanceGoal::Decommissioned, 100, None)),
            ),
            // Marathon's {0, 0}: straight to Gone.
            (
                json!({"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0}),
                "Starting",
                None,
                "Running",
                100,
                Some((InstancePhase::Gone, InstanceGoal::Decommissioned, 100, None)),
            ),
            // Disabled: Lost forever.
            (
                json!("disabled"),
                "Running",
                None,
                "Running",
                100,
                Some((InstancePhase::Lost, InstanceGoal::Running, 100, None)),
            ),
            (
                json!("disabled"),
                "Lost",
                Some(100),
                "Running",
                100_000,
                None,
            ),
            // No strategy in the template: the defaults (0 s, 300 s): decommissioned at once.
            (
                serde_json::Value::Null,
                "Running",
                None,
                "Running",
                100,
                Some((
                    InstancePhase::Lost,
                    InstanceGoal::Decommissioned,
                    100,
                    Some(400),
                )),
            ),
            // Already being killed: Gone at expungeAfter, no decommission step.
            (
                short.clone(),
                "Killing",
                None,
                "Decommissioned",
                100,
                Some((
                    InstancePhase::Lost,
                    InstanceGoal::Decommissioned,
                    100,
                    Some(130),
                )),
            ),
            // Terminal: left alone.
            (short.clone(), "Finished", None, "Running", 100, None),
        ];
        for (index, (strategy, phase, since, goal, now, expect)) in table.into_iter().enumerate() {
            let before = instance(strategy, phase, since, goal);
            let (updated, next) = lost_instance(&before, "lease expired", at(now));
            match expect {
                None => assert_eq!(updated, None, "row {index}"),
                Some((phase, goal, since, deadline)) => {
                    let updated = updated.unwrap_or_else(|| panic!("row {index}: a write"));
                    let status = updated.status.as_ref().unwrap();
                    assert_eq!(status.phase, phase, "row {index}");
                    assert_eq!(updated.spec.goal, Some(goal), "row {index}");
                    assert_eq!(status.unreachable_since, Some(at(since)), "row {index}");
                    assert_eq!(next, deadline.map(at), "row {index}");
                    let spec_changed = updated.spec != before.spec;
                    assert_eq!(
                        updated.metadata.generation,
                        Some(if spec_changed { 3 } else { 2 }),
                        "row {index}: generation follows spec"
                    );
                }
            }
        }
    }
}

//! The placement algorithm: for each pending instance in order, filter the candidates and
//! score the ones that fit.
//!
//! Cost: before the loop, each distinct [`Requirements`] is *compiled* once — its
//! count-independent checks (ready, schedulable, role, `LIKE`, `UNLIKE`, `IS`, `CLUSTER:x`,
//! field present) are evaluated on every candidate, leaving the list of eligible candidates —
//! and each App's instances are tallied once per constraint field. Each instance then costs
//! one pass over its eligible candidates with O(1) checks (resources, ports, and counts looked
//! up by interned field value), and its placement updates the tallies incrementally. So a
//! batch is O(instances × candidates), never O(instances²).
//!
//! Within one batch resources only shrink and an App's counts only change when an instance of
//! that App is placed, so once an instance of an App version finds no candidate, the rest of
//! that version's instances in the batch cannot either: they get the same reason without a
//! second pass.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use pacer_schemas::constraint::ConstraintRule;

use super::constraints::{Field, FieldIndex, FieldTally, StaticRule, counts_matter, describe};
use super::plan::{Binding, FailureSummary, PlacementPlan, Reason, Unplaced, UnplacedReason};
use super::request::{PlacementRequest, Requirements, Strategy};
use super::resources::{PortShortage, ResourceKind, Scalars};
use super::view::{Candidate, CandidateSource, ClusterView, ObjectKey, node_index};

/// Places a batch of pending instances on the view's candidates.
///
/// Every binding honours resources (cpus, mem, disk and gpus fit in what is free; host ports
/// are free ports of the node, exactly the required ones where the App requires ports, never
/// handed out twice), the node being ready, schedulable and of an accepted role, and every
/// constraint of the App (see [`constraints`](super::constraints) for the semantics), counting
/// the App's bound instances and those placed earlier in the batch. Among the candidates that
/// fit, `request.strategy` chooses; ties go to the first candidate in node-name order, so the
/// result is deterministic.
///
/// The view is updated with the placements (resources consumed, counts recorded), so it can
/// serve a further batch.
pub fn place(request: &PlacementRequest, cluster: &mut ClusterView) -> PlacementPlan {
    let mut plan = PlacementPlan {
        bindings: Vec::with_capacity(request.pending.len()),
        unplaced: request.invalid.clone(),
    };
    if request.pending.is_empty() {
        return plan;
    }
    let mut batch = Batch::new(request, cluster);
    let order = std::mem::take(&mut batch.order);
    for (pending, (app, compiled)) in request.pending.iter().zip(order) {
        match batch.place_one(app, compiled, cluster) {
            Ok((candidate, host_ports)) => {
                let chosen = &cluster.candidates[candidate];
                let node = &cluster.nodes[chosen.node];
                plan.bindings.push(Binding {
                    instance: pending.instance.clone(),
                    app: pending.app.clone(),
                    node_name: node.name.clone(),
                    hostname: node.hostname.clone(),
                    host_ports,
                    role: chosen.role.clone(),
                    offer: match &chosen.source {
                        CandidateSource::Node => None,
                        CandidateSource::Offer(name) => Some(name.clone()),
                    },
                });
            }
            Err(reason) => plan.unplaced.push(Unplaced {
                instance: pending.instance.clone(),
                app: pending.app.clone(),
                reason,
            }),
        }
    }
    batch.write_back(cluster);
    plan
}

/// One constraint of compiled requirements.
#[derive(Debug)]
struct Rule {
    /// Index into `Batch::fields`.
    field: usize,
    rule: ConstraintRule,
    check: StaticRule,
    /// `field:OPERATOR[:value]`, for reasons.
    label: String,
}

/// Requirements with their count-independent verdicts precomputed.
#[derive(Debug)]
struct Compiled {
    requirements: Arc<Requirements>,
    rules: Vec<Rule>,
    /// Indexes into `rules` of the count-dependent rules.
    dynamic: Vec<usize>,
    /// Candidates passing every count-independent check.
    eligible: Vec<usize>,
    /// Why the other candidates fail, counted.
    static_reasons: Vec<(Reason, usize)>,
}

/// One App's instance counts during the batch.
#[derive(Debug)]
struct AppTally {
    key: ObjectKey,
    /// Instances per node index.
    per_node: Vec<u32>,
    /// Counts by value, per field (index into `Batch::fields`) the App's constraints read.
    fields: Vec<(usize, FieldTally)>,
    /// Node indexes placed on in this batch.
    placed: Vec<u32>,
}

impl AppTally {
    fn field(&self, field: usize) -> Option<&FieldTally> {
        self.fields
            .iter()
            .find(|(id, _)| *id == field)
            .map(|(_, tally)| tally)
    }

    fn field_mut(&mut self, field: usize) -> Option<&mut FieldTally> {
        self.fields
            .iter_mut()
            .find(|(id, _)| *id == field)
            .map(|(_, tally)| tally)
    }
}

struct Batch {
    strategy: Strategy,
    fields: Vec<FieldIndex>,
    field_ids: HashMap<Field, usize>,
    compiled: Vec<Compiled>,
    apps: Vec<AppTally>,
    /// (app, compiled) of each pending instance.
    order: Vec<(usize, usize)>,
    /// Reasons of (app, compiled) pairs that found no candidate.
    failed: HashMap<(usize, usize), UnplacedReason>,
}

impl Batch {
    fn new(request: &PlacementRequest, cluster: &ClusterView) -> Self {
        let mut batch = Batch {
            strategy: request.strategy,
            fields: Vec::new(),
            field_ids: HashMap::new(),
            compiled: Vec::new(),
            apps: Vec::new(),
            order: Vec::with_capacity(request.pending.len()),
            failed: HashMap::new(),
        };
        let mut compiled_ids: HashMap<*const Requirements, usize> = HashMap::new();
        let mut app_ids: HashMap<&ObjectKey, usize> = HashMap::new();
        let mut pairs: HashSet<(usize, usize)> = HashSet::new();
        for pending in &request.pending {
            let compiled = match compiled_ids.get(&Arc::as_ptr(&pending.requirements)) {
                Some(&id) => id,
                None => {
                    let id = batch.compile(&pending.requirements, cluster);
                    compiled_ids.insert(Arc::as_ptr(&pending.requirements), id);
                    id
                }
            };
            let app = *app_ids.entry(&pending.app).or_insert_with(|| {
                batch.apps.push(AppTally {
                    key: pending.app.clone(),
                    per_node: dense_counts(cluster, &pending.app),
                    fields: Vec::new(),
                    placed: Vec::new(),
                });
                batch.apps.len() - 1
            });
            if pairs.insert((app, compiled)) {
                batch.link(app, compiled, cluster);
            }
            batch.order.push((app, compiled));
        }
        batch
    }

    /// The index of `field`'s value table, built on first use.
    fn field_id(&mut self, field: Field, cluster: &ClusterView) -> usize {
        if let Some(&id) = self.field_ids.get(&field) {
            return id;
        }
        let index = FieldIndex::build(cluster.nodes.len(), |node| {
            cluster.nodes[node].value(&field)
        });
        self.fields.push(index);
        self.field_ids.insert(field, self.fields.len() - 1);
        self.fields.len() - 1
    }

    /// Precomputes the count-independent verdicts of `requirements` on every candidate.
    fn compile(&mut self, requirements: &Arc<Requirements>, cluster: &ClusterView) -> usize {
        let rules: Vec<Rule> = requirements
            .constraints
            .iter()
            .map(|constraint| Rule {
                field: self.field_id(Field::parse(&constraint.field), cluster),
                rule: constraint.rule.clone(),
                check: StaticRule::new(&constraint.rule),
                label: describe(constraint),
            })
            .collect();
        let dynamic = (0..rules.len())
            .filter(|&index| counts_matter(&rules[index].rule))
            .collect();
        let mut eligible = Vec::with_capacity(cluster.candidates.len());
        let mut reasons: HashMap<Reason, usize> = HashMap::new();
        for (index, candidate) in cluster.candidates.iter().enumerate() {
            match self.static_failure(&rules, requirements, candidate, cluster) {
                None => eligible.push(index),
                Some(reason) => *reasons.entry(reason).or_default() += 1,
            }
        }
        self.compiled.push(Compiled {
            requirements: Arc::clone(requirements),
            rules,
            dynamic,
            eligible,
            static_reasons: reasons.into_iter().collect(),
        });
        self.compiled.len() - 1
    }

    fn static_failure(
        &self,
        rules: &[Rule],
        requirements: &Requirements,
        candidate: &Candidate,
        cluster: &ClusterView,
    ) -> Option<Reason> {
        let node = &cluster.nodes[candidate.node];
        if !node.ready {
            return Some(Reason::NotReady);
        }
        if node.unschedulable {
            return Some(Reason::Unschedulable);
        }
        if !requirements.roles.contains(&candidate.role) {
            return Some(Reason::Role);
        }
        rules.iter().find_map(|rule| {
            let index = &self.fields[rule.field];
            let value = index.per_node[candidate.node].map(|id| index.values[id as usize].as_str());
            (!rule.check.accepts(value)).then(|| Reason::Constraint(rule.label.clone()))
        })
    }

    /// Prepares the App's tallies for the fields `compiled` reads.
    fn link(&mut self, app: usize, compiled: usize, cluster: &ClusterView) {
        let compiled = &self.compiled[compiled];
        let tally = &mut self.apps[app];
        for &rule_index in &compiled.dynamic {
            let rule = &compiled.rules[rule_index];
            let index = &self.fields[rule.field];
            if tally.field(rule.field).is_none() {
                let empty = HashMap::new();
                let per_node = cluster.apps.get(&tally.key).unwrap_or(&empty);
                tally
                    .fields
                    .push((rule.field, FieldTally::new(index, per_node)));
            }
            if let ConstraintRule::GroupBy(None) = rule.rule
                && let Some(field) = tally.field_mut(rule.field)
            {
                if cluster.is_offer_view() {
                    // Offers come and go (one is consumed, the next not made yet): the
                    // values are those of every node that could take the instances, offered
                    // now or not, so that a value briefly without an offer is not forgotten
                    // and the instances piled on the others.
                    let fields = &self.fields;
                    field.set_known(
                        cluster
                            .nodes
                            .iter()
                            .enumerate()
                            .filter(|(node, view)| {
                                view.ready
                                    && !view.unschedulable
                                    && compiled.rules.iter().all(|rule| {
                                        let index = &fields[rule.field];
                                        rule.check.accepts(
                                            index.per_node[*node]
                                                .map(|id| index.values[id as usize].as_str()),
                                        )
                                    })
                            })
                            .filter_map(|(node, _)| index.per_node[node]),
                    );
                } else {
                    field.set_known(compiled.eligible.iter().filter_map(|&candidate| {
                        index.per_node[cluster.candidates[candidate].node]
                    }));
                }
            }
        }
    }

    /// Chooses a candidate for one instance and takes its resources, or explains why none fits.
    fn place_one(
        &mut self,
        app: usize,
        compiled: usize,
        cluster: &mut ClusterView,
    ) -> Result<(usize, Vec<i32>), UnplacedReason> {
        if let Some(reason) = self.failed.get(&(app, compiled)) {
            return Err(reason.clone());
        }
        let Some(chosen) = self.choose(app, compiled, cluster) else {
            let reason = UnplacedReason::NoFit(self.explain(app, compiled, cluster));
            self.failed.insert((app, compiled), reason.clone());
            return Err(reason);
        };
        let resources = &self.compiled[compiled].requirements.resources;
        let candidate = &mut cluster.candidates[chosen];
        let Some(ports) = candidate.ports.allocate(&resources.ports) else {
            // `choose` checked the ports; unreachable, but never bind without them.
            return Err(UnplacedReason::Invalid(
                "internal error: chosen ports vanished".to_owned(),
            ));
        };
        candidate.free = candidate.free.minus(&resources.scalars);
        let node = candidate.node;
        let allocated = &mut cluster.nodes[node].allocated;
        *allocated = allocated.plus(&resources.scalars);
        let tally = &mut self.apps[app];
        tally.per_node[node] += 1;
        tally.placed.push(node_index(node));
        for (field, counts) in &mut tally.fields {
            if let Some(value) = self.fields[*field].per_node[node] {
                counts.record(value);
            }
        }
        let ports = ports
            .into_iter()
            .map(|port| i32::try_from(port).unwrap_or(i32::MAX))
            .collect();
        Ok((chosen, ports))
    }

    /// The best eligible candidate that fits, by the strategy; ties to the earliest.
    fn choose(&self, app: usize, compiled: usize, cluster: &ClusterView) -> Option<usize> {
        let compiled = &self.compiled[compiled];
        let tally = &self.apps[app];
        let resources = &compiled.requirements.resources;
        let rules = self.dynamic_rules(compiled, tally)?;
        let mut best: Option<((u64, u64), usize)> = None;
        for &index in &compiled.eligible {
            let candidate = &cluster.candidates[index];
            if !candidate.offered || !resources.scalars.fits_in(&candidate.free) {
                continue;
            }
            let node = candidate.node;
            let counts_ok = rules.iter().all(|(rule, field, counts)| {
                field.per_node[node].is_some_and(|value| counts.accepts(rule, value))
            });
            if !counts_ok || candidate.ports.check(&resources.ports).is_err() {
                continue;
            }
            let key = self.score(tally.per_node[node], candidate, &resources.scalars);
            if best.is_none_or(|(best_key, _)| key < best_key) {
                best = Some((key, index));
            }
        }
        best.map(|(_, index)| index)
    }

    /// The count-dependent rules with their field's values and the App's counts.
    fn dynamic_rules<'a>(
        &'a self,
        compiled: &'a Compiled,
        tally: &'a AppTally,
    ) -> Option<Vec<(&'a ConstraintRule, &'a FieldIndex, &'a FieldTally)>> {
        compiled
            .dynamic
            .iter()
            .map(|&index| {
                let rule = &compiled.rules[index];
                Some((
                    &rule.rule,
                    &self.fields[rule.field],
                    tally.field(rule.field)?,
                ))
            })
            .collect()
    }

    /// Sort key of a candidate (lower is better).
    fn score(&self, app_on_node: u32, candidate: &Candidate, request: &Scalars) -> (u64, u64) {
        let after = candidate.free.minus(request);
        let free =
            share(after.cpus, candidate.capacity.cpus) + share(after.mem, candidate.capacity.mem);
        match self.strategy {
            Strategy::Spread => (u64::from(app_on_node), u64::MAX - free),
            Strategy::Pack => (free, 0),
        }
    }

    /// Why no candidate takes an instance: the first failing check of each candidate.
    fn explain(&self, app: usize, compiled: usize, cluster: &ClusterView) -> FailureSummary {
        let compiled = &self.compiled[compiled];
        let tally = &self.apps[app];
        let resources = &compiled.requirements.resources;
        let mut reasons: HashMap<Reason, usize> = compiled.static_reasons.iter().cloned().collect();
        for &index in &compiled.eligible {
            let candidate = &cluster.candidates[index];
            let node = candidate.node;
            let constraint = compiled.dynamic.iter().find_map(|&rule_index| {
                let rule = &compiled.rules[rule_index];
                let accepted = self.fields[rule.field].per_node[node].is_some_and(|value| {
                    tally
                        .field(rule.field)
                        .is_some_and(|counts| counts.accepts(&rule.rule, value))
                });
                (!accepted).then(|| Reason::Constraint(rule.label.clone()))
            });
            let reason = constraint
                .or_else(|| {
                    resources
                        .scalars
                        .shortage(&candidate.free)
                        .map(Reason::Insufficient)
                })
                .or_else(|| match candidate.ports.check(&resources.ports) {
                    Ok(()) => None,
                    Err(PortShortage::TooFew) => Some(Reason::Insufficient(ResourceKind::Ports)),
                    Err(PortShortage::Taken) => Some(Reason::PortsTaken),
                })
                .or_else(|| (!candidate.offered).then_some(Reason::NotOffered));
            if let Some(reason) = reason {
                *reasons.entry(reason).or_default() += 1;
            }
        }
        FailureSummary::new(
            cluster.candidates.len(),
            cluster.noun,
            reasons.into_iter().collect(),
        )
    }

    /// Records this batch's placements in the view's per-App counts.
    fn write_back(self, cluster: &mut ClusterView) {
        for tally in self.apps {
            if tally.placed.is_empty() {
                continue;
            }
            let counts = cluster.apps.entry(tally.key).or_default();
            for node in tally.placed {
                *counts.entry(node).or_default() += 1;
            }
        }
    }
}

/// The App's instance count on every node, densely by node index.
fn dense_counts(cluster: &ClusterView, app: &ObjectKey) -> Vec<u32> {
    let mut counts = vec![0; cluster.nodes.len()];
    for (&node, &count) in cluster.apps.get(app).into_iter().flatten() {
        if let Some(slot) = counts.get_mut(node as usize) {
            *slot = count;
        }
    }
    counts
}

/// `free / capacity` in millionths (0 when the node has none of the resource).
fn share(free: i64, capacity: i64) -> u64 {
    if capacity <= 0 || free <= 0 {
        return 0;
    }
    let millionths = i128::from(free.min(capacity)) * 1_000_000 / i128::from(capacity);
    u64::try_from(millionths).unwrap_or(0)
}

//! Dominant Resource Fairness (Ghodsi et al., NSDI 2011), as pure logic: the offer broker
//! decides with it which role gets the next offer, and progressive filling shows what the
//! allocation converges to.
//!
//! A role's *dominant share* is the largest fraction of the cluster's total of any one resource
//! that the role holds (cpus, mem, disk, gpus); divided by the role's *weight* it is the
//! weighted share that DRF equalises: the next resources go to the role with the lowest one
//! (ties by name, so the order is deterministic). A role may have a *quota* (it is never given
//! more than that, per resource) and a *reservation* (an amount set aside for it: other roles
//! are not given the part of it the role does not use yet). Amounts are the exact integer
//! [`Scalars`] placement counts with, so shares never drift.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::placement::Scalars;

/// One role as the allocator weighs it.
#[derive(Clone, Debug, PartialEq)]
pub struct RoleConfig {
    /// The role's name.
    pub name: String,
    /// Relative weight (> 0; anything else counts as 1): a role of weight 2 converges to twice
    /// the dominant share of a role of weight 1.
    pub weight: f64,
    /// Most the role may hold, per resource; `None`: no limit.
    pub quota: Option<Scalars>,
    /// Set aside for the role: others are not allocated its unused part.
    pub reservation: Scalars,
}

impl RoleConfig {
    /// A role of weight 1, without quota or reservation.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            weight: 1.0,
            quota: None,
            reservation: Scalars::default(),
        }
    }

    /// The same role with `weight`.
    #[must_use]
    pub fn weight(mut self, weight: f64) -> Self {
        self.weight = weight;
        self
    }

    /// The same role with `quota`.
    #[must_use]
    pub fn quota(mut self, quota: Scalars) -> Self {
        self.quota = Some(quota);
        self
    }

    /// The same role with `reservation`.
    #[must_use]
    pub fn reservation(mut self, reservation: Scalars) -> Self {
        self.reservation = reservation;
        self
    }

    fn effective_weight(&self) -> f64 {
        if self.weight.is_finite() && self.weight > 0.0 {
            self.weight
        } else {
            1.0
        }
    }
}

#[derive(Clone, Debug)]
struct RoleState {
    config: RoleConfig,
    allocated: Scalars,
}

/// The cluster's total and what each role holds; answers DRF's questions about them.
#[derive(Clone, Debug, Default)]
pub struct Allocator {
    total: Scalars,
    roles: BTreeMap<String, RoleState>,
}

/// `part / whole` per resource, the largest of them; resources the cluster has none of do not
/// count.
pub fn dominant_share(part: &Scalars, whole: &Scalars) -> f64 {
    [
        (part.cpus, whole.cpus),
        (part.mem, whole.mem),
        (part.disk, whole.disk),
        (part.gpus, whole.gpus),
    ]
    .into_iter()
    .filter(|&(_, whole)| whole > 0)
    // Amounts are far below 2^52 thousandths, so the conversion is exact.
    .map(|(part, whole)| part.max(0) as f64 / whole as f64)
    .fold(0.0, f64::max)
}

/// Component-wise minimum.
fn min(a: &Scalars, b: &Scalars) -> Scalars {
    Scalars {
        cpus: a.cpus.min(b.cpus),
        mem: a.mem.min(b.mem),
        disk: a.disk.min(b.disk),
        gpus: a.gpus.min(b.gpus),
    }
}

/// Component-wise `max(0, ·)`.
fn non_negative(a: &Scalars) -> Scalars {
    Scalars {
        cpus: a.cpus.max(0),
        mem: a.mem.max(0),
        disk: a.disk.max(0),
        gpus: a.gpus.max(0),
    }
}

impl Allocator {
    /// An allocator over a cluster of `total` resources, with no roles yet.
    pub fn new(total: Scalars) -> Self {
        Self {
            total,
            roles: BTreeMap::new(),
        }
    }

    /// The cluster's total.
    pub fn total(&self) -> Scalars {
        self.total
    }

    /// Adds (or reconfigures) a role; what it holds is kept.
    pub fn add_role(&mut self, config: RoleConfig) {
        match self.roles.get_mut(&config.name) {
            Some(state) => state.config = config,
            None => {
                self.roles.insert(
                    config.name.clone(),
                    RoleState {
                        config,
                        allocated: Scalars::default(),
                    },
                );
            }
        }
    }

    /// Records that `role` holds `amount` more (a role not added yet is added with weight 1).
    pub fn allocate(&mut self, role: &str, amount: &Scalars) {
        let state = self
            .roles
            .entry(role.to_owned())
            .or_insert_with(|| RoleState {
                config: RoleConfig::new(role),
                allocated: Scalars::default(),
            });
        state.allocated = state.allocated.plus(amount);
    }

    /// What `role` holds.
    pub fn allocated(&self, role: &str) -> Scalars {
        self.roles
            .get(role)
            .map(|state| state.allocated)
            .unwrap_or_default()
    }

    /// The role's dominant share (unweighted), 0 for an unknown role.
    pub fn dominant_share(&self, role: &str) -> f64 {
        dominant_share(&self.allocated(role), &self.total)
    }

    /// The role's dominant share divided by its weight: what DRF equalises.
    pub fn weighted_share(&self, role: &str) -> f64 {
        self.roles.get(role).map_or(0.0, |state| {
            dominant_share(&state.allocated, &self.total) / state.config.effective_weight()
        })
    }

    /// The roles, lowest weighted share first (ties by name): the order DRF serves them in.
    pub fn order(&self) -> Vec<&str> {
        let mut roles: Vec<(&str, f64)> = self
            .roles
            .keys()
            .map(|name| (name.as_str(), self.weighted_share(name)))
            .collect();
        roles.sort_by(|a, b| {
            a.1.partial_cmp(&b.1)
                .unwrap_or(Ordering::Equal)
                .then_with(|| a.0.cmp(b.0))
        });
        roles.into_iter().map(|(name, _)| name).collect()
    }

    /// The most `role` may still be given: the cluster's unallocated resources minus the unused
    /// reservations of the other roles, and at most what its quota leaves. May be negative in
    /// a resource when the role is over its quota or the cluster overcommitted.
    pub fn headroom(&self, role: &str) -> Scalars {
        let allocated_all = self
            .roles
            .values()
            .fold(Scalars::default(), |sum, state| sum.plus(&state.allocated));
        let reserved_for_others = self
            .roles
            .iter()
            .filter(|(name, _)| name.as_str() != role)
            .fold(Scalars::default(), |sum, (_, state)| {
                sum.plus(&non_negative(
                    &state.config.reservation.minus(&state.allocated),
                ))
            });
        let free = self.total.minus(&allocated_all).minus(&reserved_for_others);
        match self.roles.get(role).and_then(|state| {
            state
                .config
                .quota
                .map(|quota| quota.minus(&state.allocated))
        }) {
            Some(left) => min(&free, &left),
            None => free,
        }
    }

    /// Whether `role` may be given `amount` now (see [`Allocator::headroom`]).
    pub fn may_allocate(&self, role: &str, amount: &Scalars) -> bool {
        amount.fits_in(&self.headroom(role))
    }

    /// DRF's progressive filling: while some role can still launch a task, the role with the
    /// lowest weighted share that has demand left launches one (its task fits its
    /// [`headroom`](Allocator::headroom)); a role whose next task does not fit is done. Returns
    /// the tasks each role of `demands` launched; the allocator then holds them.
    pub fn progressive_filling(&mut self, demands: &[Demand]) -> BTreeMap<String, u32> {
        let mut launched: BTreeMap<String, u32> = demands
            .iter()
            .map(|demand| (demand.role.clone(), 0))
            .collect();
        for demand in demands {
            if !self.roles.contains_key(&demand.role) {
                self.add_role(RoleConfig::new(demand.role.clone()));
            }
        }
        let mut done = vec![false; demands.len()];
        loop {
            let next = demands
                .iter()
                .enumerate()
                .filter(|(index, demand)| {
                    !done[*index]
                        && demand.max_tasks.is_none_or(|max| {
                            launched.get(&demand.role).copied().unwrap_or(0) < max
                        })
                })
                .min_by(|(_, a), (_, b)| {
                    self.weighted_share(&a.role)
                        .partial_cmp(&self.weighted_share(&b.role))
                        .unwrap_or(Ordering::Equal)
                        .then_with(|| a.role.cmp(&b.role))
                });
            let Some((index, demand)) = next else { break };
            if demand.task == Scalars::default() || !self.may_allocate(&demand.role, &demand.task) {
                done[index] = true;
                continue;
            }
            self.allocate(&demand.role, &demand.task);
            *launched.entry(demand.role.clone()).or_default() += 1;
        }
        launched
    }
}

/// What one role asks for in [`Allocator::progressive_filling`]: tasks of one size.
#[derive(Clone, Debug, PartialEq)]
pub struct Demand {
    /// The role.
    pub role: String,
    /// What one task uses.
    pub task: Scalars,
    /// Most tasks it wants; `None`: as many as it can get.
    pub max_tasks: Option<u32>,
}

impl Demand {
    /// Unbounded demand for tasks of `task`.
    pub fn new(role: impl Into<String>, task: Scalars) -> Self {
        Self {
            role: role.into(),
            task,
            max_tasks: None,
        }
    }

    /// The same demand, for at most `max` tasks.
    #[must_use]
    pub fn at_most(mut self, max: u32) -> Self {
        self.max_tasks = Some(max);
        self
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `cpus` CPUs and `gb` GB of memory (mem in MiB: 1 GB = 1024 MiB).
    fn cpu_gb(cpus: f64, gb: f64) -> Scalars {
        Scalars::new(cpus, gb * 1024.0, 0.0, 0)
    }

    /// The DRF paper's worked example (section 4): 9 CPUs and 18 GB; user A runs tasks of
    /// ⟨1 CPU, 4 GB⟩, user B of ⟨3 CPUs, 1 GB⟩. Progressive filling gives A three tasks
    /// ⟨3 CPUs, 12 GB⟩ and B two ⟨6 CPUs, 2 GB⟩: both dominant shares are 2/3.
    #[test]
    fn paper_example_gives_a_three_tasks_and_b_two() {
        let mut allocator = Allocator::new(cpu_gb(9.0, 18.0));
        let launched = allocator.progressive_filling(&[
            Demand::new("A", cpu_gb(1.0, 4.0)),
            Demand::new("B", cpu_gb(3.0, 1.0)),
        ]);
        assert_eq!(launched["A"], 3);
        assert_eq!(launched["B"], 2);
        assert_eq!(allocator.allocated("A"), cpu_gb(3.0, 12.0));
        assert_eq!(allocator.allocated("B"), cpu_gb(6.0, 2.0));
        assert!((allocator.dominant_share("A") - 2.0 / 3.0).abs() < 1e-12);
        assert!((allocator.dominant_share("B") - 2.0 / 3.0).abs() < 1e-12);
        // A's dominant resource is memory, B's CPU.
        assert_eq!(allocator.headroom("A"), cpu_gb(0.0, 4.0));
    }

    /// The same example, B first by name: the outcome does not depend on who starts.
    #[test]
    fn paper_example_outcome_does_not_depend_on_names() {
        let mut allocator = Allocator::new(cpu_gb(9.0, 18.0));
        let launched = allocator.progressive_filling(&[
            Demand::new("z-memory-heavy", cpu_gb(1.0, 4.0)),
            Demand::new("a-cpu-heavy", cpu_gb(3.0, 1.0)),
        ]);
        assert_eq!(launched["z-memory-heavy"], 3);
        assert_eq!(launched["a-cpu-heavy"], 2);
    }

    #[test]
    fn weights_scale_dominant_shares() {
        // Same tasks, weight 2 against 1: 6 and 3 tasks of 9.
        let mut allocator = Allocator::new(cpu_gb(9.0, 9.0));
        allocator.add_role(RoleConfig::new("batch").weight(2.0));
        allocator.add_role(RoleConfig::new("web"));
        let launched = allocator.progressive_filling(&[
            Demand::new("batch", cpu_gb(1.0, 1.0)),
            Demand::new("web", cpu_gb(1.0, 1.0)),
        ]);
        assert_eq!((launched["batch"], launched["web"]), (6, 3));
        assert!(
            (allocator.weighted_share("batch") - allocator.weighted_share("web")).abs() < 1e-12
        );
        // A non-positive weight counts as 1.
        let mut allocator = Allocator::new(cpu_gb(8.0, 8.0));
        allocator.add_role(RoleConfig::new("a").weight(0.0));
        allocator.add_role(RoleConfig::new("b").weight(f64::NAN));
        let launched = allocator.progressive_filling(&[
            Demand::new("a", cpu_gb(1.0, 1.0)),
            Demand::new("b", cpu_gb(1.0, 1.0)),
        ]);
        assert_eq!((launched["a"], launched["b"]), (4, 4));
    }

    #[test]
    fn quotas_cap_a_role_and_leave_the_rest_to_others() {
        let mut allocator = Allocator::new(cpu_gb(10.0, 10.0));
        allocator.add_role(RoleConfig::new("capped").quota(cpu_gb(2.0, 100.0)));
        let launched = allocator.progressive_filling(&[
            Demand::new("capped", cpu_gb(1.0, 1.0)),
            Demand::new("other", cpu_gb(1.0, 1.0)),
        ]);
        assert_eq!((launched["capped"], launched["other"]), (2, 8));
        assert!(!allocator.may_allocate("capped", &cpu_gb(0.001, 0.0)));
        assert_eq!(allocator.headroom("capped").cpus, 0);
    }

    #[test]
    fn reservations_are_kept_from_other_roles() {
        // `db` has 4 CPUs reserved but wants one task: the others never get its 3 unused CPUs.
        let mut allocator = Allocator::new(cpu_gb(10.0, 100.0));
        allocator.add_role(RoleConfig::new("db").reservation(cpu_gb(4.0, 0.0)));
        let launched = allocator.progressive_filling(&[
            Demand::new("db", cpu_gb(1.0, 1.0)).at_most(1),
            Demand::new("web", cpu_gb(1.0, 1.0)),
        ]);
        assert_eq!((launched["db"], launched["web"]), (1, 6));
        // …but `db` itself may still take them.
        assert_eq!(allocator.headroom("db").cpus, 3000);
        assert_eq!(allocator.headroom("web").cpus, 0);
    }

    #[test]
    fn order_serves_the_lowest_weighted_share_first() {
        let mut allocator = Allocator::new(cpu_gb(10.0, 10.0));
        allocator.add_role(RoleConfig::new("a"));
        allocator.add_role(RoleConfig::new("b").weight(4.0));
        allocator.add_role(RoleConfig::new("c"));
        allocator.allocate("a", &cpu_gb(2.0, 1.0)); // 0.2
        allocator.allocate("b", &cpu_gb(1.0, 4.0)); // 0.4 / 4 = 0.1
        assert_eq!(allocator.order(), vec!["c", "b", "a"]);
        assert_eq!(dominant_share(&cpu_gb(1.0, 1.0), &Scalars::default()), 0.0);
    }
}

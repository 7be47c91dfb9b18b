//! What to place: pending instances with their App's requirements, and the scoring strategy.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use pacer_schemas::constraint::{ConstraintError, ParsedConstraint};
use pacer_schemas::{AppSpec, Instance};

use super::plan::{Unplaced, UnplacedReason};
use super::resources::ResourceRequest;
use super::view::{ObjectKey, UNRESERVED_ROLE, is_pending};

/// How to choose among the nodes that fit. Marathon users "spread or pack instances"; the
/// choice is per batch today and can become per App later.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Prefer the node with the fewest instances of the same App, then the one with the most
    /// free cpus and mem (as a share of its size, averaged over the two), then the first by
    /// name. Spreads each App across nodes and balances load.
    #[default]
    Spread,
    /// Prefer the node with the least free cpus and mem (as a share of its size, after the
    /// placement), then the first by name. Fills nodes one after another and keeps whole
    /// nodes free for large instances.
    Pack,
}

/// What every instance of one App version needs: resources, host ports, constraints, roles.
#[derive(Clone, Debug)]
pub struct Requirements {
    /// Scalars and host ports per instance.
    pub resources: ResourceRequest,
    /// Constraints, in the App's order (reasons name the first one a node fails).
    pub constraints: Vec<ParsedConstraint>,
    /// Roles whose resources the instances may use.
    pub roles: Vec<String>,
}

/// A constraint of an App that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidConstraint {
    /// Its index in `constraints`.
    pub index: usize,
    /// What is wrong.
    pub error: ConstraintError,
}

impl fmt::Display for InvalidConstraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid constraints[{}]: {}", self.index, self.error)
    }
}

impl std::error::Error for InvalidConstraint {}

impl Requirements {
    /// The requirements of an App spec. Roles: `acceptedResourceRoles` when given, else
    /// unreserved resources plus those of the App's `role`.
    pub fn from_spec(spec: &AppSpec) -> Result<Self, InvalidConstraint> {
        let constraints = spec
            .constraints
            .iter()
            .flatten()
            .enumerate()
            .map(|(index, constraint)| {
                constraint
                    .parse()
                    .map_err(|error| InvalidConstraint { index, error })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let roles = match &spec.accepted_resource_roles {
            Some(roles) if !roles.is_empty() => roles.clone(),
            _ => {
                let mut roles = vec![UNRESERVED_ROLE.to_owned()];
                if let Some(role) = &spec.role
                    && role != UNRESERVED_ROLE
                {
                    roles.push(role.clone());
                }
                roles
            }
        };
        Ok(Self {
            resources: ResourceRequest::from_spec(spec),
            constraints,
            roles,
        })
    }
}

/// One instance to place.
#[derive(Clone, Debug)]
pub struct PendingInstance {
    /// The instance.
    pub instance: ObjectKey,
    /// Its App (constraints count per App, over all its versions).
    pub app: ObjectKey,
    /// What it needs; instances of one App version share one value.
    pub requirements: Arc<Requirements>,
}

/// A batch of instances to place, in order (earlier ones get first pick).
#[derive(Clone, Debug, Default)]
pub struct PlacementRequest {
    /// Instances to place, in order.
    pub pending: Vec<PendingInstance>,
    /// Instances already known to be unplaceable (invalid requirements); reported as they are.
    pub invalid: Vec<Unplaced>,
    /// How to choose among fitting nodes.
    pub strategy: Strategy,
}

impl PlacementRequest {
    /// An empty batch.
    pub fn new(strategy: Strategy) -> Self {
        Self {
            strategy,
            ..Self::default()
        }
    }

    /// The pending instances among `instances` (see [`is_pending`]), in the given order, with
    /// the requirements of their `template` (or, without one, of `app_spec(app)`; an instance
    /// with neither is reported unplaceable). Requirements are computed once per App version.
    pub fn from_instances<'a>(
        instances: impl IntoIterator<Item = &'a Instance>,
        app_spec: impl Fn(&ObjectKey) -> Option<&'a AppSpec>,
        strategy: Strategy,
    ) -> Self {
        let mut request = Self::new(strategy);
        let mut cache: HashMap<(ObjectKey, &str), Result<Arc<Requirements>, String>> =
            HashMap::new();
        for instance in instances
            .into_iter()
            .filter(|instance| is_pending(instance))
        {
            let app = ObjectKey::new(
                instance.metadata.namespace.clone().unwrap_or_default(),
                instance.spec.app.clone(),
            );
            let key = ObjectKey::new(
                app.namespace.clone(),
                instance.metadata.name.clone().unwrap_or_default(),
            );
            let requirements = cache
                .entry((app.clone(), instance.spec.app_version.as_str()))
                .or_insert_with(|| {
                    let spec = instance
                        .spec
                        .template
                        .as_ref()
                        .or_else(|| app_spec(&app))
                        .ok_or_else(|| format!("no spec for App {app}"))?;
                    Requirements::from_spec(spec)
                        .map(Arc::new)
                        .map_err(|error| error.to_string())
                });
            match requirements {
                Ok(requirements) => request.pending.push(PendingInstance {
                    instance: key,
                    app,
                    requirements: Arc::clone(requirements),
                }),
                Err(message) => request.invalid.push(Unplaced {
                    instance: key,
                    app,
                    reason: UnplacedReason::Invalid(message.clone()),
                }),
            }
        }
        request
    }

    /// Adds `count` instances of `app` named `<app>-<first>`, `<app>-<first+1>`… (tests and
    /// benchmarks).
    pub fn push_many(
        &mut self,
        app: &ObjectKey,
        requirements: &Arc<Requirements>,
        first: usize,
        count: usize,
    ) {
        for n in first..first + count {
            self.pending.push(PendingInstance {
                instance: ObjectKey::new(app.namespace.clone(), format!("{}-{n}", app.name)),
                app: app.clone(),
                requirements: Arc::clone(requirements),
            });
        }
    }
}

//! Accept = bind: what accepting an offer writes, and the one transaction that writes it.
//!
//! An accept launches Instances on the offered node (Mesos' ACCEPT with LAUNCH operations).
//! [`plan_accept`] is pure: it checks that the launches fit in the offer (scalars summed, host
//! ports inside the offered ranges and distinct; the broker picks the lowest free offered
//! ports for launches that name none) and builds the Instances — bound to the node, with the
//! offer's role, `Staging`, annotated with the offer. [`accept_txn`] is the transaction:
//! the offer must still be at the `resourceVersion` it was read at (so it was neither
//! accepted by another framework, declined, expired nor rescinded meanwhile) and is deleted,
//! and every Instance is created (its name must be free), all or nothing. Each offer is
//! therefore consumed at most once, and the broker offers a node's resources in one open offer
//! at a time, so two frameworks can never allocate the same resources.
//!
//! In-server frameworks call [`accept`] directly on the store; external ones (over HTTP) write
//! the offer's `/status` with `phase: Accepted` and `launch: [...]` at the offer's
//! `resourceVersion`, and the broker runs the same [`plan_accept`] + [`accept_txn`] for them.
//!
//! The placement controller is a framework too, but it binds Instances that already exist
//! (pending ones the deployment controller created) rather than creating new ones:
//! [`bind_unit`] is its accept — the offer compared at its revision and deleted, each Instance
//! compared at its revision and replaced by its bound value (annotated with the offer by
//! [`annotate_offer`]) — as one unit of writes that commits whole or not at all; the controller
//! packs several offers' units into each transaction.

use pacer_schemas::condition::{Condition, ConditionStatus};
use pacer_schemas::instance::{InstanceGoal, InstancePhase, InstanceSpec, InstanceStatus};
use pacer_schemas::offer::OfferLaunch;
use pacer_schemas::{Instance, ObjectMeta, Offer, Resource, Time};
use pacer_store::key::MAX_TXN_OPS;
use pacer_store::{Expect, Leadership, Revision, Store, Txn, TxnOutcome};

use crate::deployment::writes::{KeyWrite, Unit};
use crate::placement::{PortAsk, PortPool, ResourceRequest, Scalars};
use crate::rounds::{ControllerError, commit, encode_at};
use crate::store_source::{object_revision, registry_key};

/// The annotation naming the offer an Instance was launched with.
pub const OFFER_ANNOTATION: &str = "pacer.dev/offer";
/// The label naming the framework that launched an Instance.
pub const FRAMEWORK_LABEL: &str = "pacer.dev/framework";

/// Most Instances one accept launches: the transaction also compares and deletes the offer and
/// carries a leader's fence, within the store's 128 operations.
pub const MAX_LAUNCHES: usize = MAX_TXN_OPS - 2;

/// Why an accept is refused before anything is written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AcceptError {
    /// Nothing to launch.
    #[error("an accept must launch at least one instance")]
    Empty,
    /// More launches than one transaction holds.
    #[error("{count} launches in one accept; at most {MAX_LAUNCHES}")]
    TooMany {
        /// Launches asked for.
        count: usize,
    },
    /// The launches need more of a resource than offered.
    #[error("the launches need more {resource} than the offer holds")]
    Insufficient {
        /// cpus, mem, disk or gpus.
        resource: String,
    },
    /// A host port is not offered, or asked for twice.
    #[error("instance {instance}: host port {port} is not free in the offer")]
    PortNotOffered {
        /// The instance.
        instance: String,
        /// The port.
        port: i32,
    },
    /// Fewer offered ports than the launches need, or a wrong number of `hostPorts`.
    #[error("instance {instance}: {detail}")]
    Ports {
        /// The instance.
        instance: String,
        /// What is wrong.
        detail: String,
    },
    /// An Instance would not pass the API server's validation.
    #[error("instance {instance}: {detail}")]
    InvalidInstance {
        /// The instance.
        instance: String,
        /// The validation errors.
        detail: String,
    },
    /// Two launches name the same Instance.
    #[error("instance {0} is launched twice")]
    Duplicate(String),
}

/// What an accept did.
#[derive(Debug)]
pub enum Accepted {
    /// The offer was consumed and these Instances created.
    Launched(Vec<Instance>),
    /// Nothing was written: the offer changed or is gone (accepted, declined, expired or
    /// rescinded meanwhile), or an Instance name is taken.
    Stale,
}

/// Checks `launches` against `offer` and builds the Instances they create (see the module
/// docs).
pub fn plan_accept(
    offer: &Offer,
    launches: &[OfferLaunch],
    now: Time,
) -> Result<Vec<Instance>, AcceptError> {
    if launches.is_empty() {
        return Err(AcceptError::Empty);
    }
    if launches.len() > MAX_LAUNCHES {
        return Err(AcceptError::TooMany {
            count: launches.len(),
        });
    }
    let offered = Scalars::from_resources(&offer.spec.resources);
    let mut ports = PortPool::from_ranges(&offer.spec.resources.ports);
    let mut used = Scalars::default();
    let mut names = std::collections::HashSet::new();
    let mut instances = Vec::with_capacity(launches.len());
    for launch in launches {
        let id = format!("{}/{}", launch.namespace, launch.name);
        if !names.insert(id.clone()) {
            return Err(AcceptError::Duplicate(id));
        }
        let request = ResourceRequest::from_spec(&launch.template);
        used = used.plus(&request.scalars);
        if let Some(resource) = request
            .scalars
            .shortage(&offered.minus(&used.minus(&request.scalars)))
        {
            return Err(AcceptError::Insufficient {
                resource: resource.to_string(),
            });
        }
        let host_ports = match &launch.host_ports {
            Some(chosen) => {
                if chosen.len() != request.ports.len() {
                    return Err(AcceptError::Ports {
                        instance: id,
                        detail: format!(
                            "{} host ports given, the template asks for {}",
                            chosen.len(),
                            request.ports.len()
                        ),
                    });
                }
                for (port, ask) in chosen.iter().zip(&request.ports) {
                    let fixed_mismatch = matches!(ask, PortAsk::Fixed(fixed) if i64::from(*fixed) != i64::from(*port));
                    let taken = u32::try_from(*port).map_or(true, |port| !ports.remove(port));
                    if fixed_mismatch || taken {
                        return Err(AcceptError::PortNotOffered {
                            instance: id,
                            port: *port,
                        });
                    }
                }
                chosen.clone()
            }
            None => match ports.allocate(&request.ports) {
                Some(picked) => picked
                    .into_iter()
                    .map(|port| i32::try_from(port).unwrap_or(i32::MAX))
                    .collect(),
                None => {
                    return Err(AcceptError::Ports {
                        instance: id,
                        detail: "the offer has not the host ports the template asks for".to_owned(),
                    });
                }
            },
        };
        let instance = launched_instance(offer, launch, host_ports, now);
        if let Err(errors) = Instance::validate(&instance) {
            let detail = errors
                .iter()
                .map(|error| format!("{}: {}", error.field, error.message()))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(AcceptError::InvalidInstance {
                instance: id,
                detail,
            });
        }
        instances.push(instance);
    }
    Ok(instances)
}

/// The Instance one launch creates: bound to the offered node, with the offer's role.
fn launched_instance(
    offer: &Offer,
    launch: &OfferLaunch,
    host_ports: Vec<i32>,
    now: Time,
) -> Instance {
    let offer_name = offer.metadata.name_str();
    let mut metadata = ObjectMeta::named(launch.namespace.clone(), launch.name.clone());
    metadata.uid = Some(uuid::Uuid::new_v4().to_string());
    metadata.creation_timestamp = Some(now);
    metadata.generation = Some(1);
    let mut labels = launch.labels.clone().unwrap_or_default();
    if let Some(framework) = &offer.spec.framework {
        labels.insert(FRAMEWORK_LABEL.to_owned(), framework.clone());
    }
    metadata.labels = Some(labels);
    metadata.annotations = Some(
        [(OFFER_ANNOTATION.to_owned(), offer_name.to_owned())]
            .into_iter()
            .collect(),
    );
    let mut instance = Instance {
        metadata,
        spec: InstanceSpec {
            app: launch.app.clone().unwrap_or_else(|| launch.name.clone()),
            app_version: launch
                .app_version
                .clone()
                .unwrap_or_else(|| offer_name.to_owned()),
            template: Some(launch.template.clone()),
            node_name: Some(offer.spec.node_name.clone()),
            host_ports: Some(host_ports),
            role: Some(offer.spec.role.clone()),
            goal: Some(InstanceGoal::Running),
        },
        status: Some(InstanceStatus {
            phase: InstancePhase::Staging,
            host: Some(
                offer
                    .spec
                    .hostname
                    .clone()
                    .unwrap_or_else(|| offer.spec.node_name.clone()),
            ),
            staged_at: Some(now),
            conditions: vec![Condition {
                type_: "Scheduled".to_owned(),
                status: ConditionStatus::True,
                observed_generation: Some(1),
                last_transition_time: Some(now),
                reason: Some("OfferAccepted".to_owned()),
                message: Some(format!(
                    "launched on node {} with offer {offer_name}",
                    offer.spec.node_name
                )),
            }],
            ..InstanceStatus::default()
        }),
        ..Instance::default()
    };
    instance.apply_defaults();
    instance.set_type_meta();
    instance
}

/// The accept's transaction: the offer unchanged since `offer_revision` and deleted, every
/// Instance created (its key absent). Without the leader's fence; [`commit`] adds it.
pub fn accept_txn(
    offer: &Offer,
    offer_revision: Revision,
    instances: &[Instance],
) -> Result<Txn, ControllerError> {
    let offer_key = registry_key::<Offer>(None, offer.metadata.name_str());
    let mut txn = Txn::new()
        .when(offer_key.clone(), Expect::ModRevision(offer_revision))
        .delete(offer_key);
    for instance in instances {
        let key = registry_key::<Instance>(
            Some(instance.metadata.namespace_str()),
            instance.metadata.name_str(),
        );
        let value = encode_at(&key, instance)?;
        txn = txn.when(key.clone(), Expect::Absent).put(key, value);
    }
    Ok(txn)
}

/// Most existing Instances one [`bind_unit`] binds: with the offer's compare-and-delete and a
/// leader's fence, within the store's 128 operations.
pub const MAX_BINDINGS: usize = MAX_TXN_OPS - 2;

/// Records on an Instance bound through an accept which offer it consumed (as
/// [`plan_accept`] does for the Instances it launches).
pub fn annotate_offer(instance: &mut Instance, offer_name: &str) {
    instance
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(OFFER_ANNOTATION.to_owned(), offer_name.to_owned());
}

/// The accept of `offer` (read at `offer_revision`) by binding existing Instances: the offer is
/// compared and deleted, and each `instances` write (an update compared at the revision its
/// Instance was read at, [`KeyWrite::update`]) is applied, all in the transaction that carries
/// the unit — so the offer is consumed at most once, and an Instance changed meanwhile (bound
/// by someone else, decommissioned, deleted) makes the whole accept write nothing. At most
/// [`MAX_BINDINGS`] Instances.
pub fn bind_unit(offer: &Offer, offer_revision: Revision, instances: Vec<KeyWrite>) -> Unit {
    let name = offer.metadata.name_str();
    let mut writes = Vec::with_capacity(instances.len() + 1);
    writes.push(KeyWrite::delete(
        registry_key::<Offer>(None, name),
        offer_revision,
    ));
    let count = instances.len();
    writes.extend(instances);
    Unit::new(
        format!(
            "offer {name}: accept, binding {count} instances to node {}",
            offer.spec.node_name
        ),
        writes,
    )
}

/// Why [`accept`] failed.
#[derive(Debug, thiserror::Error)]
pub enum AcceptFailure {
    /// The accept was refused before writing.
    #[error(transparent)]
    Refused(#[from] AcceptError),
    /// The store or the fence failed.
    #[error(transparent)]
    Controller(#[from] ControllerError),
}

/// Accepts `offer` (as read, at its `resourceVersion`) by launching `launches`, in one
/// transaction fenced under `leadership` (see the module docs).
pub async fn accept(
    store: &dyn Store,
    leadership: Option<&Leadership>,
    offer: &Offer,
    launches: &[OfferLaunch],
    now: Time,
) -> Result<Accepted, AcceptFailure> {
    let instances = plan_accept(offer, launches, now)?;
    let txn = accept_txn(offer, object_revision(offer).unwrap_or(0), &instances)?;
    match commit(store, leadership, txn).await? {
        TxnOutcome::Committed { .. } => Ok(Accepted::Launched(instances)),
        TxnOutcome::CompareFailed { .. } => Ok(Accepted::Stale),
    }
}

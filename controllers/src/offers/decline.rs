//! Decline: what an in-server framework writes to turn an offer down — the offer's status set
//! to `Declined` with a `refuseSeconds`, compared at the revision it was read at (an offer
//! taken, expired or rescinded meanwhile is left alone). The broker then deletes it and keeps
//! the node from the framework for `refuseSeconds`, as long as the node has no more to offer
//! and the framework does not revive (see [`broker`](super::broker)). External frameworks write
//! the same status over HTTP.

use pacer_schemas::Offer;
use pacer_schemas::offer::{OfferPhase, OfferStatus};
use pacer_store::Revision;

use crate::deployment::writes::{KeyWrite, Unit};
use crate::rounds::{ControllerError, encode_at};
use crate::store_source::registry_key;

/// How a framework declines.
#[derive(Clone, Copy, Debug)]
pub struct Decline<'a> {
    /// The framework's name.
    pub framework: &'a str,
    /// Its `metadata.generation` as it declines (a later revive ends the filter).
    pub generation: Option<i64>,
    /// How long the node is filtered.
    pub refuse_seconds: f64,
    /// Why, recorded on the offer.
    pub reason: &'a str,
}

/// The decline of `offer` (read at `revision`).
pub fn decline_unit(
    offer: &Offer,
    revision: Revision,
    decline: Decline<'_>,
) -> Result<Unit, ControllerError> {
    let name = offer.metadata.name_str();
    let key = registry_key::<Offer>(None, name);
    let mut declined = offer.clone();
    declined.metadata.resource_version = None;
    declined.status = Some(OfferStatus {
        phase: OfferPhase::Declined,
        answered_by: Some(decline.framework.to_owned()),
        refuse_seconds: Some(decline.refuse_seconds),
        framework_generation: decline.generation,
        reason: Some(decline.reason.to_owned()),
        ..OfferStatus::default()
    });
    let write = KeyWrite::update(key.clone(), revision, encode_at(&key, &declined)?);
    Ok(Unit::new(
        format!(
            "offer {name}: decline node {} for {} s",
            offer.spec.node_name, decline.refuse_seconds
        ),
        vec![write],
    ))
}

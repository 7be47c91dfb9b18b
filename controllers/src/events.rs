//! The Events controllers record, in one shape: a first occurrence as the API server would
//! store it, and a repeat of it (count + 1, new time and message). Placement, node lifecycle
//! and health all write through these, so `pacer describe` and `kubectl get events` see the
//! same fields whoever recorded them.

use pacer_schemas::event::{EventSource, EventType};
use pacer_schemas::meta::ObjectReference;
use pacer_schemas::{Event, ObjectMeta, Resource, Time};
use pacer_store::{Expect, Store, StoreError};

use crate::store_source::decode_stored;

/// What a first Event says.
pub struct EventDraft<'a> {
    /// The Event's namespace.
    pub namespace: &'a str,
    /// The Event's name (stable per object and reason, so repeats update it).
    pub name: &'a str,
    /// The object it is about ([`involved`]).
    pub involved: ObjectReference,
    /// Machine-readable reason, e.g. `FailedScheduling`.
    pub reason: &'a str,
    /// Human-readable message.
    pub message: &'a str,
    /// Normal or Warning.
    pub type_: EventType,
    /// What the controller did or tried, e.g. `Scheduling`.
    pub action: &'a str,
    /// The reporting controller.
    pub component: &'a str,
}

/// A reference to the object `meta` of kind `K`.
pub fn involved<K: Resource>(meta: &ObjectMeta) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::API_VERSION.to_owned()),
        kind: Some(K::KIND.to_owned()),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        resource_version: None,
        field_path: None,
    }
}

/// A first Event, as the API server would store it.
pub fn new_event(draft: EventDraft<'_>, now: Time) -> Event {
    let mut metadata = ObjectMeta::named(draft.namespace, draft.name);
    metadata.uid = Some(uuid::Uuid::new_v4().to_string());
    metadata.creation_timestamp = Some(now);
    metadata.generation = Some(1);
    let mut event = Event {
        metadata,
        involved_object: draft.involved,
        reason: Some(draft.reason.to_owned()),
        message: Some(draft.message.to_owned()),
        type_: Some(draft.type_),
        count: Some(1),
        first_timestamp: Some(now),
        last_timestamp: Some(now),
        source: Some(EventSource {
            component: Some(draft.component.to_owned()),
            host: None,
        }),
        action: Some(draft.action.to_owned()),
        ..Default::default()
    };
    event.set_type_meta();
    event
}

/// `event` repeated: count + 1, new `lastTimestamp`, message and involved object, and one more
/// generation (an Event's generation follows everything outside its metadata, as the API
/// server counts it).
pub fn repeated_event(
    mut event: Event,
    involved: ObjectReference,
    message: &str,
    now: Time,
) -> Event {
    event.count = Some(event.count.unwrap_or(1).saturating_add(1));
    event.last_timestamp = Some(now);
    event.message = Some(message.to_owned());
    event.involved_object = involved;
    event.metadata.generation = Some(event.metadata.generation.unwrap_or(1) + 1);
    event
}

/// The Event to write under `key` and the compare that guards it: the stored Event repeated
/// (compared on its revision), or a first one from `draft` when there is none (compared as
/// absent) or the stored one does not decode (replaced, with a warning).
pub async fn next_record(
    store: &dyn Store,
    key: &str,
    draft: EventDraft<'_>,
    now: Time,
) -> Result<(Expect, Event), StoreError> {
    let Some(kv) = store.get(key).await? else {
        return Ok((Expect::Absent, new_event(draft, now)));
    };
    let event = match decode_stored::<Event>(&kv.value, kv.mod_revision) {
        Ok(existing) => repeated_event(existing, draft.involved, draft.message, now),
        Err(error) => {
            tracing::warn!(key, %error, "stored Event does not decode; replacing it");
            new_event(draft, now)
        }
    };
    Ok((Expect::ModRevision(kv.mod_revision), event))
}

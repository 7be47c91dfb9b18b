//! Watch events as the server handles them: a store change decoded once into JSON objects
//! (shared by every watcher through an `Arc`), the per-watcher decision of which event type (if
//! any) a change is under its selectors, and the newline-delimited wire frames
//! (`{"type":"ADDED","object":{…}}\n`), each serialized at most once per type.

use std::sync::OnceLock;

use axum::body::Bytes;
use pacer_schemas::Status;
use pacer_store::{EventKind, Revision, WatchEvent};
use serde_json::{Value, json};

use crate::object;
use crate::selector::Selectors;

/// The event types of the watch protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// The object appeared (or started to match the selectors).
    Added,
    /// The object changed and still matches.
    Modified,
    /// The object went away (or stopped matching).
    Deleted,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Added => 0,
            Self::Modified => 1,
            Self::Deleted => 2,
        }
    }
}

/// One store change under a resource prefix, decoded.
#[derive(Debug)]
pub struct FeedEvent {
    /// The store revision of the change.
    pub revision: Revision,
    /// The key that changed.
    pub key: String,
    /// Put or delete.
    pub kind: EventKind,
    /// Whether a put created the key.
    pub created: bool,
    /// The object after a put; the last state before a delete (with the delete's revision as
    /// `resourceVersion`). `None` if the stored value was not JSON (the event is skipped).
    pub object: Option<Value>,
    /// The object before the change, when it existed.
    pub previous: Option<Value>,
    frames: [OnceLock<Bytes>; 3],
}

impl FeedEvent {
    /// Decodes a store watch event.
    pub fn from_store(event: &WatchEvent) -> Self {
        let revision = event.revision();
        let decode = |key: &str, value: &[u8], revision: Revision| {
            object::from_store_bytes(key, value, revision)
                .map_err(|error| tracing::warn!(key, %error, "watch: skipping undecodable value"))
                .ok()
        };
        let previous = event
            .prev_kv
            .as_ref()
            .and_then(|prev| decode(&prev.key, &prev.value, prev.mod_revision));
        let object = match event.kind {
            EventKind::Put => decode(&event.kv.key, &event.kv.value, revision),
            EventKind::Delete => event
                .prev_kv
                .as_ref()
                .and_then(|prev| decode(&prev.key, &prev.value, revision)),
        };
        Self {
            revision,
            key: event.kv.key.clone(),
            kind: event.kind,
            created: event.kind == EventKind::Put
                && (event.kv.create_revision == event.kv.mod_revision || event.prev_kv.is_none()),
            object,
            previous,
            frames: Default::default(),
        }
    }

    /// The event type this change is for a watcher of `prefix` with `selectors`, if it sees it.
    pub fn type_for(&self, prefix: &str, selectors: &Selectors) -> Option<EventType> {
        if !self.key.starts_with(prefix) {
            return None;
        }
        let object = self.object.as_ref()?;
        match self.kind {
            EventKind::Delete => selectors.matches(object).then_some(EventType::Deleted),
            EventKind::Put => {
                let now = selectors.matches(object);
                let before = !self.created
                    && self
                        .previous
                        .as_ref()
                        .is_some_and(|previous| selectors.matches(previous));
                match (before, now) {
                    (false, true) => Some(EventType::Added),
                    (true, true) => Some(EventType::Modified),
                    (true, false) => Some(EventType::Deleted),
                    (false, false) => None,
                }
            }
        }
    }

    /// The wire frame of this change as `event_type` (serialized once, shared).
    pub fn frame(&self, event_type: EventType) -> Bytes {
        self.frames[event_type.index()]
            .get_or_init(|| match &self.object {
                Some(object) => frame(event_type.as_str(), object),
                None => Bytes::new(),
            })
            .clone()
    }
}

/// `{"type":…,"object":…}\n`.
pub fn frame(event_type: &str, object: &Value) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": event_type, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// A BOOKMARK frame at `revision` for `kind`; `initial_events_end` adds the annotation that
/// ends a `sendInitialEvents` stream.
pub fn bookmark(kind: &str, revision: Revision, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    frame(
        "BOOKMARK",
        &json!({"apiVersion": pacer_schemas::API_VERSION, "kind": kind, "metadata": metadata}),
    )
}

/// An ERROR frame holding `status`.
pub fn error(status: &Status) -> Bytes {
    frame(
        "ERROR",
        &serde_json::to_value(status).unwrap_or(Value::Null),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use pacer_store::KeyValue;

    use super::*;
    use crate::selector::LabelSelector;

    fn kv(value: &str, create: Revision, modified: Revision) -> KeyValue {
        KeyValue {
            key: "/registry/apps/default/web".into(),
            value: value.as_bytes().to_vec(),
            create_revision: create,
            mod_revision: modified,
            version: 1,
            lease: None,
        }
    }

    #[test]
    fn selector_transitions() {
        let selectors = Selectors {
            labels: LabelSelector::parse("tier=front").unwrap(),
            ..Selectors::default()
        };
        let front = r#"{"metadata":{"name":"web","labels":{"tier":"front"}}}"#;
        let back = r#"{"metadata":{"name":"web","labels":{"tier":"back"}}}"#;
        let change = |before: &str, after: &str| {
            FeedEvent::from_store(&WatchEvent {
                kind: EventKind::Put,
                kv: kv(after, 2, 5),
                prev_kv: Some(kv(before, 2, 4)),
            })
        };
        let prefix = "/registry/apps/";
        assert_eq!(
            change(back, front).type_for(prefix, &selectors),
            Some(EventType::Added)
        );
        assert_eq!(
            change(front, front).type_for(prefix, &selectors),
            Some(EventType::Modified)
        );
        assert_eq!(
            change(front, back).type_for(prefix, &selectors),
            Some(EventType::Deleted)
        );
        assert_eq!(change(back, back).type_for(prefix, &selectors), None);
        assert_eq!(
            change(front, front).type_for("/registry/apps/other/", &selectors),
            None
        );
        let deleted = FeedEvent::from_store(&WatchEvent {
            kind: EventKind::Delete,
            kv: kv("", 0, 9),
            prev_kv: Some(kv(front, 2, 5)),
        });
        assert_eq!(
            deleted.type_for(prefix, &selectors),
            Some(EventType::Deleted)
        );
        let line = deleted.frame(EventType::Deleted);
        let parsed: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(parsed["type"], "DELETED");
        assert_eq!(parsed["object"]["metadata"]["resourceVersion"], "9");
        assert!(line.ends_with(b"\n"));
    }
}

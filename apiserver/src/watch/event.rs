//! Watch events as the server handles them: a store change kept as its stored bytes (shared by
//! every watcher through an `Arc`), the per-watcher decision of which event type (if any) a
//! change is under its selectors, and the newline-delimited wire frames
//! (`{"object":{…},"type":"ADDED"}\n`, the key order a `Value` writes), each written at most
//! once per type per change, whatever the number of watchers.
//!
//! Frames are written straight from the stored bytes by `raw_json` (the object's JSON with
//! `metadata.resourceVersion` spliced in), never decoded and re-encoded: that was most of a
//! watch's cost. Selectors decode only the fields they read, once per change and side; a
//! `Table` watcher decodes the whole object, once per change.

use std::sync::OnceLock;

use axum::body::Bytes;
use pacer_schemas::Status;
use pacer_store::{EventKind, KeyValue, Revision, WatchEvent};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::object;
use crate::raw_json;
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

/// One store change under a resource prefix.
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
    object: Option<StoredObject>,
    /// The object before the change, when it existed.
    previous: Option<StoredObject>,
    frames: [OnceLock<Bytes>; 3],
}

/// A stored object with the revision to report as its `resourceVersion` (`kv.mod_revision`),
/// decoded only as far as someone asks.
#[derive(Debug)]
struct StoredObject {
    kv: KeyValue,
    /// Its JSON with `resourceVersion`, as a frame's `object` (objects only: `None` for
    /// `previous`, which is never sent).
    json: Option<Vec<u8>>,
    /// Whether the stored value is JSON (known without parsing once `json` is written).
    is_json: OnceLock<bool>,
    /// What selectors read of it (`None`: not JSON).
    selected: OnceLock<Option<Value>>,
    /// All of it (`None`: not JSON).
    whole: OnceLock<Option<Value>>,
}

impl StoredObject {
    fn new(mut kv: KeyValue, revision: Revision) -> Self {
        kv.mod_revision = revision;
        Self {
            kv,
            json: None,
            is_json: OnceLock::new(),
            selected: OnceLock::new(),
            whole: OnceLock::new(),
        }
    }

    /// Writes its JSON now; `None` (with a warning) when the stored value is not JSON.
    fn written(mut self) -> Option<Self> {
        let mut json = Vec::with_capacity(self.kv.value.len() + 32);
        match raw_json::write_object(&mut json, &self.kv) {
            Ok(()) => {
                self.json = Some(json);
                Some(self)
            }
            Err(error) => {
                warn_undecodable(&self.kv.key, &error);
                None
            }
        }
    }

    /// Whether it is JSON (what decoding it into a `Value` needs).
    fn is_json(&self) -> bool {
        self.json.is_some()
            || *self.is_json.get_or_init(|| {
                serde_json::from_slice::<serde::de::IgnoredAny>(&self.kv.value).is_ok()
            })
    }

    /// Whether it is JSON and matches `selectors`.
    fn matches(&self, selectors: &Selectors) -> bool {
        let filtering = !(selectors.labels.is_empty() && selectors.fields.is_empty());
        if !filtering {
            return self.is_json();
        }
        self.selected
            .get_or_init(|| {
                raw_json::selector_view(&self.kv)
                    .map_err(|error| warn_undecodable(&self.kv.key, &error))
                    .ok()
            })
            .as_ref()
            .is_some_and(|view| selectors.matches(view))
    }

    fn whole(&self) -> Option<&Value> {
        self.whole
            .get_or_init(|| {
                object::from_store(&self.kv)
                    .map_err(|error| warn_undecodable(&self.kv.key, &error))
                    .ok()
            })
            .as_ref()
    }
}

fn warn_undecodable(key: &str, error: &ApiError) {
    tracing::warn!(key, %error, "watch: skipping undecodable value");
}

impl FeedEvent {
    /// Takes in a store watch event (its object's JSON is written here, once).
    pub fn from_store(event: WatchEvent) -> Self {
        let revision = event.revision();
        let created = event.kind == EventKind::Put
            && (event.kv.create_revision == event.kv.mod_revision || event.prev_kv.is_none());
        let key = event.kv.key.clone();
        let (object, previous) = match event.kind {
            EventKind::Put => (
                StoredObject::new(event.kv, revision).written(),
                event.prev_kv.map(|prev| {
                    let revision = prev.mod_revision;
                    StoredObject::new(prev, revision)
                }),
            ),
            EventKind::Delete => (
                event
                    .prev_kv
                    .and_then(|prev| StoredObject::new(prev, revision).written()),
                None,
            ),
        };
        Self {
            revision,
            key,
            kind: event.kind,
            created,
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
        let matches = |stored: &StoredObject| stored.matches(selectors);
        match self.kind {
            EventKind::Delete => matches(object).then_some(EventType::Deleted),
            EventKind::Put => {
                let now = matches(object);
                let before = !self.created && self.previous.as_ref().is_some_and(matches);
                match (before, now) {
                    (false, true) => Some(EventType::Added),
                    (true, true) => Some(EventType::Modified),
                    (true, false) => Some(EventType::Deleted),
                    (false, false) => None,
                }
            }
        }
    }

    /// The object decoded (for `Table` watchers), `None` if it was not JSON.
    pub fn object(&self) -> Option<&Value> {
        self.object.as_ref().and_then(StoredObject::whole)
    }

    /// The wire frame of this change as `event_type` (written once, shared).
    pub fn frame(&self, event_type: EventType) -> Bytes {
        self.frames[event_type.index()]
            .get_or_init(|| {
                match self
                    .object
                    .as_ref()
                    .and_then(|object| object.json.as_deref())
                {
                    Some(json) => raw_frame(event_type.as_str(), json),
                    None => Bytes::new(),
                }
            })
            .clone()
    }
}

/// The frame of the stored object `kv` (`resourceVersion`: its `mod_revision`) as
/// `event_type`, written from its stored bytes.
pub fn stored_frame(event_type: EventType, kv: &KeyValue) -> Result<Bytes, ApiError> {
    let mut json = Vec::with_capacity(kv.value.len() + 32);
    raw_json::write_object(&mut json, kv)?;
    Ok(raw_frame(event_type.as_str(), &json))
}

/// `{"object":…,"type":…}\n` around an already encoded object: what [`frame`] writes (a
/// `Value` map's keys are sorted).
fn raw_frame(event_type: &str, object_json: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object_json.len() + 32);
    line.extend_from_slice(b"{\"object\":");
    line.extend_from_slice(object_json);
    line.extend_from_slice(b",\"type\":");
    // A fixed event type name: plain ASCII, nothing to escape.
    line.push(b'"');
    line.extend_from_slice(event_type.as_bytes());
    line.extend_from_slice(b"\"}\n");
    Bytes::from(line)
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
    use crate::selector::{FieldSelector, LabelSelector, parse_labels};

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
            FeedEvent::from_store(WatchEvent {
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
        let deleted = FeedEvent::from_store(WatchEvent {
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

    /// How events were handled before frames were written from the stored bytes: each side
    /// decoded into a `Value`, selectors matched on it, the frame encoded from it.
    struct ValueEvent {
        object: Option<Value>,
        previous: Option<Value>,
        kind: EventKind,
        created: bool,
        key: String,
    }

    impl ValueEvent {
        fn from_store(event: &WatchEvent) -> Self {
            let revision = event.revision();
            let decode = |key: &str, value: &[u8], revision| {
                object::from_store_bytes(key, value, revision).ok()
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
                object,
                previous,
                kind: event.kind,
                created: event.kind == EventKind::Put
                    && (event.kv.create_revision == event.kv.mod_revision
                        || event.prev_kv.is_none()),
                key: event.kv.key.clone(),
            }
        }

        fn type_for(&self, prefix: &str, selectors: &Selectors) -> Option<EventType> {
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

        fn frame(&self, event_type: EventType) -> Bytes {
            frame(event_type.as_str(), self.object.as_ref().unwrap())
        }
    }

    const KEY: &str = "/registry/instances/default/web-1";

    fn instance_kv(value: &[u8], create: Revision, modified: Revision) -> KeyValue {
        KeyValue {
            key: KEY.into(),
            value: value.to_vec(),
            create_revision: create,
            mod_revision: modified,
            version: 1,
            lease: None,
        }
    }

    /// Stored values: as the API server stores them (keys sorted), odd ones that take the
    /// `Value` path or are skipped, and an Instance as controllers store it (struct order).
    fn stored_values() -> Vec<(Vec<u8>, bool)> {
        let canonical = [
            r#"{"apiVersion":"pacer.dev/v1","kind":"Instance","metadata":{"labels":{"app":"web"},"name":"web-1","namespace":"default","uid":"u"},"spec":{"nodeName":"n1"},"status":{"phase":"Running"}}"#,
            r#"{"apiVersion":"pacer.dev/v1","kind":"Instance","metadata":{"labels":{"app":"db"},"name":"web-1","namespace":"default"},"spec":{"nodeName":"n2"}}"#,
            r#"{"metadata":{"annotations":{"a":"b"},"name":"web-1","resourceVersion":"7"},"spec":{"nodeName":"n1"}}"#,
            r#"{"kind":"Instance","spec":{}}"#,
            r#"{"apiVersion":"v","metadata":null}"#,
            r#"{"a\"b":1,"metadata":{"labels":{"app":"web"},"name":"x"}}"#,
            r#"{"metadata":{"x\"y":1,"name":"web-1"}}"#,
            r#"{"metadata":{"name":"a"},"kind":"K","metadata":{"labels":{"app":"web"},"name":"web-1"}}"#,
            r#"{"metadata":{"name":"web-1"},"spec":"n1"}"#,
            r#"[1,2]"#,
            r#"{}"#,
            r#"{not json"#,
            "",
        ];
        let mut values: Vec<(Vec<u8>, bool)> = canonical
            .iter()
            .map(|value| (value.as_bytes().to_vec(), true))
            .collect();
        let typed: pacer_schemas::Instance = serde_json::from_value(json!({
            "apiVersion": "pacer.dev/v1", "kind": "Instance",
            "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1"}
        }))
        .unwrap();
        values.push((serde_json::to_vec(&typed).unwrap(), false));
        values
    }

    /// Every kind of change between the stored values, under selectors of each sort, gives
    /// each watcher the event type and frame the `Value` path gave it: byte for byte for
    /// values stored as the API server stores them; for struct-ordered values, nested members
    /// keep their stored order (the same JSON).
    #[test]
    fn frames_are_written_as_the_value_path_wrote_them() {
        let selectors: Vec<Selectors> = [
            ("", ""),
            ("app=web", ""),
            ("app!=web", ""),
            ("!app", ""),
            ("", "spec.nodeName=n1"),
            ("", "metadata.name=web-1"),
            ("app=web", "spec.nodeName!=n2"),
        ]
        .into_iter()
        .map(|(labels, fields)| Selectors {
            labels: parse_labels(labels).unwrap(),
            fields: FieldSelector::parse(fields).unwrap(),
        })
        .collect();
        let prefixes = ["/registry/instances/", "/registry/instances/other/"];
        let values = stored_values();
        let mut events = Vec::new();
        for (after, _) in &values {
            events.push(WatchEvent {
                kind: EventKind::Put,
                kv: instance_kv(after, 5, 5),
                prev_kv: None,
            });
            for (before, _) in &values {
                events.push(WatchEvent {
                    kind: EventKind::Put,
                    kv: instance_kv(after, 2, 5),
                    prev_kv: Some(instance_kv(before, 2, 4)),
                });
                events.push(WatchEvent {
                    kind: EventKind::Delete,
                    kv: instance_kv(b"", 0, 9),
                    prev_kv: Some(instance_kv(before, 2, 5)),
                });
            }
        }
        let mut compared = 0;
        for event in events {
            let exact = values
                .iter()
                .find(|(value, _)| {
                    value
                        == match event.kind {
                            EventKind::Put => &event.kv.value,
                            EventKind::Delete => &event.prev_kv.as_ref().unwrap().value,
                        }
                })
                .unwrap()
                .1;
            let old = ValueEvent::from_store(&event);
            let new = FeedEvent::from_store(event.clone());
            assert_eq!(new.object(), old.object.as_ref());
            for prefix in prefixes {
                for selector in &selectors {
                    let event_type = new.type_for(prefix, selector);
                    assert_eq!(event_type, old.type_for(prefix, selector), "{event:?}");
                    let Some(event_type) = event_type else {
                        continue;
                    };
                    let (written, expected) = (new.frame(event_type), old.frame(event_type));
                    if exact {
                        assert_eq!(
                            String::from_utf8_lossy(&written),
                            String::from_utf8_lossy(&expected)
                        );
                    } else {
                        assert_eq!(
                            serde_json::from_slice::<Value>(&written).unwrap(),
                            serde_json::from_slice::<Value>(&expected).unwrap()
                        );
                        assert!(written.ends_with(b"}\n"));
                    }
                    compared += 1;
                }
            }
        }
        // Not vacuous: most changes are seen by some watcher.
        assert!(compared > 1000, "{compared}");
    }

    /// The initial state's frames are the `Value` path's too; corrupt values still fail.
    #[test]
    fn stored_frames_are_written_as_the_value_path_wrote_them() {
        for (value, exact) in stored_values() {
            let kv = instance_kv(&value, 2, 6);
            match object::from_store(&kv) {
                Ok(object) => {
                    let written = stored_frame(EventType::Added, &kv).unwrap();
                    let expected = frame("ADDED", &object);
                    if exact {
                        assert_eq!(written, expected);
                    } else {
                        assert_eq!(
                            serde_json::from_slice::<Value>(&written).unwrap(),
                            serde_json::from_slice::<Value>(&expected).unwrap()
                        );
                    }
                }
                Err(error) => {
                    let failed = stored_frame(EventType::Added, &kv).unwrap_err();
                    assert_eq!(failed.to_string(), error.to_string());
                }
            }
        }
    }

    /// A rough before/after figure (no assertion on speed): 10,000 Instance changes each
    /// framed for one watcher, the `Value` way and from the stored bytes. Run with
    /// `cargo test -p pacer-apiserver --release -- --ignored --nocapture watch_cost`.
    #[test]
    #[ignore = "prints timings; run by hand with --release"]
    fn watch_cost_per_10000_events() {
        let mut spec = serde_json::Map::new();
        for index in 0..20 {
            spec.insert(
                format!("field{index}"),
                json!({"value": index, "text": "x".repeat(40)}),
            );
        }
        let instance = json!({
            "apiVersion": "pacer.dev/v1", "kind": "Instance",
            "metadata": {"name": "web-1", "namespace": "default", "uid": "0f4b",
                         "labels": {"app": "web", "version": "v2"},
                         "ownerReferences": [{"kind": "App", "name": "web", "uid": "9a"}]},
            "spec": spec, "status": {"phase": "Running", "conditions": [{"type": "Ready"}]}
        });
        let stored = object::to_store(&instance).unwrap();
        let events: Vec<WatchEvent> = (0..10_000)
            .map(|index| WatchEvent {
                kind: EventKind::Put,
                kv: instance_kv(&stored, 2, 10 + index),
                prev_kv: Some(instance_kv(&stored, 2, 9 + index)),
            })
            .collect();
        let labels = Selectors {
            labels: parse_labels("app=web").unwrap(),
            ..Selectors::default()
        };
        for selectors in [Selectors::default(), labels] {
            let started = std::time::Instant::now();
            let mut old_bytes = 0;
            for event in &events {
                let old = ValueEvent::from_store(event);
                let event_type = old.type_for("/registry/", &selectors).unwrap();
                old_bytes += old.frame(event_type).len();
            }
            let old_time = started.elapsed();
            let started = std::time::Instant::now();
            let mut new_bytes = 0;
            for event in events.iter().cloned() {
                let new = FeedEvent::from_store(event);
                let event_type = new.type_for("/registry/", &selectors).unwrap();
                new_bytes += new.frame(event_type).len();
            }
            let new_time = started.elapsed();
            assert_eq!(old_bytes, new_bytes);
            eprintln!(
                "{} bytes/frame, label selector: {}: Value path {old_time:?}, stored bytes {new_time:?}",
                stored.len(),
                !selectors.labels.is_empty()
            );
        }
    }
}

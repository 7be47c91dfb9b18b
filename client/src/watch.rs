//! `WatchEvent`: one line of a watch stream, `{"type": "ADDED|MODIFIED|DELETED|BOOKMARK|ERROR",
//! "object": …}`, as Kubernetes frames it.

use std::collections::BTreeMap;

use pacer_schemas::Status;
use serde::{Deserialize, Serialize};

/// One watch event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "object", rename_all = "UPPERCASE")]
pub enum WatchEvent<T> {
    /// An object appeared (or existed, when the watch started without a resourceVersion).
    Added(T),
    /// An object changed.
    Modified(T),
    /// An object was deleted; its last state.
    Deleted(T),
    /// Nothing changed for the watcher, but the stream has reached this resourceVersion.
    Bookmark(Bookmark),
    /// The watch failed; a 410 `Expired` means: relist, then watch from the list's version.
    Error(Box<Status>),
}

/// The object of a `BOOKMARK` event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bookmark {
    /// `pacer.dev/v1`.
    #[serde(default)]
    pub api_version: String,
    /// The watched kind.
    #[serde(default)]
    pub kind: String,
    /// The version reached.
    #[serde(default)]
    pub metadata: BookmarkMeta,
}

/// Metadata of a bookmark.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookmarkMeta {
    /// The version reached; watch again from here.
    #[serde(default)]
    pub resource_version: String,
    /// E.g. `k8s.io/initial-events-end`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl<T> WatchEvent<T> {
    /// The type as on the wire: `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` or `ERROR`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Added(_) => "ADDED",
            Self::Modified(_) => "MODIFIED",
            Self::Deleted(_) => "DELETED",
            Self::Bookmark(_) => "BOOKMARK",
            Self::Error(_) => "ERROR",
        }
    }

    /// The object of an ADDED, MODIFIED or DELETED event.
    pub fn object(&self) -> Option<&T> {
        match self {
            Self::Added(object) | Self::Modified(object) | Self::Deleted(object) => Some(object),
            Self::Bookmark(_) | Self::Error(_) => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use pacer_schemas::App;
    use pacer_schemas::status::StatusReason;

    use super::*;

    #[test]
    fn events_decode_from_the_wire() {
        let added: WatchEvent<App> = serde_json::from_str(
            r#"{"type":"ADDED","object":{"apiVersion":"pacer.dev/v1","kind":"App",
                "metadata":{"name":"web","namespace":"default","resourceVersion":"5"},
                "spec":{"cmd":"sleep 1"}}}"#,
        )
        .unwrap();
        assert_eq!(added.type_name(), "ADDED");
        assert_eq!(added.object().unwrap().metadata.name_str(), "web");

        let bookmark: WatchEvent<App> = serde_json::from_str(
            r#"{"type":"BOOKMARK","object":{"apiVersion":"pacer.dev/v1","kind":"App",
                "metadata":{"resourceVersion":"9"}}}"#,
        )
        .unwrap();
        let WatchEvent::Bookmark(bookmark) = bookmark else {
            panic!("not a bookmark")
        };
        assert_eq!(bookmark.metadata.resource_version, "9");

        let error: WatchEvent<serde_json::Value> = serde_json::from_str(
            r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},
                "status":"Failure","message":"too old","reason":"Expired","code":410}}"#,
        )
        .unwrap();
        let WatchEvent::Error(status) = error else {
            panic!("not an error")
        };
        assert_eq!(status.reason, Some(StatusReason::Expired));
    }
}

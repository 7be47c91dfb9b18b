//! `List<T>`: a page of objects of one kind (`AppList`, …) with the list metadata that watch
//! and pagination need (`metadata.resourceVersion`, `metadata.continue`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::ListMeta;
use crate::resource::Resource;

/// A page of objects of one kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct List<T> {
    /// `pacer.dev/v1`.
    #[serde(default)]
    pub api_version: String,
    /// `<Kind>List`, e.g. `AppList`.
    #[serde(default)]
    pub kind: String,
    /// The revision the list was read at, and the continue token.
    #[serde(default)]
    pub metadata: ListMeta,
    /// The objects.
    #[serde(default)]
    pub items: Vec<T>,
}

impl<K: Resource> List<K> {
    /// A list read at `resource_version`, with a continue token when more pages follow. Items
    /// get their `apiVersion` and `kind` filled, as Kubernetes does in lists.
    pub fn new(
        mut items: Vec<K>,
        resource_version: impl Into<String>,
        continue_token: Option<String>,
    ) -> Self {
        for item in &mut items {
            item.set_type_meta();
        }
        Self {
            api_version: K::API_VERSION.to_owned(),
            kind: K::LIST_KIND.to_owned(),
            metadata: ListMeta {
                resource_version: Some(resource_version.into()),
                continue_token,
                remaining_item_count: None,
            },
            items,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::app::{App, AppSpec};

    #[test]
    fn list_carries_kind_and_revision() {
        let mut app = App::new("default", "web", AppSpec::default());
        app.kind.clear();
        let list = List::new(vec![app], "17", Some("next".into()));
        assert_eq!(
            serde_json::to_value(&list).unwrap(),
            json!({
                "apiVersion": "pacer.dev/v1", "kind": "AppList",
                "metadata": {"resourceVersion": "17", "continue": "next"},
                "items": [{"apiVersion": "pacer.dev/v1", "kind": "App",
                           "metadata": {"name": "web", "namespace": "default"}, "spec": {}}]
            })
        );
    }
}

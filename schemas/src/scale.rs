//! `Scale` (`autoscaling/v1`): the `/scale` subresource of an App, which `kubectl scale` and
//! kube-rs read and write. Its `spec.replicas` is the App's `spec.instances`; its status
//! counts the App's instances and selects them by label.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::instance::Instance;
use crate::meta::ObjectMeta;

/// `apiVersion` of a Scale.
pub const SCALE_API_VERSION: &str = "autoscaling/v1";

/// The scale of an App.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "Scale")]
pub struct Scale {
    /// `autoscaling/v1`.
    #[serde(default)]
    pub api_version: String,
    /// `Scale`.
    #[serde(default)]
    pub kind: String,
    /// The App's name, namespace, uid, resourceVersion and creationTimestamp.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired number of instances.
    #[serde(default)]
    pub spec: ScaleSpec,
    /// Observed number of instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ScaleStatus>,
}

/// Desired scale.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleSpec {
    /// Desired number of instances (the App's `spec.instances`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
}

/// Observed scale.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleStatus {
    /// Number of instances that exist.
    #[serde(default)]
    pub replicas: i32,
    /// Label selector of the instances, as a string (`pacer.dev/app=web`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

impl Scale {
    /// The Scale view of an App.
    pub fn from_app(app: &App) -> Self {
        let meta = &app.metadata;
        Self {
            api_version: SCALE_API_VERSION.to_owned(),
            kind: "Scale".to_owned(),
            metadata: ObjectMeta {
                name: meta.name.clone(),
                namespace: meta.namespace.clone(),
                uid: meta.uid.clone(),
                resource_version: meta.resource_version.clone(),
                creation_timestamp: meta.creation_timestamp,
                ..ObjectMeta::default()
            },
            spec: ScaleSpec {
                replicas: Some(app.spec.instances.unwrap_or(crate::defaults::INSTANCES)),
            },
            status: Some(ScaleStatus {
                replicas: app.status.as_ref().map_or(0, |status| status.instances),
                selector: Some(Instance::selector_for_app(meta.name_str())),
            }),
        }
    }

    /// Writes `spec.replicas` into the App's `spec.instances` (nothing else changes).
    pub fn apply_to(&self, app: &mut App) {
        if let Some(replicas) = self.spec.replicas {
            app.spec.instances = Some(replicas);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::app::{AppSpec, AppStatus};

    #[test]
    fn scale_mirrors_the_app() {
        let mut app = App::new(
            "prod",
            "web",
            AppSpec {
                instances: Some(3),
                ..AppSpec::default()
            },
        );
        app.metadata.resource_version = Some("42".into());
        app.status = Some(AppStatus {
            instances: 2,
            ..AppStatus::default()
        });
        let mut scale = Scale::from_app(&app);
        assert_eq!(
            serde_json::to_value(&scale).unwrap(),
            json!({
                "apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": "web", "namespace": "prod", "resourceVersion": "42"},
                "spec": {"replicas": 3},
                "status": {"replicas": 2, "selector": "pacer.dev/app=web"}
            })
        );
        scale.spec.replicas = Some(5);
        scale.apply_to(&mut app);
        assert_eq!(app.spec.instances, Some(5));
    }
}

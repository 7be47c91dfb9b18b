//! `AppVersion`: one entry of an App's version history — a snapshot of the App's spec at one
//! change, with Marathon's version string (an RFC 3339 timestamp with milliseconds) and a
//! revision number that grows by one per change.
//!
//! The deployment controller writes one for every change it sees (spec change, scale, or a
//! restart request through [`RESTARTED_AT_ANNOTATION`]), in the same transaction as the
//! Deployment that rolls it out. It is named `<app>-<revision>`, lives in the App's
//! namespace, carries the label `pacer.dev/app=<app>` and an owner reference to the App, so
//! listing an App's history is one label-selected list, deleting the App removes its history,
//! and `pacer rollout undo` restores a snapshot by writing it back into the App's spec.
//!
//! `configVersion` is Marathon's `versionInfo.lastConfigChangeAt`: the version of the last
//! change that was not only a scale. Instances record it as `spec.appVersion`, so a scale
//! leaves running instances alone while a config change or a restart replaces them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::app::AppSpec;
use crate::field_error::{Errors, FieldError, FieldPath};
use crate::marathon_id::{DEFAULT_NAMESPACE, MarathonId};
use crate::meta::ObjectMeta;
use crate::resource::impl_resource;
use crate::time::Time;

/// The annotation on an App that asks for a rolling restart: setting it to a new value (by
/// convention the current time, as `pacer rollout restart` does) makes a new version with the
/// same spec, whose rollout replaces every instance under the upgrade strategy. Like
/// Marathon's `POST /v2/apps/{id}/restart`.
pub const RESTARTED_AT_ANNOTATION: &str = "pacer.dev/restartedAt";

/// The annotation a write puts on an App to ask that the version its change makes carry a
/// given version string (RFC 3339 with milliseconds) rather than the time the deployment
/// controller sees the change. A `/v2/groups` write stamps one version on every app it changes,
/// so a group change is one version across its apps, as in Marathon. The value,
/// `<generation>@<version>` ([`requested_version_value`]), names the `metadata.generation` the
/// write gives the App: the controller takes the version only for that generation, when it is
/// later than the App's latest version, not before the App was created and not ahead of the
/// controller's clock by more than a minute. Left over from an earlier change, or copied with
/// a manifest, it is ignored.
pub const REQUESTED_VERSION_ANNOTATION: &str = "pacer.dev/requestedVersion";

/// The [`REQUESTED_VERSION_ANNOTATION`] value asking for `version` at `generation`.
pub fn requested_version_value(generation: i64, version: &str) -> String {
    format!("{generation}@{version}")
}

/// The generation and version of a [`REQUESTED_VERSION_ANNOTATION`] value.
pub fn parse_requested_version(value: &str) -> Option<(i64, &str)> {
    let (generation, version) = value.split_once('@')?;
    Some((generation.parse().ok()?, version))
}

/// The label on Instances naming the config version they run, in label-safe form (see
/// [`AppVersion::version_label`]): `pacer.dev/app-version=20150925T151348.343Z`.
pub const APP_VERSION_LABEL: &str = "pacer.dev/app-version";

/// One version of an App (namespaced, named `<app>-<revision>`, immutable once written).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "AppVersion")]
pub struct AppVersion {
    /// `pacer.dev/v1`.
    #[serde(default)]
    pub api_version: String,
    /// `AppVersion`.
    #[serde(default)]
    pub kind: String,
    /// Name `<app>-<revision>`, the App's namespace, label `pacer.dev/app`, owner reference to
    /// the App.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The snapshot.
    #[serde(default)]
    pub spec: AppVersionSpec,
}

impl_resource!(AppVersion {
    kind: "AppVersion",
    plural: "appversions",
    singular: "appversion",
    short_names: ["appver"],
    categories: [],
    namespaced: true,
    scale: false,
    defaults: apply_app_version_defaults,
    validate: validate_app_version,
    validate_update: validate_app_version_update,
});

/// The snapshot of one App change.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppVersionSpec {
    /// Name of the App (same namespace).
    #[serde(default)]
    pub app: String,
    /// 1 for the App's first version, one more for each change.
    #[serde(default)]
    pub revision: i64,
    /// Marathon's version: when the change was recorded, RFC 3339 UTC with milliseconds
    /// (`2015-09-25T15:13:48.343Z`); strictly increasing per App.
    #[serde(default)]
    pub version: String,
    /// The version of the last change that was not only a scale (Marathon's
    /// `lastConfigChangeAt`); instances started for this version record it as
    /// `spec.appVersion`.
    #[serde(default)]
    pub config_version: String,
    /// The App's `metadata.generation` this version snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_generation: Option<i64>,
    /// The App's [`RESTARTED_AT_ANNOTATION`] at this version, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<String>,
    /// What kind of change this was: `Created`, `Scaled`, `Updated` or `Restarted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    /// The App's spec at this version.
    #[serde(default)]
    pub template: AppSpec,
}

impl AppVersion {
    /// The name of revision `revision` of App `app`: `<app>-<revision>`.
    pub fn name_for(app: &str, revision: i64) -> String {
        format!("{app}-{revision}")
    }

    /// Labels an AppVersion of `app` carries (the same `pacer.dev/app` label as its Instances).
    pub fn labels_for_app(app: &str) -> BTreeMap<String, String> {
        crate::instance::Instance::labels_for_app(app)
    }

    /// `version` as a label value: RFC 3339's basic form without `-` and `:` (label values
    /// allow neither `:` nor more than 63 characters), e.g. `20150925T151348.343Z`.
    pub fn version_label(version: &str) -> String {
        version
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
            .take(63)
            .collect()
    }

    /// The Marathon version string of `time`: RFC 3339 UTC with exactly three fractional
    /// digits (`2015-09-25T15:13:48.343Z`), as Marathon writes app versions.
    pub fn version_string(time: jiff::Timestamp) -> String {
        let millis = time.as_millisecond();
        let seconds = millis.div_euclid(1000);
        let fraction = millis.rem_euclid(1000);
        match jiff::Timestamp::from_second(seconds) {
            Ok(whole) => {
                let text = whole.to_string();
                let base = text.strip_suffix('Z').unwrap_or(&text);
                format!("{base}.{fraction:03}Z")
            }
            Err(_) => time.to_string(),
        }
    }
}

/// AppVersions have no defaults.
pub fn apply_app_version_defaults(_: &mut AppVersion) {}

/// Checks an AppVersion: App name, revision ≥ 1, RFC 3339 versions, a valid template.
pub fn validate_app_version(version: &AppVersion) -> Result<(), Vec<FieldError>> {
    let mut errors = Errors::default();
    errors.extend(crate::validation::validate_type_meta(version));
    errors.extend(crate::validation::validate_object_meta(
        &version.metadata,
        true,
    ));
    let spec = FieldPath::new("spec");
    if version.spec.app.is_empty() {
        errors.push(FieldError::required(&spec.child("app"), ""));
    } else if let Err(message) = crate::names::check_dns1123_subdomain(&version.spec.app) {
        errors.push(FieldError::invalid(
            &spec.child("app"),
            version.spec.app.as_str(),
            message,
        ));
    }
    if version.spec.revision < 1 {
        errors.push(FieldError::invalid(
            &spec.child("revision"),
            version.spec.revision,
            "must be greater than or equal to 1",
        ));
    }
    for (field, value) in [
        ("version", &version.spec.version),
        ("configVersion", &version.spec.config_version),
    ] {
        if value.is_empty() {
            errors.push(FieldError::required(&spec.child(field), ""));
        } else if value.parse::<Time>().is_err() {
            errors.push(FieldError::invalid(
                &spec.child(field),
                value.as_str(),
                "must be an RFC 3339 timestamp such as 2015-09-25T15:13:48.343Z",
            ));
        }
    }
    let namespace = version
        .metadata
        .namespace
        .as_deref()
        .filter(|namespace| !namespace.is_empty())
        .unwrap_or(DEFAULT_NAMESPACE);
    let id = MarathonId::from_object(namespace, &version.spec.app).ok();
    errors.extend(crate::validation::validate_app_spec(
        &version.spec.template,
        &spec.child("template"),
        id.as_ref(),
    ));
    errors.into_result()
}

/// Checks an AppVersion update: history is immutable, so the spec may not change.
pub fn validate_app_version_update(
    version: &AppVersion,
    old: &AppVersion,
) -> Result<(), Vec<FieldError>> {
    let mut errors = Errors::default();
    if let Err(found) = validate_app_version(version) {
        errors.extend(found);
    }
    if version.spec != old.spec {
        errors.push(FieldError::forbidden(
            &FieldPath::new("spec"),
            "field is immutable",
        ));
    }
    errors.into_result()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::resource::Resource;

    #[test]
    fn version_strings_have_milliseconds() {
        let time: jiff::Timestamp = "2015-09-25T15:13:48.343Z".parse().unwrap();
        assert_eq!(AppVersion::version_string(time), "2015-09-25T15:13:48.343Z");
        let whole: jiff::Timestamp = "2015-09-25T15:13:48Z".parse().unwrap();
        assert_eq!(
            AppVersion::version_string(whole),
            "2015-09-25T15:13:48.000Z"
        );
        assert_eq!(AppVersion::name_for("shop.web", 12), "shop.web-12");
        assert_eq!(
            AppVersion::version_label("2015-09-25T15:13:48.343Z"),
            "20150925T151348.343Z"
        );
    }

    #[test]
    fn validation_names_fields_and_history_is_immutable() {
        let mut version = AppVersion {
            metadata: ObjectMeta::named("default", "web-1"),
            spec: AppVersionSpec {
                app: "web".into(),
                revision: 1,
                version: "2015-09-25T15:13:48.343Z".into(),
                config_version: "2015-09-25T15:13:48.343Z".into(),
                template: AppSpec {
                    cmd: Some("sleep 100".into()),
                    ..AppSpec::default()
                },
                ..AppVersionSpec::default()
            },
            ..AppVersion::default()
        };
        version.set_type_meta();
        assert_eq!(version.validate(), Ok(()));
        let mut bad = version.clone();
        bad.spec.revision = 0;
        bad.spec.version = "yesterday".into();
        let errors = bad.validate().unwrap_err();
        let fields: Vec<String> = errors.iter().map(|e| e.field.clone()).collect();
        assert!(fields.contains(&"spec.revision".to_owned()), "{fields:?}");
        assert!(fields.contains(&"spec.version".to_owned()), "{fields:?}");
        let mut changed = version.clone();
        changed.spec.revision = 2;
        assert!(changed.validate_update(&version).is_err());
    }
}

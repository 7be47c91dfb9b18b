//! Query parameters of the REST API, parsed once per request into typed values (`watch`,
//! `resourceVersion`, selectors, `limit`/`continue`, `dryRun`, `fieldValidation`, …); a
//! malformed value is a 400 `BadRequest` naming the parameter.

use std::time::Duration;

use axum::extract::Query;
use axum::http::Uri;
use pacer_store::Revision;
use serde::Deserialize;

use crate::error::ApiError;
use crate::selector::{self, FieldSelector, LabelSelector};

/// How to treat fields the schema does not know (`fieldValidation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Reject the request, naming every unknown field (400).
    #[default]
    Strict,
    /// Drop unknown fields and say so in `Warning` headers.
    Warn,
    /// Drop unknown fields silently.
    Ignore,
}

impl FieldValidation {
    /// Parses `Strict`, `Warn` or `Ignore` (as Kubernetes spells them).
    pub fn parse(value: &str) -> Result<Self, ApiError> {
        match value {
            "Strict" => Ok(Self::Strict),
            "Warn" => Ok(Self::Warn),
            "Ignore" => Ok(Self::Ignore),
            other => Err(ApiError::BadRequest(format!(
                "fieldValidation: unsupported value {other:?}: supported values are \"Ignore\", \"Warn\", \"Strict\""
            ))),
        }
    }
}

/// The raw query string, field by field (every value optional, parsed by [`Params::parse`]).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawParams {
    watch: Option<String>,
    resource_version: Option<String>,
    resource_version_match: Option<String>,
    allow_watch_bookmarks: Option<String>,
    send_initial_events: Option<String>,
    timeout_seconds: Option<String>,
    label_selector: Option<String>,
    field_selector: Option<String>,
    limit: Option<String>,
    #[serde(rename = "continue")]
    continue_token: Option<String>,
    dry_run: Option<String>,
    field_validation: Option<String>,
    field_manager: Option<String>,
    force: Option<String>,
    propagation_policy: Option<String>,
}

/// Every query parameter the API understands, parsed.
#[derive(Debug, Default)]
pub struct Params {
    /// `watch=true|1`.
    pub watch: bool,
    /// `resourceVersion`: unset or `"0"` is `None` (start from the current state).
    pub resource_version: Option<Revision>,
    /// Whether `resourceVersion` was given as `"0"` (any version) rather than omitted.
    pub resource_version_zero: bool,
    /// `resourceVersionMatch=Exact`: list at exactly `resourceVersion`.
    pub resource_version_exact: bool,
    /// `allowWatchBookmarks=true`.
    pub allow_watch_bookmarks: bool,
    /// `sendInitialEvents=true`.
    pub send_initial_events: bool,
    /// `timeoutSeconds`.
    pub timeout: Option<Duration>,
    /// `labelSelector`.
    pub label_selector: LabelSelector,
    /// `fieldSelector`.
    pub field_selector: FieldSelector,
    /// `limit` (0: no limit).
    pub limit: usize,
    /// `continue`.
    pub continue_token: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `fieldValidation`, when given.
    pub field_validation: Option<FieldValidation>,
    /// `fieldManager`, when given.
    pub field_manager: Option<String>,
    /// `force=true` (server-side apply).
    pub force: bool,
    /// `propagationPolicy` (DELETE), when given as a query parameter.
    pub propagation_policy: Option<String>,
}

impl Params {
    /// Parses the query of `uri`.
    pub fn parse(uri: &Uri) -> Result<Self, ApiError> {
        let Query(raw) = Query::<RawParams>::try_from_uri(uri)
            .map_err(|error| ApiError::BadRequest(format!("malformed query: {error}")))?;
        let resource_version = match raw.resource_version.as_deref() {
            None | Some("" | "0") => None,
            Some(text) => Some(parse_revision(text)?),
        };
        if raw.resource_version_match.is_some() && raw.resource_version.is_none() {
            return Err(ApiError::BadRequest(
                "resourceVersionMatch is forbidden unless resourceVersion is provided".to_owned(),
            ));
        }
        if let Some(matching) = raw.resource_version_match.as_deref()
            && !matches!(matching, "NotOlderThan" | "Exact")
        {
            return Err(ApiError::BadRequest(format!(
                "resourceVersionMatch: unsupported value {matching:?}"
            )));
        }
        Ok(Self {
            watch: flag("watch", raw.watch.as_deref())?,
            resource_version,
            resource_version_zero: raw.resource_version.as_deref() == Some("0"),
            resource_version_exact: raw.resource_version_match.as_deref() == Some("Exact"),
            allow_watch_bookmarks: flag(
                "allowWatchBookmarks",
                raw.allow_watch_bookmarks.as_deref(),
            )?,
            send_initial_events: flag("sendInitialEvents", raw.send_initial_events.as_deref())?,
            timeout: raw
                .timeout_seconds
                .as_deref()
                .map(|text| number::<u64>("timeoutSeconds", text).map(Duration::from_secs))
                .transpose()?,
            label_selector: selector::parse_labels(raw.label_selector.as_deref().unwrap_or(""))?,
            field_selector: FieldSelector::parse(raw.field_selector.as_deref().unwrap_or(""))?,
            limit: raw
                .limit
                .as_deref()
                .map(|text| number::<usize>("limit", text))
                .transpose()?
                .unwrap_or(0),
            continue_token: raw.continue_token.filter(|token| !token.is_empty()),
            dry_run: match raw.dry_run.as_deref() {
                None | Some("") => false,
                Some("All") => true,
                Some(other) => {
                    return Err(ApiError::BadRequest(format!(
                        "dryRun: unsupported value {other:?}: supported values are \"All\""
                    )));
                }
            },
            field_validation: raw
                .field_validation
                .as_deref()
                .filter(|value| !value.is_empty())
                .map(FieldValidation::parse)
                .transpose()?,
            field_manager: raw.field_manager.filter(|manager| !manager.is_empty()),
            force: flag("force", raw.force.as_deref())?,
            propagation_policy: raw.propagation_policy.filter(|policy| !policy.is_empty()),
        })
    }
}

/// Parses a `resourceVersion` (a store revision).
pub fn parse_revision(text: &str) -> Result<Revision, ApiError> {
    text.parse::<Revision>()
        .ok()
        .filter(|revision| *revision >= 0)
        .ok_or_else(|| ApiError::BadRequest(format!("invalid resource version {text:?}")))
}

fn flag(name: &str, value: Option<&str>) -> Result<bool, ApiError> {
    match value {
        None | Some("" | "false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(other) => Err(ApiError::BadRequest(format!(
            "{name}: invalid boolean {other:?}"
        ))),
    }
}

fn number<T: std::str::FromStr>(name: &str, text: &str) -> Result<T, ApiError> {
    text.parse()
        .map_err(|_| ApiError::BadRequest(format!("{name}: invalid number {text:?}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<Params, ApiError> {
        Params::parse(&format!("/x?{query}").parse().unwrap())
    }

    #[test]
    fn parses_watch_parameters() {
        let params = parse(
            "watch=1&resourceVersion=17&allowWatchBookmarks=true&timeoutSeconds=5&labelSelector=app%3Dweb",
        )
        .unwrap();
        assert!(params.watch && params.allow_watch_bookmarks);
        assert_eq!(params.resource_version, Some(17));
        assert_eq!(params.timeout, Some(Duration::from_secs(5)));
        assert!(!params.label_selector.is_empty());
        let zero = parse("watch=true&resourceVersion=0").unwrap();
        assert_eq!(zero.resource_version, None);
        assert!(zero.resource_version_zero);
    }

    #[test]
    fn rejects_bad_values() {
        for query in [
            "watch=maybe",
            "limit=-1",
            "resourceVersion=abc",
            "dryRun=Some",
            "fieldValidation=strict",
            "resourceVersionMatch=Exact",
            "timeoutSeconds=x",
        ] {
            let error = parse(query).unwrap_err();
            assert_eq!(error.to_status().http_code(), 400, "{query}");
        }
        let params = parse("dryRun=All&fieldValidation=Warn&limit=2&continue=abc").unwrap();
        assert!(params.dry_run);
        assert_eq!(params.field_validation, Some(FieldValidation::Warn));
        assert_eq!(params.limit, 2);
        assert_eq!(params.continue_token.as_deref(), Some("abc"));
    }
}

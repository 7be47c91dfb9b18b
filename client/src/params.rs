//! Options of the API calls — list paging and selectors, watch, dry-run and field manager on
//! writes, delete options — and how each becomes query parameters or a body.

use pacer_schemas::Status;
use serde::Serialize;

/// Options of a list: selectors and paging.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct ListParams {
    /// `labelSelector`, e.g. `app=web,tier in (a,b)`.
    pub label_selector: Option<String>,
    /// `fieldSelector`, e.g. `metadata.name=web`.
    pub field_selector: Option<String>,
    /// Page size; the server answers a `continue` token when more remain.
    pub limit: Option<u32>,
    /// Token from the previous page's `metadata.continue`.
    pub continue_token: Option<String>,
}

impl ListParams {
    /// Filters by a label selector.
    pub fn labels(mut self, selector: impl Into<String>) -> Self {
        self.label_selector = Some(selector.into());
        self
    }

    /// Filters by a field selector.
    pub fn fields(mut self, selector: impl Into<String>) -> Self {
        self.field_selector = Some(selector.into());
        self
    }

    /// Limits the page size.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Continues from a previous page.
    pub fn continue_token(mut self, token: impl Into<String>) -> Self {
        self.continue_token = Some(token.into());
        self
    }

    pub(crate) fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        push_some(&mut query, "labelSelector", self.label_selector.as_deref());
        push_some(&mut query, "fieldSelector", self.field_selector.as_deref());
        if let Some(limit) = self.limit {
            query.push(("limit", limit.to_string()));
        }
        push_some(&mut query, "continue", self.continue_token.as_deref());
        query
    }
}

/// Options of a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct WatchParams {
    /// `labelSelector`.
    pub label_selector: Option<String>,
    /// `fieldSelector`.
    pub field_selector: Option<String>,
    /// Ask the server to end the stream after this many seconds (it may end it earlier).
    pub timeout_seconds: Option<u32>,
    /// Accept `BOOKMARK` events (default true).
    pub bookmarks: bool,
}

impl Default for WatchParams {
    fn default() -> Self {
        Self {
            label_selector: None,
            field_selector: None,
            timeout_seconds: Some(290),
            bookmarks: true,
        }
    }
}

impl WatchParams {
    /// Filters by a label selector.
    pub fn labels(mut self, selector: impl Into<String>) -> Self {
        self.label_selector = Some(selector.into());
        self
    }

    /// Filters by a field selector.
    pub fn fields(mut self, selector: impl Into<String>) -> Self {
        self.field_selector = Some(selector.into());
        self
    }

    /// Sets the server-side timeout.
    pub fn timeout(mut self, seconds: u32) -> Self {
        self.timeout_seconds = Some(seconds);
        self
    }

    /// Refuses bookmarks.
    pub fn disable_bookmarks(mut self) -> Self {
        self.bookmarks = false;
        self
    }

    pub(crate) fn query(&self, resource_version: &str) -> Vec<(&'static str, String)> {
        let mut query = vec![("watch", "true".to_owned())];
        if !resource_version.is_empty() {
            query.push(("resourceVersion", resource_version.to_owned()));
        }
        push_some(&mut query, "labelSelector", self.label_selector.as_deref());
        push_some(&mut query, "fieldSelector", self.field_selector.as_deref());
        if let Some(seconds) = self.timeout_seconds {
            query.push(("timeoutSeconds", seconds.to_string()));
        }
        if self.bookmarks {
            query.push(("allowWatchBookmarks", "true".to_owned()));
        }
        query
    }
}

/// Options of a create or replace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct PostParams {
    /// Run the whole write path on the server without persisting (`dryRun=All`).
    pub dry_run: bool,
    /// `fieldManager` recorded by the server.
    pub field_manager: Option<String>,
}

impl PostParams {
    /// Sets `dryRun=All`.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Sets the field manager.
    pub fn field_manager(mut self, manager: impl Into<String>) -> Self {
        self.field_manager = Some(manager.into());
        self
    }

    pub(crate) fn query(&self) -> Vec<(&'static str, String)> {
        write_query(self.dry_run, self.field_manager.as_deref())
    }
}

/// Options of a patch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct PatchParams {
    /// Run the whole write path on the server without persisting (`dryRun=All`).
    pub dry_run: bool,
    /// `fieldManager` recorded by the server.
    pub field_manager: Option<String>,
}

impl PatchParams {
    /// Sets `dryRun=All`.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Sets the field manager.
    pub fn field_manager(mut self, manager: impl Into<String>) -> Self {
        self.field_manager = Some(manager.into());
        self
    }

    pub(crate) fn query(&self) -> Vec<(&'static str, String)> {
        write_query(self.dry_run, self.field_manager.as_deref())
    }
}

/// How dependents of a deleted object are deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum PropagationPolicy {
    /// Leave dependents.
    Orphan,
    /// Delete the object now, dependents in the background.
    Background,
    /// Delete dependents first.
    Foreground,
}

/// Conditions the object must meet for a delete to happen.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Preconditions {
    /// Only if the object still has this `resourceVersion`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Only if the object still has this `uid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// Options of a delete, sent as a `DeleteOptions` body (as kubectl and kube-rs do) and
/// `dryRun=All` in the query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct DeleteParams {
    /// Run the delete without persisting.
    pub dry_run: bool,
    /// How dependents go.
    pub propagation_policy: Option<PropagationPolicy>,
    /// Seconds of grace before the object is removed.
    pub grace_period_seconds: Option<i64>,
    /// Conditions for the delete.
    pub preconditions: Option<Preconditions>,
}

impl DeleteParams {
    /// Sets `dryRun=All`.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Sets the propagation policy.
    pub fn propagation(mut self, policy: PropagationPolicy) -> Self {
        self.propagation_policy = Some(policy);
        self
    }

    /// Deletes only if the object still has `resource_version`.
    pub fn if_resource_version(mut self, resource_version: impl Into<String>) -> Self {
        self.preconditions
            .get_or_insert_with(Preconditions::default)
            .resource_version = Some(resource_version.into());
        self
    }

    pub(crate) fn query(&self) -> Vec<(&'static str, String)> {
        write_query(self.dry_run, None)
    }

    pub(crate) fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({"kind": "DeleteOptions", "apiVersion": "v1"});
        if let Some(map) = body.as_object_mut() {
            if self.dry_run {
                map.insert("dryRun".into(), serde_json::json!(["All"]));
            }
            if let Some(policy) = self.propagation_policy {
                map.insert("propagationPolicy".into(), serde_json::json!(policy));
            }
            if let Some(seconds) = self.grace_period_seconds {
                map.insert("gracePeriodSeconds".into(), serde_json::json!(seconds));
            }
            if let Some(preconditions) = &self.preconditions {
                map.insert("preconditions".into(), serde_json::json!(preconditions));
            }
        }
        body
    }
}

/// What a delete answered: the object (possibly still present with a `deletionTimestamp`
/// while finalizers run), or a `Success` status.
#[derive(Clone, Debug, PartialEq)]
pub enum Deleted<T> {
    /// The deleted (or deleting) object.
    Object(T),
    /// A status instead of the object.
    Status(Box<Status>),
}

fn write_query(dry_run: bool, field_manager: Option<&str>) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    if dry_run {
        query.push(("dryRun", "All".to_owned()));
    }
    push_some(&mut query, "fieldManager", field_manager);
    query
}

fn push_some(query: &mut Vec<(&'static str, String)>, key: &'static str, value: Option<&str>) {
    if let Some(value) = value.filter(|value| !value.is_empty()) {
        query.push((key, value.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_become_query_pairs() {
        let list = ListParams::default()
            .labels("a=b")
            .limit(5)
            .continue_token("t");
        assert_eq!(
            list.query(),
            vec![
                ("labelSelector", "a=b".to_owned()),
                ("limit", "5".to_owned()),
                ("continue", "t".to_owned())
            ]
        );
        let watch = WatchParams::default()
            .fields("metadata.name=web")
            .timeout(5);
        assert_eq!(
            watch.query("12"),
            vec![
                ("watch", "true".to_owned()),
                ("resourceVersion", "12".to_owned()),
                ("fieldSelector", "metadata.name=web".to_owned()),
                ("timeoutSeconds", "5".to_owned()),
                ("allowWatchBookmarks", "true".to_owned())
            ]
        );
        assert_eq!(
            PostParams::default()
                .dry_run(true)
                .field_manager("pacer")
                .query(),
            vec![
                ("dryRun", "All".to_owned()),
                ("fieldManager", "pacer".to_owned())
            ]
        );
        assert_eq!(
            DeleteParams::default()
                .dry_run(true)
                .propagation(PropagationPolicy::Background)
                .body(),
            serde_json::json!({"kind": "DeleteOptions", "apiVersion": "v1",
                "dryRun": ["All"], "propagationPolicy": "Background"})
        );
    }
}

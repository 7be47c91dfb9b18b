//! Writing a group's [`Change`]s: every App change is first run through the shared write path
//! as a dry run (`rest::write::create_value`, `guaranteed_update`, `rest::delete::delete` with
//! `dryRun`: the same decode, defaults, validation, generation, `managedFields` and finalizer
//! rules as any write), the deployment lock is checked for all of them, and only then are the
//! resulting objects committed — in one store transaction, a compare-and-swap per App (absent
//! for a create, its `mod_revision` otherwise), so a group of up to [`CHANGES_PER_TXN`] apps
//! changes atomically and an invalid or locked app writes nothing. Every app the change
//! creates or whose spec it changes asks for one version (`REQUESTED_VERSION_ANNOTATION`), so
//! the deployment controller gives the whole group change a single version, as Marathon does.
//!
//! A larger group is committed in several such transactions, one after the other: a failure
//! between two of them leaves the earlier ones written. Changes are idempotent (a create of an
//! app that exists by then replaces it, a delete of a missing app is nothing), so a lost race
//! is retried from fresh reads, up to [`MAX_ATTEMPTS`] times, and a retry completes what an
//! earlier attempt began.

use std::collections::BTreeSet;

use axum::body::Body;
use pacer_schemas::app_version::{REQUESTED_VERSION_ANNOTATION, requested_version_value};
use pacer_schemas::dependency::{cycle_text, cycle_through};
use pacer_schemas::{App, MarathonId};
use pacer_store::key::MAX_TXN_OPS;
use pacer_store::{Expect, Revision, Txn, TxnOutcome};
use serde_json::{Value, json};

use super::plan::{Change, at_path};
use crate::marathon::app_json::{self, AppDefinition};
use crate::marathon::error::MarathonError;
use crate::marathon::{app_request, apps, deployments};
use crate::object;
use crate::rest::{ResourceRequest, Subresource, delete, write};
use crate::state::ApiState;

/// App changes per transaction: one compare and one write each, within the store's limit.
pub const CHANGES_PER_TXN: usize = MAX_TXN_OPS;

/// Bytes of App JSON per transaction (the store allows a little more than 1.5 MiB).
const BYTES_PER_TXN: usize = 1024 * 1024;

/// Attempts before a group write that keeps losing races gives up (409).
pub const MAX_ATTEMPTS: usize = 5;

/// The write one change comes to.
#[derive(Debug)]
enum Write {
    Put(Vec<u8>),
    Delete,
}

/// One change, admitted and ready to commit.
#[derive(Debug)]
struct Prepared {
    id: MarathonId,
    key: String,
    expect: Expect,
    write: Write,
    /// The App's `status.deployments` before the change.
    before: Vec<String>,
    /// The App's `metadata.generation` after the change (none for a delete).
    generation: Option<i64>,
    /// The uid of an App that goes at once (no finalizer): its dependents are deleted after.
    gone_uid: Option<String>,
    /// Marathon's name of the deployment action (for `dryRun`).
    action: &'static str,
    /// The JSON path of the app in the request body (`""` when the body does not name it).
    path: String,
}

/// What a group write did.
#[derive(Debug)]
pub enum Applied {
    /// `dryRun`: the plan, `{"steps": [{"actions": […]}]}`.
    Plan(Value),
    /// Written: Marathon's `{deploymentId, version}`.
    Written {
        /// A deployment the write started (the first app's), or a fresh id.
        deployment: String,
        /// The newest version among the changed apps.
        version: String,
    },
}

/// Admits, lock-checks and commits `changes` (see the module doc).
pub async fn apply(
    state: &ApiState,
    changes: &[Change],
    force: bool,
    dry_run: bool,
) -> Result<Applied, MarathonError> {
    for attempt in 1..=MAX_ATTEMPTS {
        // One version for every app the change touches, as Marathon gives a group change.
        let version = app_json::now_version();
        let prepared = prepare_all(state, changes, &version, force, dry_run).await?;
        if dry_run {
            let actions: Vec<Value> = prepared
                .iter()
                .map(|change| json!({"action": change.action, "app": change.id.to_string()}))
                .collect();
            let steps = if actions.is_empty() {
                json!([])
            } else {
                json!([{"actions": actions}])
            };
            return Ok(Applied::Plan(json!({"steps": steps})));
        }
        if commit(state, &prepared).await? {
            tracing::info!(
                apps = prepared.len(),
                attempt,
                "group change committed through /v2/groups"
            );
            return Ok(finish(state, &prepared).await);
        }
        tracing::debug!(
            attempt,
            "a group write lost a race; retrying from fresh reads"
        );
    }
    Err(MarathonError::Conflict(
        "the apps of the group kept changing while the group was written; retry".to_owned(),
    ))
}

/// Runs every change through the write path as a dry run; refuses (409) when any App that
/// would change is locked by a running deployment and `force` is not set.
async fn prepare_all(
    state: &ApiState,
    changes: &[Change],
    version: &str,
    force: bool,
    dry_run: bool,
) -> Result<Vec<Prepared>, MarathonError> {
    let mut prepared = Vec::with_capacity(changes.len());
    let mut locked = BTreeSet::new();
    for change in changes {
        if let Some(ready) = prepare(state, change, version, force, dry_run, &mut locked).await? {
            prepared.push(ready);
        }
    }
    if !locked.is_empty() {
        return Err(MarathonError::Locked {
            deployments: locked.into_iter().collect(),
        });
    }
    check_cycles(state, &prepared).await?;
    Ok(prepared)
}

/// Refuses (422 on the app's `dependencies`) a group write whose apps, together with the
/// other stored Apps, close a dependency cycle. The write path checks each App against the
/// stored ones; this sees the apps of the same request too.
async fn check_cycles(state: &ApiState, prepared: &[Prepared]) -> Result<(), MarathonError> {
    let written: Vec<(&Prepared, App)> = prepared
        .iter()
        .filter_map(|change| match &change.write {
            Write::Put(bytes) => Some((change, serde_json::from_slice::<App>(bytes).ok()?)),
            Write::Delete => None,
        })
        .collect();
    let has_dependencies = |app: &App| {
        app.metadata.deletion_timestamp.is_none()
            && app
                .spec
                .dependencies
                .as_ref()
                .is_some_and(|list| !list.is_empty())
    };
    if !written.iter().any(|(_, app)| has_dependencies(app)) {
        return Ok(());
    }
    let changed: BTreeSet<&MarathonId> = prepared.iter().map(|change| &change.id).collect();
    let mut apps: Vec<App> = apps::list_apps(state)
        .await?
        .into_iter()
        .filter(|app| app_json::app_id(app).is_ok_and(|id| !changed.contains(&id)))
        .collect();
    apps.extend(written.iter().map(|(_, app)| app.clone()));
    for (change, app) in &written {
        if !has_dependencies(app) {
            continue;
        }
        let namespace = app.metadata.namespace_str();
        if let Some(cycle) = cycle_through(&apps, namespace, app.metadata.name_str()) {
            return Err(MarathonError::invalid(
                &format!("{}/dependencies", change.path),
                format!("dependency cycle: {}", cycle_text(&cycle)),
            ));
        }
    }
    Ok(())
}

/// One change through the write path (dry run); `None` when it changes nothing. A created
/// App, or one whose spec changes, asks for `version` ([`REQUESTED_VERSION_ANNOTATION`]).
async fn prepare(
    state: &ApiState,
    change: &Change,
    version: &str,
    force: bool,
    dry_run: bool,
    locked: &mut BTreeSet<String>,
) -> Result<Option<Prepared>, MarathonError> {
    let id = change.id();
    let request = dry_run_request(state, id, force)?;
    let key = request.key();
    let current = match state.store.get(&key).await? {
        Some(kv) => Some(object::from_store(&kv).map_err(MarathonError::from)?),
        None => None,
    };
    let check_lock = !force && !dry_run;
    match (change, current) {
        (Change::Put { fields, path, .. }, None) => {
            let definition = AppDefinition {
                id: id.clone(),
                fields: fields.clone(),
            };
            let mut object =
                app_json::to_object(&definition).map_err(|error| at_path(error, path))?;
            object::set_annotation(
                &mut object,
                REQUESTED_VERSION_ANNOTATION,
                &requested_version_value(1, version),
            )
            .map_err(|error| at_path(MarathonError::from_api(error, &id.to_string()), path))?;
            let written = write::create_value(&request, object, None)
                .await
                .map_err(|error| at_path(MarathonError::from_api(error, &id.to_string()), path))?;
            Ok(Some(Prepared {
                id: id.clone(),
                key,
                expect: Expect::Absent,
                write: Write::Put(object::to_store(&written.object).map_err(MarathonError::from)?),
                before: Vec::new(),
                generation: Some(1),
                gone_uid: None,
                action: "StartApplication",
                path: path.clone(),
            }))
        }
        (Change::Put { fields, path, .. }, Some(current)) => {
            let update = Update {
                request: &request,
                current: &current,
                fields,
                partial: false,
                path,
                version,
            };
            update.prepare(check_lock, locked).await
        }
        (Change::Merge { fields, .. }, Some(current)) => {
            let update = Update {
                request: &request,
                current: &current,
                fields,
                partial: true,
                path: "",
                version,
            };
            update.prepare(check_lock, locked).await
        }
        (Change::Delete { .. }, Some(current)) => {
            prepare_delete(request, current, check_lock, locked).await
        }
        (Change::Merge { .. } | Change::Delete { .. }, None) => Ok(None),
    }
}

/// An update of a stored App with `fields` (over its spec when `partial`).
struct Update<'a> {
    request: &'a ResourceRequest,
    current: &'a Value,
    fields: &'a serde_json::Map<String, Value>,
    partial: bool,
    path: &'a str,
    /// The version a spec change asks for.
    version: &'a str,
}

impl Update<'_> {
    async fn prepare(
        &self,
        check_lock: bool,
        locked: &mut BTreeSet<String>,
    ) -> Result<Option<Prepared>, MarathonError> {
        let id = app_json::app_id(&apps::decode_app(self.current)?)?;
        // With the version asked for first; a change that leaves the spec alone asks for
        // none (it makes no new version), and may then change nothing at all.
        let mut new = self.dry_run(&id, Some(self.version)).await?;
        if new.get("spec") == self.current.get("spec") {
            new = self.dry_run(&id, None).await?;
        }
        if &new == self.current {
            return Ok(None);
        }
        let old_spec = self.current.get("spec");
        let new_spec = new.get("spec");
        if check_lock && old_spec != new_spec {
            locked.extend(running_deployments(self.request, self.current).await?);
        }
        let scale_only = match (old_spec, new_spec) {
            (Some(Value::Object(old)), Some(Value::Object(new))) => {
                let mut old = old.clone();
                let mut new = new.clone();
                old.remove("instances");
                new.remove("instances");
                old == new
            }
            _ => false,
        };
        Ok(Some(Prepared {
            id,
            key: self.request.key(),
            expect: Expect::ModRevision(revision_of(&new)?),
            write: Write::Put(object::to_store(&new).map_err(MarathonError::from)?),
            before: apps::deployments_of(self.current),
            generation: object::meta(&new).map_err(MarathonError::from)?.generation,
            gone_uid: None,
            action: if scale_only {
                "ScaleApplication"
            } else {
                "RestartApplication"
            },
            path: self.path.to_owned(),
        }))
    }

    /// The updated App as the write path would store it, asking for `version` (for the
    /// generation a spec change gives it) if given.
    async fn dry_run(
        &self,
        id: &MarathonId,
        version: Option<&str>,
    ) -> Result<Value, MarathonError> {
        let written = write::guaranteed_update(self.request, Subresource::Main, false, |stored| {
            let mut new = app_json::updated_object(stored, self.fields, self.partial);
            if let Some(version) = version {
                let next = object::meta(stored)?.generation.unwrap_or(0) + 1;
                object::set_annotation(
                    &mut new,
                    REQUESTED_VERSION_ANNOTATION,
                    &requested_version_value(next, version),
                )?;
            }
            Ok(new)
        })
        .await
        .map_err(|error| at_path(MarathonError::from_api(error, &id.to_string()), self.path))?;
        Ok(written.object)
    }
}

/// A delete of a stored App: marked with `deletionTimestamp` while finalizers remain (the
/// deployment controller stops its instances), else removed and its dependents after it.
async fn prepare_delete(
    request: ResourceRequest,
    current: Value,
    check_lock: bool,
    locked: &mut BTreeSet<String>,
) -> Result<Option<Prepared>, MarathonError> {
    let app = apps::decode_app(&current)?;
    let id = app_json::app_id(&app)?;
    if app.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    if check_lock {
        locked.extend(running_deployments(&request, &current).await?);
    }
    let key = request.key();
    let response = delete::delete(request, Body::empty())
        .await
        .map_err(|error| MarathonError::from_api(error, &id.to_string()))?;
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .map_err(|error| MarathonError::internal(format!("read a dry-run delete: {error}")))?;
    let marked: Value = serde_json::from_slice(&bytes)
        .map_err(|error| MarathonError::internal(format!("decode a dry-run delete: {error}")))?;
    let expect = Expect::ModRevision(revision_of(&current)?);
    let before = apps::deployments_of(&current);
    let prepared = if marked.pointer("/metadata/deletionTimestamp").is_some() {
        Prepared {
            id,
            key,
            expect,
            write: Write::Put(object::to_store(&marked).map_err(MarathonError::from)?),
            before,
            generation: None,
            gone_uid: None,
            action: "StopApplication",
            path: String::new(),
        }
    } else {
        Prepared {
            id,
            key,
            expect,
            write: Write::Delete,
            before,
            generation: None,
            gone_uid: Some(object::uid(&current).to_owned()),
            action: "StopApplication",
            path: String::new(),
        }
    };
    Ok(Some(prepared))
}

/// Commits the prepared writes, [`CHANGES_PER_TXN`] (and [`BYTES_PER_TXN`]) per transaction;
/// `false` when a compare failed (that transaction wrote nothing).
async fn commit(state: &ApiState, prepared: &[Prepared]) -> Result<bool, MarathonError> {
    let mut txn = Txn::new();
    let mut bytes = 0usize;
    for change in prepared {
        let size = match &change.write {
            Write::Put(value) => value.len(),
            Write::Delete => 0,
        };
        if !txn.ops.is_empty() && (txn.ops.len() >= CHANGES_PER_TXN || bytes + size > BYTES_PER_TXN)
        {
            if !send(state, std::mem::take(&mut txn)).await? {
                return Ok(false);
            }
            bytes = 0;
        }
        txn = txn.when(change.key.clone(), change.expect);
        txn = match &change.write {
            Write::Put(value) => txn.put(change.key.clone(), value.clone()),
            Write::Delete => txn.delete(change.key.clone()),
        };
        bytes += size;
    }
    if txn.ops.is_empty() {
        return Ok(true);
    }
    send(state, txn).await
}

async fn send(state: &ApiState, txn: Txn) -> Result<bool, MarathonError> {
    let count = txn.ops.len();
    match state.store.txn(txn).await? {
        TxnOutcome::Committed { revision } => {
            tracing::debug!(revision, apps = count, "group transaction committed");
            Ok(true)
        }
        TxnOutcome::CompareFailed { revision, .. } => {
            tracing::debug!(revision, apps = count, "group transaction lost a race");
            Ok(false)
        }
    }
}

/// After the commit: deletes what removed Apps owned, and waits for the deployments the
/// changes start (all at once); answers the first app's deployment and the newest version.
async fn finish(state: &ApiState, prepared: &[Prepared]) -> Applied {
    for change in prepared {
        if let Some(uid) = &change.gone_uid
            && let Ok(request) = app_request(state, &change.id, false)
        {
            delete::cascade(&request, uid).await;
        }
    }
    let started = futures::future::join_all(prepared.iter().map(|change| {
        deployments::started_by_write(state, &change.key, &change.before, change.generation)
    }))
    .await;
    let version = started
        .iter()
        .map(|(_, version)| version.clone())
        .max()
        .unwrap_or_else(app_json::now_version);
    let deployment = started
        .into_iter()
        .next()
        .map(|(deployment, _)| deployment)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    Applied::Written {
        deployment,
        version,
    }
}

/// A request of the shared write path for the App `id` that writes nothing.
fn dry_run_request(
    state: &ApiState,
    id: &MarathonId,
    force: bool,
) -> Result<ResourceRequest, MarathonError> {
    let mut request = app_request(state, id, force)?;
    request.params.dry_run = true;
    Ok(request)
}

async fn running_deployments(
    request: &ResourceRequest,
    current: &Value,
) -> Result<Vec<String>, MarathonError> {
    crate::deployment_lock::running_deployments(request, current)
        .await
        .map_err(MarathonError::from)
}

fn revision_of(object: &Value) -> Result<Revision, MarathonError> {
    object::resource_version(object)
        .and_then(|version| version.parse().ok())
        .ok_or_else(|| {
            MarathonError::internal("an App read from the store has no resourceVersion".to_owned())
        })
}

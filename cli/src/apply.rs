//! `pacer apply -f FILE|DIR|-`: create or update each object of the manifests, kubectl's
//! client-side apply way — GET; absent → POST; present → a three-way JSON merge patch (see
//! `merge.rs`) carrying the fetched `resourceVersion` as a precondition, retried on 409
//! Conflict; nothing to change → no request. Prints `app.pacer.dev/web created|configured|
//! unchanged`, and with `--prune -l SELECTOR` deletes the objects of the applied kinds that
//! match the selector, were created by apply, and are no longer in the manifests.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context as _, bail};
use pacer_client::{
    Client, DeleteParams, Deleted, DynamicApi, LabelSelector, ListParams, PatchParams, PostParams,
    ResourceInfo,
};
use serde_json::Value;

use crate::config::{ConnectArgs, Settings};
use crate::manifest::{self, Manifest};
use crate::merge;
use crate::output::{self, Outcome, OutputFormat};

/// The field manager recorded for pacer's writes.
pub(crate) const FIELD_MANAGER: &str = "pacer-client-side-apply";

/// How often a write that lost a race (409) is retried after re-reading the object.
const ATTEMPTS: u32 = 5;

/// Options of `pacer apply`.
#[derive(Debug, clap::Args)]
pub(crate) struct ApplyArgs {
    /// Manifest file, directory (its *.yaml, *.yml, *.json files) or `-` for standard input;
    /// repeatable.
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
    pub(crate) files: Vec<String>,
    /// `server`: send every write with dryRun=All (the server validates and defaults, nothing
    /// is stored); `client`: only compute what would be sent; `none`: apply.
    #[arg(long, value_enum, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub(crate) dry_run: DryRun,
    /// Apply only the objects whose labels match, e.g. `app=web,tier in (a,b)`.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub(crate) selector: Option<String>,
    /// Delete objects of the applied kinds that match --selector, were created by apply, and
    /// are not in the manifests.
    #[arg(long, requires = "selector")]
    pub(crate) prune: bool,
    /// Print the applied objects instead of one line each.
    #[arg(short = 'o', long, value_enum)]
    pub(crate) output: Option<OutputFormat>,
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
}

/// `--dry-run` modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DryRun {
    /// Apply.
    None,
    /// Compute locally, send no write.
    Client,
    /// Send writes with dryRun=All.
    Server,
}

impl DryRun {
    /// The suffix kubectl prints after the action.
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Client => " (dry run)",
            Self::Server => " (server dry run)",
        }
    }
}

/// What apply did to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// It was absent and was created.
    Created,
    /// It was patched.
    Configured,
    /// Nothing needed to change.
    Unchanged,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Configured => "configured",
            Self::Unchanged => "unchanged",
        }
    }
}

/// What applying one object would do, before any write: the live object and the patch.
pub(crate) struct Plan {
    /// The live object, if it exists.
    pub(crate) live: Option<Value>,
    /// The object to create, or the merge patch for an existing one (empty: unchanged).
    pub(crate) body: Value,
}

/// Runs `pacer apply`.
pub(crate) async fn run(args: ApplyArgs) -> anyhow::Result<Outcome> {
    let selector = args
        .selector
        .as_deref()
        .map(LabelSelector::parse)
        .transpose()?;
    let mut manifests = manifest::load(&args.files)?;
    if let Some(selector) = &selector {
        manifests.retain(|manifest| selector.matches(Some(&manifest.labels())));
    }
    if manifests.is_empty() && !args.prune {
        bail!("no objects passed to apply");
    }
    let (client, settings) = args.connect.connect()?;
    let mut failed = false;
    let mut applied = BTreeSet::new();
    let mut visited = BTreeSet::new();
    let mut printed = Vec::new();
    for manifest in &manifests {
        let result = apply_one(&client, &settings, manifest, args.dry_run)
            .await
            .with_context(|| {
                format!(
                    "error when applying {} from {}",
                    manifest.display_name(),
                    manifest.origin()
                )
            });
        match result {
            Ok((action, object, namespace)) => {
                applied.insert((
                    manifest.resource.plural,
                    namespace.clone(),
                    manifest.name().to_owned(),
                ));
                visited.insert((manifest.resource.plural, namespace));
                if args.output.is_some() {
                    printed.push(object);
                } else {
                    println!(
                        "{} {}{}",
                        manifest.display_name(),
                        action.as_str(),
                        args.dry_run.suffix()
                    );
                }
            }
            Err(error) => {
                failed = true;
                eprintln!("{}", output::render_error(&error));
            }
        }
    }
    if let Some(format) = args.output {
        print_objects(format, printed)?;
    }
    if failed {
        return Ok(Outcome::Failed);
    }
    if args.prune
        && let Some(selector) = &selector
    {
        return prune(&client, selector, &visited, &applied, args.dry_run).await;
    }
    Ok(Outcome::Success)
}

/// Applies one manifest; returns what happened, the resulting object and its namespace.
async fn apply_one(
    client: &Client,
    settings: &Settings,
    manifest: &Manifest,
    dry_run: DryRun,
) -> anyhow::Result<(Action, Value, Option<String>)> {
    let namespace = target_namespace(manifest, settings)?;
    let api = api_for(client, &manifest.resource, namespace.as_deref());
    let modified = merge::prepare(&manifest.object, namespace.as_deref());
    let mut attempt = 0;
    loop {
        attempt += 1;
        let plan = plan(&api, manifest.name(), &modified).await?;
        let result = execute(&api, manifest.name(), &plan, dry_run).await;
        match result {
            Ok((action, object)) => return Ok((action, object, namespace)),
            Err(error)
                if attempt < ATTEMPTS && (error.is_conflict() || error.is_already_exists()) =>
            {
                tracing::debug!(object = %manifest.display_name(), attempt, %error, "retrying apply");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Reads the live object and computes the body to send.
pub(crate) async fn plan(
    api: &DynamicApi,
    name: &str,
    modified: &Value,
) -> pacer_client::Result<Plan> {
    let live = api.get_opt(name).await?;
    let body = match &live {
        None => modified.clone(),
        Some(live) => {
            let original = merge::last_applied(live);
            let mut patch = merge::three_way_patch(original.as_ref(), modified, live);
            if !patch.is_empty()
                && let Some(version) = live.pointer("/metadata/resourceVersion").cloned()
            {
                // A precondition: if the object changed since we read it, the server answers
                // 409 and we plan again.
                let metadata = patch
                    .entry("metadata")
                    .or_insert_with(|| Value::Object(serde_json::Map::new()));
                if let Some(metadata) = metadata.as_object_mut() {
                    metadata.insert("resourceVersion".into(), version);
                }
            }
            Value::Object(patch)
        }
    };
    Ok(Plan { live, body })
}

/// Sends the planned write (none when unchanged or for a client dry run).
pub(crate) async fn execute(
    api: &DynamicApi,
    name: &str,
    plan: &Plan,
    dry_run: DryRun,
) -> pacer_client::Result<(Action, Value)> {
    let server_dry_run = dry_run == DryRun::Server;
    match &plan.live {
        None if dry_run == DryRun::Client => Ok((Action::Created, plan.body.clone())),
        None => {
            let params = PostParams::default()
                .dry_run(server_dry_run)
                .field_manager(FIELD_MANAGER);
            Ok((Action::Created, api.create(&params, &plan.body).await?))
        }
        Some(live) if plan.body.as_object().is_none_or(serde_json::Map::is_empty) => {
            Ok((Action::Unchanged, live.clone()))
        }
        Some(live) if dry_run == DryRun::Client => Ok((Action::Configured, live.clone())),
        Some(_) => {
            let params = PatchParams::default()
                .dry_run(server_dry_run)
                .field_manager(FIELD_MANAGER);
            Ok((
                Action::Configured,
                api.patch_merge(name, &params, &plan.body).await?,
            ))
        }
    }
}

/// The namespace an object goes to: its own, else the context's; `None` for cluster-scoped
/// kinds. With an explicit `-n`, an object of another namespace is refused (as kubectl does).
pub(crate) fn target_namespace(
    manifest: &Manifest,
    settings: &Settings,
) -> anyhow::Result<Option<String>> {
    if !manifest.resource.namespaced {
        return Ok(None);
    }
    match manifest.namespace() {
        Some(namespace) if settings.namespace_from_flag && namespace != settings.namespace => {
            bail!(
                "the namespace from the provided object {namespace:?} does not match the namespace {:?}. You must pass '--namespace={namespace}' to perform this operation.",
                settings.namespace
            )
        }
        Some(namespace) => Ok(Some(namespace.to_owned())),
        None => Ok(Some(settings.namespace.clone())),
    }
}

/// The API for a kind in a namespace (`None`: cluster-scoped).
pub(crate) fn api_for(
    client: &Client,
    resource: &ResourceInfo,
    namespace: Option<&str>,
) -> DynamicApi {
    match namespace {
        Some(namespace) => DynamicApi::namespaced(client.clone(), *resource, namespace),
        None => DynamicApi::all(client.clone(), *resource),
    }
}

async fn prune(
    client: &Client,
    selector: &LabelSelector,
    visited: &BTreeSet<(&'static str, Option<String>)>,
    applied: &BTreeSet<(&'static str, Option<String>, String)>,
    dry_run: DryRun,
) -> anyhow::Result<Outcome> {
    let mut failed = false;
    for (plural, namespace) in visited {
        let Some(resource) = ResourceInfo::resolve(plural) else {
            continue;
        };
        let api = api_for(client, resource, namespace.as_deref());
        let list = api
            .list_all(&ListParams::default().labels(selector.to_string()))
            .await
            .with_context(|| format!("list {} to prune", resource.group_resource()))?;
        for item in list.items {
            let name = output::str_at(&item, "/metadata/name").to_owned();
            let key = (*plural, namespace.clone(), name.clone());
            let applied_before = merge::last_applied(&item).is_some();
            let deleting = item.pointer("/metadata/deletionTimestamp").is_some();
            if applied.contains(&key) || !applied_before || deleting {
                continue;
            }
            let display = format!("{}/{name}", resource.type_name());
            if dry_run != DryRun::Client {
                let params = DeleteParams::default().dry_run(dry_run == DryRun::Server);
                match api.delete(&name, &params).await {
                    Ok(Deleted::Object(_) | Deleted::Status(_)) => {}
                    Err(error) if error.is_not_found() => continue,
                    Err(error) => {
                        failed = true;
                        let error = anyhow::Error::new(error)
                            .context(format!("error when pruning {display}"));
                        eprintln!("{}", output::render_error(&error));
                        continue;
                    }
                }
            }
            println!("{display} pruned{}", dry_run.suffix());
        }
    }
    Ok(if failed {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}

fn print_objects(format: OutputFormat, objects: Vec<Value>) -> anyhow::Result<()> {
    match format {
        OutputFormat::Name | OutputFormat::Wide => {
            for object in &objects {
                let kind = output::str_at(object, "/kind");
                let api_version = output::str_at(object, "/apiVersion");
                if let Some(resource) = ResourceInfo::for_kind(api_version, kind) {
                    println!("{}", output::object_name(resource, object));
                }
            }
        }
        OutputFormat::Yaml | OutputFormat::Json => {
            let value = match <[Value; 1]>::try_from(objects) {
                Ok([single]) => single,
                Err(objects) => output::list_value(objects),
            };
            if format == OutputFormat::Yaml {
                print!("{}", output::to_yaml(&value)?);
            } else {
                print!("{}", output::to_json(&value)?);
            }
        }
    }
    Ok(())
}

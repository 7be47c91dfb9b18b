//! `pacer delete RESOURCE NAME…`, `pacer delete RESOURCE -l SELECTOR|--all` and
//! `pacer delete -f FILE`: deletes objects and prints `app.pacer.dev "web" deleted`, going on
//! past failures and exiting 1 if any. Like kubectl, it then waits (`--wait`, default on) until
//! the objects are really gone: an App stays while its finalizer stops its instances.

use std::time::{Duration, Instant};

use anyhow::bail;
use pacer_client::{
    DeleteParams, Deleted, DynamicApi, LabelSelector, ListParams, PropagationPolicy, ResourceInfo,
};

use crate::apply::{DryRun, api_for, target_namespace};
use crate::config::ConnectArgs;
use crate::get::resolve_resource;
use crate::manifest;
use crate::output::{self, Outcome};

/// Options of `pacer delete`.
#[derive(Debug, clap::Args)]
pub(crate) struct DeleteArgs {
    /// The kind (`apps`, `app`, `ap`), or `TYPE/NAME`; omit with -f.
    pub(crate) resource: Option<String>,
    /// Names of the objects.
    pub(crate) names: Vec<String>,
    /// Delete the objects of these manifests (file, directory or `-`; repeatable).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub(crate) files: Vec<String>,
    /// Delete the objects whose labels match.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub(crate) selector: Option<String>,
    /// Delete every object of the kind in the namespace.
    #[arg(long)]
    pub(crate) all: bool,
    /// Treat "not found" as success.
    #[arg(long)]
    pub(crate) ignore_not_found: bool,
    /// `server`: ask the server to check the delete without doing it; `client`: only print.
    #[arg(long, value_enum, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub(crate) dry_run: DryRun,
    /// Wait until the objects are gone (finalizers done) before returning.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub(crate) wait: bool,
    /// How long `--wait` waits (e.g. 90s, 5m); 0 waits forever.
    #[arg(long, default_value = "5m", value_parser = crate::node::parse_duration)]
    pub(crate) timeout: Duration,
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
}

/// Runs `pacer delete`.
pub(crate) async fn run(args: DeleteArgs) -> anyhow::Result<Outcome> {
    let mut targets: Vec<(DynamicApi, String)> = Vec::new();
    let (client, settings) = args.connect.connect()?;
    if !args.files.is_empty() {
        if args.resource.is_some() || args.selector.is_some() || args.all {
            bail!("when -f is given, no RESOURCE, NAME, --selector or --all may be");
        }
        for manifest in manifest::load(&args.files)? {
            let namespace = target_namespace(&manifest, &settings)?;
            let api = api_for(&client, &manifest.resource, namespace.as_deref());
            targets.push((api, manifest.name().to_owned()));
        }
    } else {
        let Some(resource) = &args.resource else {
            bail!("you must provide one or more resources by argument or filename (-f)");
        };
        let (kind, mut names) = match resource.split_once('/') {
            Some((kind, name)) => (kind, vec![name.to_owned()]),
            None => (resource.as_str(), Vec::new()),
        };
        names.extend(args.names.iter().cloned());
        let resource: &ResourceInfo = resolve_resource(kind)?;
        let api = api_for(
            &client,
            resource,
            resource.namespaced.then_some(settings.namespace.as_str()),
        );
        let selecting = args.selector.is_some() || args.all;
        if selecting && !names.is_empty() {
            bail!("names cannot be given together with --selector or --all");
        }
        if selecting {
            let mut params = ListParams::default();
            if let Some(selector) = &args.selector {
                LabelSelector::parse(selector)?;
                params = params.labels(selector.clone());
            }
            let list = api.list_all(&params).await?;
            if list.items.is_empty() {
                eprintln!("No resources found");
            }
            for item in list.items {
                targets.push((
                    api.clone(),
                    output::str_at(&item, "/metadata/name").to_owned(),
                ));
            }
        } else if names.is_empty() {
            bail!("resource(s) were provided, but no name was specified");
        } else {
            targets.extend(names.into_iter().map(|name| (api.clone(), name)));
        }
    }

    let params = DeleteParams::default()
        .dry_run(args.dry_run == DryRun::Server)
        .propagation(PropagationPolicy::Background);
    let mut failed = false;
    let mut deleting = Vec::new();
    for (api, name) in targets {
        let label = format!("{} {name:?}", api.resource().type_name());
        if args.dry_run != DryRun::Client {
            match api.delete(&name, &params).await {
                Ok(Deleted::Object(object)) if args.dry_run == DryRun::None => {
                    let uid = output::str_at(&object, "/metadata/uid").to_owned();
                    deleting.push((api.clone(), name.clone(), uid, label.clone()));
                }
                Ok(_) => {}
                Err(error) if error.is_not_found() && args.ignore_not_found => continue,
                Err(error) => {
                    failed = true;
                    eprintln!("{}", output::render_error(&anyhow::Error::new(error)));
                    continue;
                }
            }
        }
        println!("{label} deleted{}", args.dry_run.suffix());
    }
    if args.wait && !wait_until_gone(&deleting, args.timeout).await {
        failed = true;
    }
    Ok(if failed {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}

/// Polls each deleted object until it is gone or replaced by a new one with another uid (its
/// finalizers have run); reports those still there at the timeout. Returns whether all went.
async fn wait_until_gone(
    deleting: &[(DynamicApi, String, String, String)],
    timeout: Duration,
) -> bool {
    let deadline = (!timeout.is_zero()).then(|| Instant::now() + timeout);
    let mut pending: Vec<_> = deleting.iter().collect();
    let mut pause = Duration::from_millis(50);
    loop {
        let mut still = Vec::new();
        for entry in pending {
            let (api, name, uid, _) = entry;
            match api.get_opt(name).await {
                Ok(Some(object)) if output::str_at(&object, "/metadata/uid") == uid => {
                    still.push(entry)
                }
                Ok(_) => {}
                Err(error) => {
                    eprintln!("{}", output::render_error(&anyhow::Error::new(error)));
                    still.push(entry);
                }
            }
        }
        if still.is_empty() {
            return true;
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            for (_, _, _, label) in still {
                eprintln!("error: timed out waiting for {label} to be deleted");
            }
            return false;
        }
        pending = still;
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

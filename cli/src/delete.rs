//! `pacer delete RESOURCE NAME…`, `pacer delete RESOURCE -l SELECTOR|--all` and
//! `pacer delete -f FILE`: deletes objects and prints `app.pacer.dev "web" deleted`, going on
//! past failures and exiting 1 if any.

use anyhow::bail;
use pacer_client::{
    DeleteParams, DynamicApi, LabelSelector, ListParams, PropagationPolicy, ResourceInfo,
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
    for (api, name) in targets {
        let label = format!("{} {name:?}", api.resource().type_name());
        if args.dry_run != DryRun::Client {
            match api.delete(&name, &params).await {
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
    Ok(if failed {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}

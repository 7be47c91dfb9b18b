//! `pacer diff -f …`: for each object, what `pacer apply` would change, as a unified diff of
//! YAML between the live object and the server's answer to the same write sent with
//! `dryRun=All` (so defaults, validation and generation bumps are the server's). Exit 0 when
//! nothing differs, 1 when something does (kubectl's convention); errors also exit 1.
//!
//! Fields that change on every write and say nothing about the object are left out of both
//! sides: `metadata.resourceVersion`, `metadata.managedFields` and the last-applied annotation.

use anyhow::Context as _;
use serde_json::Value;
use similar::TextDiff;

use crate::apply::{self, DryRun, api_for, target_namespace};
use crate::config::ConnectArgs;
use crate::manifest;
use crate::merge;
use crate::output::{self, Outcome};

/// Options of `pacer diff`.
#[derive(Debug, clap::Args)]
pub(crate) struct DiffArgs {
    /// Manifest file, directory or `-`; repeatable.
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
    pub(crate) files: Vec<String>,
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
}

/// Runs `pacer diff`.
pub(crate) async fn run(args: DiffArgs) -> anyhow::Result<Outcome> {
    let manifests = manifest::load(&args.files)?;
    let (client, settings) = args.connect.connect()?;
    let mut differs = false;
    for manifest in &manifests {
        let namespace = target_namespace(manifest, &settings)?;
        let api = api_for(&client, &manifest.resource, namespace.as_deref());
        let modified = merge::prepare(&manifest.object, namespace.as_deref());
        let context = || {
            format!(
                "error when diffing {} from {}",
                manifest.display_name(),
                manifest.origin()
            )
        };
        let plan = apply::plan(&api, manifest.name(), &modified)
            .await
            .with_context(context)?;
        let (_, merged) = apply::execute(&api, manifest.name(), &plan, DryRun::Server)
            .await
            .with_context(context)?;
        let live_text = match &plan.live {
            Some(live) => output::to_yaml(&comparable(live))?,
            None => String::new(),
        };
        let merged_text = output::to_yaml(&comparable(&merged))?;
        if live_text == merged_text {
            continue;
        }
        differs = true;
        let label = format!(
            "{}/{}",
            manifest.resource.type_name(),
            qualified_name(namespace.as_deref(), manifest.name())
        );
        let diff = TextDiff::from_lines(&live_text, &merged_text);
        let live_header = format!("live/{label}");
        let merged_header = format!("merged/{label}");
        println!("diff -u {live_header} {merged_header}");
        print!(
            "{}",
            diff.unified_diff()
                .context_radius(3)
                .header(&live_header, &merged_header)
        );
    }
    Ok(if differs {
        Outcome::Differences
    } else {
        Outcome::Success
    })
}

fn qualified_name(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(namespace) => format!("{namespace}/{name}"),
        None => name.to_owned(),
    }
}

/// The object without the fields that change on every write.
fn comparable(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
        metadata.remove("managedFields");
        let mut drop_annotations = false;
        if let Some(annotations) = metadata
            .get_mut("annotations")
            .and_then(Value::as_object_mut)
        {
            annotations.remove(merge::LAST_APPLIED);
            drop_annotations = annotations.is_empty();
        }
        if drop_annotations {
            metadata.remove("annotations");
        }
    }
    object
}

//! `pacer rollout history|undo|restart|status|promote APP`: an App's version history (its
//! `AppVersion` objects), rolling back to an earlier version, a rolling restart, following
//! a rollout to its end, and promoting a paused canary.
//!
//! * `history` lists the versions oldest first, marking the current one.
//! * `undo` writes the snapshot of the previous revision (or `--to-version`, a revision number
//!   or a Marathon version string) back into the App's spec — a new version whose deployment
//!   rolls the instances back under the upgrade strategy, as Marathon's
//!   `PUT /v2/apps/{id} {"version": …}` does.
//! * `restart` sets the `pacer.dev/restartedAt` annotation to now: a new version with the same
//!   spec, whose deployment replaces every instance (Marathon's `POST /v2/apps/{id}/restart`).
//! * `status` follows the deployment of the App's current revision — a progress bar
//!   (indicatif) of the new instances that run healthy when stdout is a terminal, a line per
//!   change otherwise — and exits 0 when it succeeded, 1 when it failed, was cancelled, or was
//!   rolled back by `autoRevert` (it keeps following the deployment it found first, and a
//!   current deployment that `reverts` another reports that one's failure).
//! * `promote` promotes the App's running deployment past its canary pause
//!   (`upgradeStrategy.canary`): it sets the `pacer.dev/promoted` annotation on the
//!   Deployment, which the deployment controller reads (a metadata write: never locked).
//!
//! While a deployment of the App runs, the server refuses `undo` and `restart` with 409 naming
//! it (Marathon's lock); wait for it, or force the change with `kubectl … ?force=true`.

use std::io::IsTerminal;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use pacer_client::{Api, ListParams, PatchParams, PostParams};
use pacer_schemas::app_version::RESTARTED_AT_ANNOTATION;
use pacer_schemas::deployment::{
    DeploymentActionKind, DeploymentPhase, PROMOTED_ANNOTATION, labels as deployment_labels,
};
use pacer_schemas::{App, AppVersion, Deployment, Instance};
use serde_json::json;

use crate::config::ConnectArgs;
use crate::output::{self, Outcome};

/// `pacer rollout …` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum RolloutCommand {
    /// List an App's versions, oldest first; `*` under CURRENT marks the current one.
    History(RolloutArgs),
    /// Roll an App back to its previous version, or to `--to-version`.
    Undo(UndoArgs),
    /// Replace every instance of an App under its upgrade strategy.
    Restart(RolloutArgs),
    /// Follow the App's current deployment until it ends: exit 0 when it succeeded, 1 when it
    /// failed, was cancelled or was rolled back automatically.
    Status(StatusArgs),
    /// Promote the App's paused canary: roll the rest of its instances.
    Promote(RolloutArgs),
}

/// Options of `pacer rollout status`.
#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    target: RolloutArgs,
    /// Give up after this long (e.g. `90s`, `5m`).
    #[arg(long, default_value = "10m", value_parser = crate::node::parse_duration)]
    timeout: std::time::Duration,
}

/// The App a rollout command works on.
#[derive(Debug, clap::Args)]
pub(crate) struct RolloutArgs {
    /// The App's name (`app/NAME` is accepted too).
    app: String,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Options of `pacer rollout undo`.
#[derive(Debug, clap::Args)]
pub(crate) struct UndoArgs {
    #[command(flatten)]
    target: RolloutArgs,
    /// The revision number or Marathon version string to return to (default: the revision
    /// before the current one).
    #[arg(long, value_name = "VERSION")]
    to_version: Option<String>,
}

/// Runs `pacer rollout …`.
pub(crate) async fn run(command: RolloutCommand) -> anyhow::Result<Outcome> {
    match command {
        RolloutCommand::History(args) => history(args).await,
        RolloutCommand::Undo(args) => undo(args).await,
        RolloutCommand::Restart(args) => restart(args).await,
        RolloutCommand::Status(args) => status(args).await,
        RolloutCommand::Promote(args) => promote(args).await,
    }
}

fn app_name(argument: &str) -> &str {
    argument
        .strip_prefix("app/")
        .or_else(|| argument.strip_prefix("apps/"))
        .unwrap_or(argument)
}

/// The App and its versions, oldest first.
async fn versions_of(args: &RolloutArgs) -> anyhow::Result<(Api<App>, App, Vec<AppVersion>)> {
    let (client, settings) = args.connect.connect()?;
    let name = app_name(&args.app);
    let apps: Api<App> = Api::namespaced(client.clone(), &settings.namespace);
    let app = apps
        .get(name)
        .await
        .with_context(|| format!("get app {name:?}"))?;
    let versions: Api<AppVersion> = Api::namespaced(client, &settings.namespace);
    let selector = Instance::selector_for_app(name);
    let mut list: Vec<AppVersion> = versions
        .list_all(&ListParams::default().labels(selector))
        .await
        .with_context(|| format!("list the versions of app {name:?}"))?
        .items
        .into_iter()
        .filter(|version| version.spec.app == name)
        .collect();
    list.sort_by_key(|version| version.spec.revision);
    Ok((apps, app, list))
}

async fn history(args: RolloutArgs) -> anyhow::Result<Outcome> {
    let (_, app, versions) = versions_of(&args).await?;
    let current = app.status.as_ref().and_then(|status| status.revision);
    if versions.is_empty() {
        println!("app {:?} has no versions yet", app.metadata.name_str());
        return Ok(Outcome::Success);
    }
    let mut table = output::plain_table(&[
        "REVISION",
        "VERSION",
        "CHANGE",
        "INSTANCES",
        "CONFIG VERSION",
        "CURRENT",
    ]);
    for version in &versions {
        let spec = &version.spec;
        table.add_row([
            if Some(spec.revision) == current {
                "*"
            } else {
                ""
            }
            .to_owned(),
            spec.revision.to_string(),
            spec.version.clone(),
            spec.change.clone().unwrap_or_else(|| "-".to_owned()),
            spec.template
                .instances
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            spec.config_version.clone(),
            if Some(spec.revision) == current {
                "*"
            } else {
                ""
            }
            .to_owned(),
        ]);
    }
    println!("{}", output::render_table(&table));
    Ok(Outcome::Success)
}

async fn undo(args: UndoArgs) -> anyhow::Result<Outcome> {
    let (apps, app, versions) = versions_of(&args.target).await?;
    let name = app.metadata.name_str().to_owned();
    let current = app
        .status
        .as_ref()
        .and_then(|status| status.revision)
        .or_else(|| versions.last().map(|version| version.spec.revision));
    let target = match &args.to_version {
        Some(wanted) => versions
            .iter()
            .find(|v| v.spec.version == *wanted || v.spec.revision.to_string() == *wanted),
        None => versions
            .iter()
            .rev()
            .find(|v| current.is_some_and(|current| v.spec.revision < current)),
    };
    let Some(target) = target else {
        match &args.to_version {
            Some(wanted) => {
                bail!("app {name:?} has no version {wanted:?} (see `pacer rollout history {name}`)")
            }
            None => bail!("app {name:?} has no version before its current one"),
        }
    };
    let mut restored = app.clone();
    restored.spec = target.spec.template.clone();
    apps.replace(&PostParams::default(), &restored)
        .await
        .with_context(|| format!("roll back app {name:?}"))?;
    println!(
        "app.pacer.dev/{name} rolled back to revision {} (version {})",
        target.spec.revision, target.spec.version
    );
    Ok(Outcome::Success)
}

async fn restart(args: RolloutArgs) -> anyhow::Result<Outcome> {
    let (client, settings) = args.connect.connect()?;
    let name = app_name(&args.app);
    let apps: Api<App> = Api::namespaced(client, &settings.namespace);
    let now = jiff::Timestamp::now().to_string();
    apps.patch_merge(
        name,
        &PatchParams::default(),
        &json!({"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: now}}}),
    )
    .await
    .with_context(|| format!("restart app {name:?}"))?;
    println!("app.pacer.dev/{name} restarted");
    Ok(Outcome::Success)
}

/// The App's running deployment (named in its status), if any.
async fn running_deployment(
    apps: &Api<App>,
    deployments: &Api<Deployment>,
    name: &str,
) -> anyhow::Result<Option<Deployment>> {
    let app = apps
        .get(name)
        .await
        .with_context(|| format!("get app {name:?}"))?;
    for candidate in app.status.iter().flat_map(|status| &status.deployments) {
        let deployment = deployments
            .get(candidate)
            .await
            .with_context(|| format!("get deployment {candidate}"))?;
        if deployment.phase().is_active() {
            return Ok(Some(deployment));
        }
    }
    Ok(None)
}

async fn promote(args: RolloutArgs) -> anyhow::Result<Outcome> {
    let (client, settings) = args.connect.connect()?;
    let name = app_name(&args.app).to_owned();
    let apps: Api<App> = Api::namespaced(client.clone(), &settings.namespace);
    let deployments: Api<Deployment> = Api::all(client);
    let Some(deployment) = running_deployment(&apps, &deployments, &name).await? else {
        bail!("app {name:?} has no running deployment to promote");
    };
    let id = deployment.metadata.name_str().to_owned();
    let now = jiff::Timestamp::now().to_string();
    deployments
        .patch_merge(
            &id,
            &PatchParams::default(),
            &json!({"metadata": {"annotations": {PROMOTED_ANNOTATION: now}}}),
        )
        .await
        .with_context(|| format!("promote deployment {id}"))?;
    println!("deployment {id} of app.pacer.dev/{name} promoted");
    Ok(Outcome::Success)
}

/// How `status` shows progress: a bar on a terminal, a line per change otherwise.
enum Display {
    Bar(ProgressBar),
    Lines { last: String },
}

impl Display {
    fn new() -> Self {
        if !std::io::stdout().is_terminal() {
            return Self::Lines {
                last: String::new(),
            };
        }
        let bar = ProgressBar::new(0);
        let style = ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} healthy  {msg}")
            .map(|style| style.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Self::Bar(bar)
    }

    /// Shows a waiting line, and on a bar the new instances healthy out of the target.
    fn progress(&mut self, line: String, healthy: Option<(u64, u64)>) {
        match self {
            Self::Bar(bar) => {
                if let Some((position, length)) = healthy {
                    bar.set_length(length);
                    bar.set_position(position);
                }
                bar.set_message(line);
            }
            Self::Lines { last } => {
                if line != *last {
                    println!("{line}");
                    *last = line;
                }
            }
        }
    }

    /// Clears the bar before a final line.
    fn finish(&self) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

async fn status(args: StatusArgs) -> anyhow::Result<Outcome> {
    let (client, settings) = args.target.connect.connect()?;
    let name = app_name(&args.target.app).to_owned();
    let apps: Api<App> = Api::namespaced(client.clone(), &settings.namespace);
    let deployments: Api<Deployment> = Api::all(client);
    let selector = format!(
        "{}={name},{}={}",
        deployment_labels::APP,
        deployment_labels::APP_NAMESPACE,
        settings.namespace
    );
    let deadline = std::time::Instant::now() + args.timeout;
    let mut display = Display::new();
    // Once found, the deployment is followed by name, so a rollback that moves the App to a
    // new revision cannot turn a failed rollout into a success.
    let mut following: Option<String> = None;
    loop {
        let found = match &following {
            Some(id) => Some(
                deployments
                    .get(id)
                    .await
                    .with_context(|| format!("get deployment {id}"))?,
            ),
            None => {
                let app = apps
                    .get(&name)
                    .await
                    .with_context(|| format!("get app {name:?}"))?;
                let status = app.status.clone().unwrap_or_default();
                if status.observed_generation == app.metadata.generation {
                    let list = deployments
                        .list_all(&ListParams::default().labels(selector.clone()))
                        .await
                        .context("list deployments")?;
                    let current = list.items.into_iter().find(|deployment| {
                        deployment
                            .spec
                            .steps
                            .first()
                            .and_then(|step| step.actions.first())
                            .is_some_and(|action| {
                                // The version (a millisecond timestamp) tells this App's
                                // deployment from an earlier App of the same name whose
                                // revision numbers repeat.
                                action.revision == status.revision
                                    && (status.current_version.is_none()
                                        || action.version == status.current_version)
                                    && action.action != DeploymentActionKind::StopApplication
                            })
                    });
                    let Some(current) = current else {
                        display.finish();
                        bail!(
                            "app {name:?} has no deployment of revision {:?}",
                            status.revision
                        );
                    };
                    if let Some(reverted) = current.spec.reverts.clone() {
                        // The App's current revision is an automatic rollback: the rollout
                        // the user waits for failed.
                        let failed = deployments.get(&reverted).await.ok();
                        let message = failed
                            .as_ref()
                            .and_then(|d| d.status.as_ref())
                            .and_then(|s| s.message.clone())
                            .unwrap_or_else(|| "failed".to_owned());
                        display.finish();
                        eprintln!(
                            "deployment {reverted} of app {name}: Failed: {message} (rollback: \
                             deployment {})",
                            current.metadata.name_str()
                        );
                        return Ok(Outcome::Failed);
                    }
                    following = Some(current.metadata.name_str().to_owned());
                    Some(current)
                } else {
                    None
                }
            }
        };
        match found {
            None => display.progress(
                "Waiting for the deployment controller to see the change...".to_owned(),
                None,
            ),
            Some(deployment) => {
                let id = deployment.metadata.name_str().to_owned();
                let phase = deployment.phase();
                let detail = deployment.status.as_ref();
                let revision = deployment
                    .spec
                    .steps
                    .first()
                    .and_then(|step| step.actions.first())
                    .and_then(|action| action.revision)
                    .unwrap_or_default();
                match phase {
                    DeploymentPhase::Succeeded => {
                        display.finish();
                        println!("deployment {id} of app {name} (revision {revision}) succeeded");
                        return Ok(Outcome::Success);
                    }
                    DeploymentPhase::Failed | DeploymentPhase::Cancelled => {
                        let message = detail.and_then(|d| d.message.clone()).unwrap_or_default();
                        display.finish();
                        eprintln!("deployment {id} of app {name}: {phase:?}: {message}");
                        return Ok(Outcome::Failed);
                    }
                    DeploymentPhase::Pending | DeploymentPhase::Running => {
                        match detail.and_then(|d| d.current_actions.first()) {
                            Some(action) => {
                                let healthy = action.healthy_instances.unwrap_or(0);
                                let target = action.target_instances.unwrap_or(0);
                                let waiting = action
                                    .waiting_for
                                    .as_ref()
                                    .map(|what| format!(" (waiting for {what})"))
                                    .unwrap_or_default();
                                display.progress(
                                    format!(
                                        "Waiting for deployment {id}: {healthy}/{target} new \
                                         instances healthy, {} old left{waiting}",
                                        action.old_instances.unwrap_or(0),
                                    ),
                                    Some((
                                        u64::try_from(healthy).unwrap_or(0),
                                        u64::try_from(target).unwrap_or(0),
                                    )),
                                );
                            }
                            None => display
                                .progress(format!("Waiting for deployment {id} to start..."), None),
                        }
                    }
                }
            }
        }
        if std::time::Instant::now() >= deadline {
            display.finish();
            bail!(
                "app {name:?}: the rollout did not finish within {:?}",
                args.timeout
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

//! The launch queue: `pacer get queue` shows, per App, what waits to launch, why and until
//! when (the deployment controller's launch backoff and instances not placed or started yet);
//! `pacer queue reset APP` resets an App's launch delay.
//!
//! Both work over the kube-style API: the view is `pacer_schemas::app::launch_queue_entry` of
//! each App and its Instances (the same function behind Marathon's `GET /v2/queue`), and a
//! reset is a `/status` merge patch that removes `status.launchDelay`, which the deployment
//! controller honours (it launches at once and counts failures from zero) — as
//! `DELETE /v2/queue/{appId}/delay` does.

use std::collections::BTreeMap;

use anyhow::Context as _;
use pacer_client::{Api, ListParams};
use pacer_schemas::app::{LaunchQueueEntry, launch_queue_entry};
use pacer_schemas::{App, Instance, Time};
use serde_json::{Value, json};

use crate::config::ConnectArgs;
use crate::get::GetArgs;
use crate::output::{self, Outcome, OutputFormat};

/// Whether `pacer get RESOURCE` names the launch queue.
pub(crate) fn is_queue(resource: &str) -> bool {
    matches!(resource, "queue" | "queues")
}

/// `pacer queue …` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum QueueCommand {
    /// Reset an App's launch backoff: it launches now and counts failures from zero.
    Reset(ResetArgs),
}

/// Options of `pacer queue reset`.
#[derive(Debug, clap::Args)]
pub(crate) struct ResetArgs {
    /// The App's name (`app/NAME` is accepted too).
    app: String,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Runs `pacer queue …`.
pub(crate) async fn run(command: QueueCommand) -> anyhow::Result<Outcome> {
    match command {
        QueueCommand::Reset(args) => reset(args).await,
    }
}

async fn reset(args: ResetArgs) -> anyhow::Result<Outcome> {
    let (client, settings) = args.connect.connect()?;
    let name = args
        .app
        .strip_prefix("app/")
        .or_else(|| args.app.strip_prefix("apps/"))
        .unwrap_or(&args.app);
    let apps: Api<App> = Api::namespaced(client, &settings.namespace);
    let app = apps
        .patch_status(name, &json!({"status": {"launchDelay": null}}))
        .await
        .with_context(|| format!("reset the launch delay of app {name:?}"))?;
    println!("app/{} launch delay reset", app.metadata.name_str());
    Ok(Outcome::Success)
}

/// One row of the queue.
struct Row {
    namespace: String,
    app: String,
    entry: LaunchQueueEntry,
}

/// `pacer get queue [APP…]`.
pub(crate) async fn get(args: GetArgs) -> anyhow::Result<Outcome> {
    let (client, settings) = args.connect.connect()?;
    let (apps, instances): (Api<App>, Api<Instance>) = if args.all_namespaces {
        (Api::all(client.clone()), Api::all(client))
    } else {
        (
            Api::namespaced(client.clone(), &settings.namespace),
            Api::namespaced(client, &settings.namespace),
        )
    };
    let apps = apps
        .list_all(&ListParams::default())
        .await
        .context("list apps")?
        .items;
    let instances = instances
        .list_all(&ListParams::default())
        .await
        .context("list instances")?
        .items;
    let mut by_app: BTreeMap<(&str, &str), Vec<&Instance>> = BTreeMap::new();
    for instance in &instances {
        by_app
            .entry((
                instance.metadata.namespace_str(),
                instance.spec.app.as_str(),
            ))
            .or_default()
            .push(instance);
    }
    let now = Time::new(jiff::Timestamp::now());
    let rows: Vec<Row> = apps
        .iter()
        .filter(|app| {
            args.names.is_empty() || args.names.iter().any(|n| n == app.metadata.name_str())
        })
        .filter_map(|app| {
            let key = (app.metadata.namespace_str(), app.metadata.name_str());
            let own = by_app.get(&key).map(Vec::as_slice).unwrap_or_default();
            launch_queue_entry(app, own, now).map(|entry| Row {
                namespace: key.0.to_owned(),
                app: key.1.to_owned(),
                entry,
            })
        })
        .collect();
    match args.output {
        Some(OutputFormat::Json) => println!("{}", output::to_json(&as_list(&rows))?),
        Some(OutputFormat::Yaml) => print!("{}", output::to_yaml(&as_list(&rows))?),
        Some(OutputFormat::Name) => {
            for row in &rows {
                println!("app/{}", row.app);
            }
        }
        Some(OutputFormat::Wide) | None => print_table(&rows, &args, now),
    }
    Ok(Outcome::Success)
}

fn as_list(rows: &[Row]) -> Value {
    let items: Vec<Value> = rows
        .iter()
        .map(|row| {
            json!({
                "namespace": row.namespace,
                "app": row.app,
                "waiting": row.entry.waiting,
                "delayLeftSeconds": row.entry.delay_left_seconds,
                "overdue": row.entry.overdue,
                "until": row.entry.until,
                "reason": row.entry.reason,
                "since": row.entry.since,
            })
        })
        .collect();
    json!({ "items": items })
}

fn print_table(rows: &[Row], args: &GetArgs, now: Time) {
    if rows.is_empty() {
        eprintln!("No apps waiting to launch.");
        return;
    }
    let mut headers = vec!["APP", "WAITING", "DELAY LEFT", "REASON", "SINCE"];
    if args.all_namespaces {
        headers.insert(0, "NAMESPACE");
    }
    let mut table = output::plain_table(&headers);
    for row in rows {
        let left = row.entry.delay_left_seconds.ceil() as i64;
        let mut cells = vec![
            row.app.clone(),
            row.entry.waiting.to_string(),
            if left > 0 {
                output::human_duration(left)
            } else {
                "-".to_owned()
            },
            row.entry.reason.clone(),
            row.entry.since.map_or_else(
                || "<unknown>".to_owned(),
                |since| output::age(&since.to_string(), now.timestamp()),
            ),
        ];
        if args.all_namespaces {
            cells.insert(0, row.namespace.clone());
        }
        table.add_row(cells);
    }
    let rendered = output::render_table(&table);
    if args.no_headers {
        println!(
            "{}",
            rendered.lines().skip(1).collect::<Vec<_>>().join("\n")
        );
    } else {
        println!("{rendered}");
    }
}

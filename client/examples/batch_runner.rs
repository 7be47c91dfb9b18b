//! A small external scheduler on the offer broker: a batch job runner.
//!
//! It registers a `Framework` (role `batch` by default), watches the `Offer`s the broker makes
//! to it, and answers each one: it packs as many of its pending jobs as fit in the offered
//! cpus and mem and accepts the offer with them (a `/status` merge patch with
//! `phase: Accepted`, `launch: [...]` and the offer's `resourceVersion`, so an offer that
//! changed meanwhile — expired, rescinded — is refused with 409 and nothing runs twice), or,
//! with nothing left to launch, declines it for a while (`refuseSeconds`). The broker creates
//! each job's Instance bound to the offered node, and that node's agent runs it. When every
//! job is launched it waits for them to finish, prints where each ran, and unregisters.
//!
//! ```text
//! pacer dev                                                # terminal 1: API on 127.0.0.1:8080
//! JOBS=5 cargo run -p pacer-client --example batch_runner  # terminal 2
//! pacer get offers; pacer get frameworks -o yaml           # terminal 3, while it runs
//! ```
//!
//! Environment: `PACER_SERVER` (default `http://127.0.0.1:8080`), `PACER_TOKEN`, `JOBS`
//! (default 5), `JOB_COMMAND` (default `sleep 5`), `JOB_CPUS` (0.1), `JOB_MEM` (MiB, 32),
//! `FRAMEWORK` (its name, default `batch-runner`), `ROLE` (`batch`), `JOB_NAMESPACE`
//! (`default`), `RUST_LOG` (`info`).

use std::collections::BTreeMap;

use futures::StreamExt;
use pacer_client::WatchParams;
use pacer_client::{Api, Client, Config, DEFAULT_SERVER, DeleteParams, PostParams, WatchEvent};
use pacer_schemas::framework::Framework;
use pacer_schemas::instance::InstancePhase;
use pacer_schemas::offer::{OfferLaunch, OfferPhase};
use pacer_schemas::{AppSpec, Instance, Offer};
use serde_json::json;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// One job to run.
struct Job {
    name: String,
    template: AppSpec,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let framework_name = env_or("FRAMEWORK", "batch-runner");
    let role = env_or("ROLE", "batch");
    let namespace = env_or("JOB_NAMESPACE", "default");
    let jobs: usize = env_or("JOBS", "5").parse()?;
    let cpus: f64 = env_or("JOB_CPUS", "0.1").parse()?;
    let mem: f64 = env_or("JOB_MEM", "32").parse()?;
    let command = env_or("JOB_COMMAND", "sleep 5");

    let mut config =
        Config::new(env_or("PACER_SERVER", DEFAULT_SERVER)).with_user_agent(framework_name.clone());
    if let Ok(token) = std::env::var("PACER_TOKEN") {
        config = config.with_token(token);
    }
    let client = Client::new(config)?;
    let frameworks: Api<Framework> = Api::all(client.clone());
    let offers: Api<Offer> = Api::all(client.clone());
    let instances: Api<Instance> = Api::namespaced(client, &namespace);

    // Register (or re-register) the framework.
    let registration: Framework = serde_json::from_value(json!({
        "apiVersion": "pacer.dev/v1", "kind": "Framework",
        "metadata": {"name": framework_name},
        "spec": {"role": role, "offerTimeoutSeconds": 30},
    }))?;
    match frameworks
        .create(&PostParams::default(), &registration)
        .await
    {
        Ok(_) => tracing::info!(framework = %framework_name, %role, "registered"),
        Err(error) if error.is_already_exists() => {
            tracing::info!(framework = %framework_name, "already registered");
        }
        Err(error) => return Err(error.into()),
    }

    let run_id = uuid_suffix();
    let mut pending: Vec<Job> = (0..jobs)
        .map(|index| -> anyhow::Result<Job> {
            Ok(Job {
                name: format!("{framework_name}-{run_id}-{index}"),
                template: serde_json::from_value(json!({
                    "cmd": command, "cpus": cpus, "mem": mem, "disk": 0,
                    "portDefinitions": [],
                }))?,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let mut launched: BTreeMap<String, String> = BTreeMap::new();

    // Answer offers until every job is launched.
    let mut events = offers.watch(&WatchParams::default(), "").await?;
    while !pending.is_empty() {
        let Some(event) = events.next().await else {
            events = offers.watch(&WatchParams::default(), "").await?;
            continue;
        };
        let offer = match event? {
            WatchEvent::Added(offer) | WatchEvent::Modified(offer) => offer,
            WatchEvent::Error(status) => {
                tracing::warn!(?status, "watch error; watching again");
                events = offers.watch(&WatchParams::default(), "").await?;
                continue;
            }
            _ => continue,
        };
        let open = offer
            .status
            .as_ref()
            .is_none_or(|status| status.phase == OfferPhase::Offered);
        if offer.spec.framework.as_deref() != Some(framework_name.as_str()) || !open {
            continue;
        }
        let name = offer.metadata.name.clone().unwrap_or_default();
        let (mut free_cpus, mut free_mem) = (offer.spec.resources.cpus, offer.spec.resources.mem);
        let mut launch = Vec::new();
        while let Some(job) = pending.last() {
            if job.template.cpus.unwrap_or(0.0) > free_cpus + 1e-9
                || job.template.mem.unwrap_or(0.0) > free_mem + 1e-9
            {
                break;
            }
            free_cpus -= job.template.cpus.unwrap_or(0.0);
            free_mem -= job.template.mem.unwrap_or(0.0);
            let Some(job) = pending.pop() else { break };
            launch.push(OfferLaunch {
                namespace: namespace.clone(),
                name: job.name.clone(),
                app: Some(framework_name.clone()),
                template: job.template,
                ..OfferLaunch::default()
            });
        }
        let answer = if launch.is_empty() {
            json!({"phase": "Declined", "answeredBy": framework_name, "refuseSeconds": 60})
        } else {
            json!({"phase": "Accepted", "answeredBy": framework_name, "launch": launch})
        };
        let patch = json!({
            "metadata": {"resourceVersion": offer.metadata.resource_version},
            "status": answer,
        });
        match offers.patch_status(&name, &patch).await {
            Ok(_) => {
                for job in &launch {
                    tracing::info!(job = %job.name, node = %offer.spec.node_name, offer = %name, "launching");
                    launched.insert(job.name.clone(), offer.spec.node_name.clone());
                }
            }
            Err(error) if error.is_conflict() || error.is_not_found() => {
                // The offer changed or is gone: take the jobs back and wait for the next one.
                tracing::info!(offer = %name, "offer no longer valid");
                for job in launch {
                    pending.push(Job {
                        name: job.name,
                        template: job.template,
                    });
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
    // Stop receiving offers, then wait for the jobs to end.
    frameworks
        .patch_merge(
            &framework_name,
            &Default::default(),
            &json!({"spec": {"suppressed": true}}),
        )
        .await?;
    loop {
        let mut done = 0;
        for job in launched.keys() {
            let phase = instances
                .get_opt(job)
                .await?
                .and_then(|instance| instance.status.map(|status| status.phase));
            if phase.is_some_and(InstancePhase::is_terminal) {
                done += 1;
            }
        }
        tracing::info!(done, total = launched.len(), "waiting for the jobs");
        if done == launched.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    for (job, node) in &launched {
        println!("{job}\t{node}");
    }
    frameworks
        .delete(&framework_name, &DeleteParams::default())
        .await?;
    Ok(())
}

/// A short run id, so that several runs do not collide on job names.
fn uuid_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    format!("{:x}", nanos % 0xfffff)
}

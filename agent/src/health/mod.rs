//! Health and readiness checks, run by the agent next to the instances it runs — so checking
//! grows with the nodes and goes on while the control plane is away — and reported into each
//! Instance's status (`status.health[]`, `status.healthy`, `status.readiness[]`) through the
//! `/status` subresource.
//!
//! [`HealthSupervisor`] follows the same Instance watch as the agent's reconcile loop. An
//! instance is probed while its status says `Running` with a runtime id and its goal is
//! `Running`, and its template has `healthChecks` or `readinessChecks`; probing stops when
//! that ends and restarts when the run (runtime id, start time, ports) or the checks change.
//! Each probed instance has one task: one loop per check ([`probe`] runs a probe, [`check`]
//! holds Marathon's rules), and a status write only when a result changed in a way that
//! matters ([`check::worth_writing`]) — a steady healthy instance costs no API traffic. A
//! failed write is retried while probing goes on. Results already in the status (an agent
//! restart) are taken as the starting point, so health survives agent restarts.
//!
//! `delaySeconds` applies to every check (all run on the agent, like Marathon's `MESOS_*`
//! checks), counted from `startedAt`. Readiness checks stop once the instance is ready
//! (Marathon checks readiness until the first ready answer); they never kill.
//!
//! Hollow instances are not probed: [`hollow_status`] reports them healthy and ready at once —
//! unless their fleet was given a probe target (`pacer agent hollow --probe-target`, for
//! benchmarks of health checking at scale): then one supervisor probes every hollow instance's
//! HTTP, TCP and readiness checks against that address instead ([`Plan::aimed_at`]).

pub mod check;
pub mod probe;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use pacer_client::runtime::watcher::Event;
use pacer_client::{Api, Client};
use pacer_schemas::health::{HealthCheckProtocol, IpProtocol, ReadinessProtocol};
use pacer_schemas::instance::{
    HealthCheckResult, HttpResponseSummary, InstanceGoal, InstancePhase, ReadinessCheckResult,
};
use pacer_schemas::{AppSpec, Instance, Time, defaults};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::launch::{InstanceKey, Launch, LaunchContext};
use crate::runtime::process::ProcessRuntime;
use check::Outcome;
use probe::{CommandContext, Prober, Scheme};

/// How long a failed status write waits before it is tried again.
const WRITE_RETRY: Duration = Duration::from_secs(2);

/// How one health check probes.
#[derive(Clone, Debug, PartialEq)]
pub enum Probe {
    /// GET a path.
    Http {
        /// HTTP or HTTPS.
        scheme: Scheme,
        /// Where.
        address: SocketAddr,
        /// Request path.
        path: String,
        /// `ignoreHttp1xx`.
        ignore_http1xx: bool,
    },
    /// Connect.
    Tcp {
        /// Where.
        address: SocketAddr,
    },
    /// Run a shell command in the instance's context.
    Command {
        /// Where it runs.
        context: CommandContext,
        /// The command.
        command: String,
    },
    /// The check cannot run (e.g. no host port for its `portIndex`): every probe fails so.
    Unusable(String),
}

/// One health check of an instance, resolved against its run.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthPlan {
    /// Index in the template's `healthChecks`.
    pub index: i32,
    /// How it probes.
    pub probe: Probe,
    /// `gracePeriodSeconds`.
    pub grace_seconds: i64,
    /// `intervalSeconds`.
    pub interval: Duration,
    /// `timeoutSeconds`.
    pub timeout: Duration,
    /// `delaySeconds`.
    pub delay: Duration,
}

/// One readiness check of an instance, resolved against its run.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadinessPlan {
    /// `name`.
    pub name: String,
    /// HTTP or HTTPS, and where; `Err` why it cannot run.
    pub target: Result<(Scheme, SocketAddr), String>,
    /// `path`.
    pub path: String,
    /// `intervalSeconds`.
    pub interval: Duration,
    /// `timeoutSeconds`.
    pub timeout: Duration,
    /// `httpStatusCodesForReady`.
    pub codes: Vec<i32>,
    /// `preserveLastResponse`.
    pub preserve_last_response: bool,
}

/// Everything probing one run of one instance needs; a change of it restarts probing.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The instance.
    pub key: InstanceKey,
    /// The run being probed.
    pub runtime_id: String,
    /// When it started (grace period and delay count from here).
    pub started_at: Option<Time>,
    /// Health checks, in order.
    pub health: Vec<HealthPlan>,
    /// Readiness checks.
    pub readiness: Vec<ReadinessPlan>,
}

impl Plan {
    /// The plan for `instance` on this node, or `None` when it is not to be probed (not
    /// running, not wanted, no checks, nothing to launch).
    pub fn of(
        instance: &Instance,
        launch: &LaunchContext,
        process: Option<&ProcessRuntime>,
    ) -> Option<Self> {
        let status = instance.status.as_ref()?;
        let wants_running = matches!(instance.spec.goal, None | Some(InstanceGoal::Running));
        if status.phase != InstancePhase::Running || !wants_running {
            return None;
        }
        let runtime_id = status.runtime_id.clone()?;
        let template = instance.spec.template.as_ref()?;
        let health_checks = template.health_checks.as_deref().unwrap_or_default();
        let readiness_checks = template.readiness_checks.as_deref().unwrap_or_default();
        if health_checks.is_empty() && readiness_checks.is_empty() {
            return None;
        }
        let run = Launch::from_instance(instance, launch).ok()?;
        let host_port = |index: usize| run.ports.get(index).map(|port| port.host_port);
        let health = health_checks
            .iter()
            .enumerate()
            .map(|(index, check)| {
                let protocol = check.protocol.clone().unwrap_or(HealthCheckProtocol::Http);
                let ip = match check.ip_protocol {
                    Some(IpProtocol::Ipv6) => IpAddr::V6(Ipv6Addr::LOCALHOST),
                    _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
                };
                let port = match (check.port, check.port_index) {
                    (Some(port), _) => u16::try_from(port)
                        .map_err(|_| format!("healthChecks[{index}].port: {port} is not a port")),
                    (None, Some(port_index)) => usize::try_from(port_index)
                        .ok()
                        .and_then(host_port)
                        .ok_or_else(|| {
                            format!(
                                "healthChecks[{index}].portIndex: the instance has no host port \
                                 {port_index}"
                            )
                        }),
                    (None, None) => host_port(0).ok_or_else(|| {
                        format!("healthChecks[{index}]: the instance has no host port to probe")
                    }),
                };
                let probe = match protocol {
                    HealthCheckProtocol::Command => {
                        let command = check
                            .command
                            .as_ref()
                            .map(|command| command.value.clone())
                            .unwrap_or_default();
                        match command_context(instance, &run, &runtime_id, process) {
                            Ok(context) => Probe::Command { context, command },
                            Err(cause) => Probe::Unusable(cause),
                        }
                    }
                    HealthCheckProtocol::Tcp | HealthCheckProtocol::MesosTcp => match port {
                        Ok(port) => Probe::Tcp {
                            address: SocketAddr::new(ip, port),
                        },
                        Err(cause) => Probe::Unusable(cause),
                    },
                    _ => match port {
                        Ok(port) => Probe::Http {
                            scheme: if matches!(
                                protocol,
                                HealthCheckProtocol::Https | HealthCheckProtocol::MesosHttps
                            ) {
                                Scheme::Https
                            } else {
                                Scheme::Http
                            },
                            address: SocketAddr::new(ip, port),
                            path: check.path.clone().unwrap_or_else(|| "/".to_owned()),
                            ignore_http1xx: check.ignore_http1xx.unwrap_or(false),
                        },
                        Err(cause) => Probe::Unusable(cause),
                    },
                };
                HealthPlan {
                    index: i32::try_from(index).unwrap_or(i32::MAX),
                    probe,
                    grace_seconds: i64::from(
                        check
                            .grace_period_seconds
                            .unwrap_or(defaults::HEALTH_GRACE_PERIOD_SECONDS),
                    ),
                    interval: seconds(check.interval_seconds, defaults::HEALTH_INTERVAL_SECONDS)
                        .max(Duration::from_secs(1)),
                    timeout: seconds(check.timeout_seconds, defaults::HEALTH_TIMEOUT_SECONDS)
                        .max(Duration::from_secs(1)),
                    delay: seconds(check.delay_seconds, defaults::HEALTH_DELAY_SECONDS),
                }
            })
            .collect();
        let readiness = readiness_checks
            .iter()
            .map(|check| {
                let port_name = check
                    .port_name
                    .clone()
                    .unwrap_or_else(|| defaults::READINESS_PORT_NAME.to_owned());
                let scheme = match check.protocol {
                    Some(ReadinessProtocol::Https) => Scheme::Https,
                    _ => Scheme::Http,
                };
                let target = run
                    .ports
                    .iter()
                    .find(|port| port.name.as_deref() == Some(port_name.as_str()))
                    .map(|port| {
                        (
                            scheme,
                            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port.host_port),
                        )
                    })
                    .ok_or_else(|| {
                        format!("readinessChecks: the instance has no host port named {port_name}")
                    });
                ReadinessPlan {
                    name: check
                        .name
                        .clone()
                        .unwrap_or_else(|| defaults::READINESS_NAME.to_owned()),
                    target,
                    path: check.path.clone().unwrap_or_else(|| "/".to_owned()),
                    interval: seconds(check.interval_seconds, defaults::READINESS_INTERVAL_SECONDS)
                        .max(Duration::from_secs(1)),
                    timeout: seconds(check.timeout_seconds, defaults::READINESS_TIMEOUT_SECONDS)
                        .max(Duration::from_secs(1)),
                    codes: check
                        .http_status_codes_for_ready
                        .clone()
                        .unwrap_or_else(|| defaults::READINESS_STATUS_CODES.to_vec()),
                    preserve_last_response: check.preserve_last_response.unwrap_or(false),
                }
            })
            .collect();
        Some(Self {
            key: InstanceKey::of(instance),
            runtime_id,
            started_at: status.started_at,
            health,
            readiness,
        })
    }
}

impl Plan {
    /// This plan with every HTTP and TCP health check and every readiness check probing
    /// `target` instead of the instance's own port (a readiness check whose port name matched
    /// nothing probes it over HTTP); command and unusable checks are dropped (a hollow
    /// instance has nowhere to run them). `None` when no check is left.
    pub fn aimed_at(mut self, target: SocketAddr) -> Option<Self> {
        self.health.retain_mut(|check| match &mut check.probe {
            Probe::Http { address, .. } | Probe::Tcp { address } => {
                *address = target;
                true
            }
            Probe::Command { .. } | Probe::Unusable(_) => false,
        });
        for check in &mut self.readiness {
            // Even one whose port name resolves to nothing: the target stands in for the ports.
            let scheme = check
                .target
                .as_ref()
                .map_or(Scheme::Http, |(scheme, _)| *scheme);
            check.target = Ok((scheme, target));
        }
        (!self.health.is_empty() || !self.readiness.is_empty()).then_some(self)
    }
}

/// Now, to the millisecond: Marathon's timestamp precision (its Python client parses at most
/// six fractional digits).
fn now() -> Time {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_millisecond(now.as_millisecond())
        .map_or_else(|_| Time::new(now), Time::new)
}

fn seconds(value: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(u64::try_from(value.unwrap_or(default)).unwrap_or(0))
}

/// Where a command check of this run executes: `docker exec` in its container, or a shell in
/// its process sandbox with its environment.
fn command_context(
    instance: &Instance,
    run: &Launch,
    runtime_id: &str,
    process: Option<&ProcessRuntime>,
) -> Result<CommandContext, String> {
    if run.image.is_some() {
        return Ok(CommandContext::Docker {
            container: runtime_id.to_owned(),
        });
    }
    let process = process.ok_or_else(|| "this node runs no process runtime".to_owned())?;
    Ok(CommandContext::Process {
        sandbox: process.sandbox(&InstanceKey::of(instance)),
        env: run.env.clone(),
    })
}

/// The status fields a hollow instance reports with `Running`: every health check alive
/// (first and last success `now`) and every readiness check ready. Empty without checks.
pub fn hollow_status(template: Option<&AppSpec>, now: Time) -> serde_json::Map<String, Value> {
    let mut fields = serde_json::Map::new();
    let Some(template) = template else {
        return fields;
    };
    let health: Vec<HealthCheckResult> = (0..template.health_checks.as_ref().map_or(0, Vec::len))
        .map(|index| HealthCheckResult {
            index: i32::try_from(index).unwrap_or(i32::MAX),
            alive: true,
            consecutive_failures: 0,
            first_success: Some(now),
            last_success: Some(now),
            ..HealthCheckResult::default()
        })
        .collect();
    if !health.is_empty() {
        fields.insert("health".to_owned(), json!(health));
        fields.insert("healthy".to_owned(), Value::Bool(true));
    }
    let readiness: Vec<ReadinessCheckResult> = template
        .readiness_checks
        .iter()
        .flatten()
        .map(|check| ReadinessCheckResult {
            name: check
                .name
                .clone()
                .unwrap_or_else(|| defaults::READINESS_NAME.to_owned()),
            ready: true,
            last_response: None,
        })
        .collect();
    if !readiness.is_empty() {
        fields.insert("readiness".to_owned(), json!(readiness));
    }
    fields
}

/// What every probe task shares.
struct Shared {
    client: Client,
    prober: Prober,
    writes: Arc<Semaphore>,
}

/// A probed instance: its plan and the token that stops its task.
struct Probing {
    plan: Plan,
    stop: CancellationToken,
}

/// Runs the checks of one agent's instances.
pub struct HealthSupervisor {
    node: String,
    shared: Arc<Shared>,
    launch: LaunchContext,
    process: Option<Arc<ProcessRuntime>>,
    probing: HashMap<InstanceKey, Probing>,
    listing: Option<HashMap<InstanceKey, Instance>>,
    tasks: JoinSet<()>,
    /// Probe this address instead of each instance's ports ([`Plan::aimed_at`]).
    probe_target: Option<SocketAddr>,
}

impl HealthSupervisor {
    /// A supervisor writing through `client` (at most as many writes at once as `writes`
    /// has permits, shared with the agent); `process` locates process sandboxes for command
    /// checks.
    pub fn new(
        client: Client,
        launch: LaunchContext,
        process: Option<Arc<ProcessRuntime>>,
        writes: Arc<Semaphore>,
    ) -> Result<Self, probe::ProberError> {
        Ok(Self {
            node: launch.node.clone(),
            shared: Arc::new(Shared {
                client,
                prober: Prober::new()?,
                writes,
            }),
            launch,
            process,
            probing: HashMap::new(),
            listing: None,
            tasks: JoinSet::new(),
            probe_target: None,
        })
    }

    /// This supervisor probing `target` for every instance's HTTP, TCP and readiness checks
    /// (see [`Plan::aimed_at`]): how a hollow fleet really probes.
    pub fn with_probe_target(mut self, target: SocketAddr) -> Self {
        self.probe_target = Some(target);
        self
    }

    /// Runs until `shutdown` or until `events` ends; probing stops with it.
    pub async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<Event<Instance>>,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                event = events.recv() => match event {
                    Some(event) => self.on_event(event),
                    None => break,
                },
                Some(joined) = self.tasks.join_next() => {
                    if let Err(error) = joined
                        && error.is_panic()
                    {
                        tracing::error!(node = %self.node, %error, "a health check task panicked");
                    }
                }
            }
        }
        for probing in self.probing.values() {
            probing.stop.cancel();
        }
        self.tasks.shutdown().await;
    }

    fn on_event(&mut self, event: Event<Instance>) {
        match event {
            Event::Init => self.listing = Some(HashMap::new()),
            Event::InitApply(instance) => {
                self.listing
                    .get_or_insert_with(HashMap::new)
                    .insert(InstanceKey::of(&instance), instance);
            }
            Event::InitDone => {
                let listing = self.listing.take().unwrap_or_default();
                let gone: Vec<InstanceKey> = self
                    .probing
                    .keys()
                    .filter(|key| !listing.contains_key(*key))
                    .cloned()
                    .collect();
                for key in gone {
                    self.stop(&key);
                }
                for instance in listing.values() {
                    self.sync(instance);
                }
            }
            Event::Apply(instance) => self.sync(&instance),
            Event::Delete(instance) => self.stop(&InstanceKey::of(&instance)),
        }
    }

    fn stop(&mut self, key: &InstanceKey) {
        if let Some(probing) = self.probing.remove(key) {
            tracing::debug!(node = %self.node, instance = %key, "health checks stopped");
            probing.stop.cancel();
        }
    }

    /// Starts, restarts or stops probing `instance` to match its current state.
    fn sync(&mut self, instance: &Instance) {
        let key = InstanceKey::of(instance);
        let plan = Plan::of(instance, &self.launch, self.process.as_deref()).and_then(|plan| {
            match self.probe_target {
                Some(target) => plan.aimed_at(target),
                None => Some(plan),
            }
        });
        match (plan, self.probing.get(&key)) {
            (None, None) => {}
            (None, Some(_)) => self.stop(&key),
            (Some(plan), Some(probing)) if probing.plan == plan => {}
            (Some(plan), _) => {
                self.stop(&key);
                let status = instance.status.clone().unwrap_or_default();
                tracing::info!(
                    node = %self.node,
                    app = %instance.spec.app,
                    instance = %key,
                    health_checks = plan.health.len(),
                    readiness_checks = plan.readiness.len(),
                    "health checks started"
                );
                let stop = CancellationToken::new();
                self.tasks.spawn(probe_instance(
                    Arc::clone(&self.shared),
                    plan.clone(),
                    status.health,
                    status.readiness,
                    stop.clone(),
                ));
                self.probing.insert(key, Probing { plan, stop });
            }
        }
    }
}

/// A probe's report to its instance's task.
enum Report {
    Health(usize, Outcome),
    Readiness(usize, ReadinessCheckResult),
}

/// Probes one run of one instance until `stop`, writing changed results.
async fn probe_instance(
    shared: Arc<Shared>,
    plan: Plan,
    seeded_health: Vec<HealthCheckResult>,
    seeded_readiness: Vec<ReadinessCheckResult>,
    stop: CancellationToken,
) {
    let mut health: Vec<HealthCheckResult> = plan
        .health
        .iter()
        .map(|check| {
            seeded_health
                .iter()
                .find(|seeded| seeded.index == check.index)
                .cloned()
                .unwrap_or(HealthCheckResult {
                    index: check.index,
                    ..HealthCheckResult::default()
                })
        })
        .collect();
    let mut readiness: Vec<ReadinessCheckResult> = plan
        .readiness
        .iter()
        .map(|check| {
            seeded_readiness
                .iter()
                .find(|seeded| seeded.name == check.name)
                .cloned()
                .unwrap_or(ReadinessCheckResult {
                    name: check.name.clone(),
                    ..ReadinessCheckResult::default()
                })
        })
        .collect();
    // What the status holds: a seeded result counts as written.
    let mut written_health: Vec<Option<HealthCheckResult>> = plan
        .health
        .iter()
        .map(|check| {
            seeded_health
                .iter()
                .find(|seeded| seeded.index == check.index)
                .cloned()
        })
        .collect();
    let mut written_readiness: Vec<Option<ReadinessCheckResult>> = plan
        .readiness
        .iter()
        .map(|check| {
            seeded_readiness
                .iter()
                .find(|seeded| seeded.name == check.name)
                .cloned()
        })
        .collect();
    let (reports_tx, mut reports) = mpsc::channel(16);
    let mut loops = JoinSet::new();
    for (slot, check) in plan.health.iter().enumerate() {
        loops.spawn(health_loop(
            Arc::clone(&shared),
            check.clone(),
            slot,
            plan.started_at,
            reports_tx.clone(),
        ));
    }
    for (slot, check) in plan.readiness.iter().enumerate() {
        if readiness[slot].ready {
            continue;
        }
        loops.spawn(readiness_loop(
            Arc::clone(&shared),
            check.clone(),
            slot,
            reports_tx.clone(),
        ));
    }
    drop(reports_tx);
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut reporting = true;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            report = reports.recv(), if reporting => match report {
                Some(Report::Health(slot, outcome)) => {
                    let (Some(result), Some(check)) = (health.get(slot), plan.health.get(slot)) else {
                        continue;
                    };
                    let next = check::apply(result, &outcome, plan.started_at, check.grace_seconds, now());
                    if let Outcome::Unhealthy(cause) = &outcome
                        && next.consecutive_failures > result.consecutive_failures
                    {
                        tracing::info!(
                            instance = %plan.key,
                            check = check.index,
                            failures = next.consecutive_failures,
                            %cause,
                            "health check failed"
                        );
                    }
                    health[slot] = next;
                }
                Some(Report::Readiness(slot, result)) => {
                    if let Some(current) = readiness.get_mut(slot) {
                        *current = result;
                    }
                }
                // Every loop ended (readiness reached, no health checks): wait for `stop`.
                None => reporting = false,
            },
            () = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
        let health_changed = health.iter().zip(&written_health).any(|(result, written)| {
            written
                .as_ref()
                .is_none_or(|written| check::worth_writing(written, result))
                && (result.last_success.is_some() || result.last_failure.is_some())
        });
        let readiness_changed =
            readiness
                .iter()
                .zip(&written_readiness)
                .any(|(result, written)| {
                    written
                        .as_ref()
                        .is_none_or(|written| check::readiness_changed(written, result))
                });
        if !health_changed && !readiness_changed {
            retry_at = None;
            continue;
        }
        let mut status = serde_json::Map::new();
        if health_changed {
            status.insert("health".to_owned(), json!(health));
            status.insert("healthy".to_owned(), json!(check::all_alive(&health)));
        }
        if readiness_changed {
            status.insert("readiness".to_owned(), json!(readiness));
        }
        let patch = json!({ "status": status });
        match write(&shared, &plan.key, &patch).await {
            Ok(()) => {
                if health_changed {
                    written_health = health.iter().cloned().map(Some).collect();
                }
                if readiness_changed {
                    written_readiness = readiness.iter().cloned().map(Some).collect();
                }
                retry_at = None;
            }
            Err(error) => {
                tracing::warn!(instance = %plan.key, %error, "cannot write health results yet; retrying");
                retry_at = Some(tokio::time::Instant::now() + WRITE_RETRY);
            }
        }
    }
    loops.shutdown().await;
}

async fn write(shared: &Shared, key: &InstanceKey, patch: &Value) -> Result<(), String> {
    let _permit = shared
        .writes
        .acquire()
        .await
        .map_err(|error| error.to_string())?;
    let api: Api<Instance> = Api::namespaced(shared.client.clone(), &key.namespace);
    match api.patch_status(&key.name, patch).await {
        Ok(_) => Ok(()),
        // Deleted meanwhile: the supervisor stops this task on the Delete event.
        Err(error) if error.is_not_found() => Ok(()),
        Err(error) => Err(format!("write the health of {key}: {error}")),
    }
}

/// How long to wait before the first probe: `delay` after `started_at`.
fn first_delay(started_at: Option<Time>, delay: Duration) -> Duration {
    let Some(started_at) = started_at else {
        return delay;
    };
    let elapsed = now().timestamp().duration_since(started_at.timestamp());
    let elapsed = Duration::try_from(elapsed).unwrap_or(Duration::ZERO);
    delay.saturating_sub(elapsed)
}

/// Probes one health check every `interval` after its delay.
async fn health_loop(
    shared: Arc<Shared>,
    check: HealthPlan,
    slot: usize,
    started_at: Option<Time>,
    reports: mpsc::Sender<Report>,
) {
    tokio::time::sleep(first_delay(started_at, check.delay)).await;
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let outcome = run_health_probe(&shared.prober, &check).await;
        if reports.send(Report::Health(slot, outcome)).await.is_err() {
            return;
        }
    }
}

/// One health probe's outcome.
pub async fn run_health_probe(prober: &Prober, check: &HealthPlan) -> Outcome {
    match &check.probe {
        Probe::Http {
            scheme,
            address,
            path,
            ignore_http1xx,
        } => match prober.http(*scheme, *address, path, check.timeout).await {
            Ok(answer) => check::http_outcome(answer.status, *ignore_http1xx),
            Err(cause) => Outcome::Unhealthy(cause),
        },
        Probe::Tcp { address } => match prober.tcp(*address, check.timeout).await {
            Ok(()) => Outcome::Healthy,
            Err(cause) => Outcome::Unhealthy(cause),
        },
        Probe::Command { context, command } => {
            match prober.command(context, command, check.timeout).await {
                Ok(()) => Outcome::Healthy,
                Err(cause) => Outcome::Unhealthy(cause),
            }
        }
        Probe::Unusable(cause) => Outcome::Unhealthy(cause.clone()),
    }
}

/// Probes one readiness check every `interval` until it is ready.
async fn readiness_loop(
    shared: Arc<Shared>,
    check: ReadinessPlan,
    slot: usize,
    reports: mpsc::Sender<Report>,
) {
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let result = run_readiness_probe(&shared.prober, &check).await;
        let ready = result.ready;
        if reports.send(Report::Readiness(slot, result)).await.is_err() || ready {
            return;
        }
    }
}

/// One readiness probe's result.
pub async fn run_readiness_probe(prober: &Prober, check: &ReadinessPlan) -> ReadinessCheckResult {
    let answer = match &check.target {
        Ok((scheme, address)) => prober
            .http(*scheme, *address, &check.path, check.timeout)
            .await
            .ok(),
        Err(_) => None,
    };
    ReadinessCheckResult {
        name: check.name.clone(),
        ready: answer
            .as_ref()
            .is_some_and(|answer| check::ready(answer.status, &check.codes)),
        last_response: answer
            .filter(|_| check.preserve_last_response)
            .map(|answer| HttpResponseSummary {
                status: i32::from(answer.status),
                content_type: answer.content_type,
                body: Some(answer.body),
            }),
    }
}

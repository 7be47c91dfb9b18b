//! Pacer's metrics: the one place that owns the metric families.
//!
//! A process has one [`Metrics`] ([`global`]): a Prometheus registry (prefix `pacer_`) and the
//! typed families registered in it, grouped by who records them —
//!
//! - [`ApiMetrics`] (the API server's middleware): `pacer_apiserver_requests_total` and
//!   `pacer_apiserver_request_duration_seconds` by verb, resource and code, and
//!   `pacer_apiserver_open_watches` by resource;
//! - [`ControllerMetrics`] (the controllers' round loop and election):
//!   `pacer_controller_reconcile_duration_seconds`, `pacer_controller_queue_depth`,
//!   `pacer_controller_errors_total` and `pacer_controller_leader`, by controller;
//! - [`ClusterMetrics`] (the controllers' instance census): `pacer_instances` by phase,
//!   `pacer_instances_pending`, `pacer_instance_health` by status, `pacer_health_checks` by
//!   result, `pacer_health_check_failures_total` and `pacer_placements_total`;
//! - [`OfferMetrics`] (the offer broker's rounds): `pacer_offers_open`, the counters
//!   `pacer_offers_made_total`, `pacer_offers_accepted_total`, `pacer_offers_declined_total`,
//!   `pacer_offers_expired_total` and `pacer_offers_rescinded_total`, and per role
//!   `pacer_offer_role_dominant_share` and `pacer_offer_role_allocated` by resource;
//! - [`StoreMetrics`] (the [`InstrumentedStore`] decorator):
//!   `pacer_store_request_duration_seconds` and `pacer_store_errors_total` by operation.
//!
//! The API server serves [`Metrics::encode_prometheus`] at `/metrics` (or, by the `Accept`
//! header, [`Metrics::encode_openmetrics`], or Marathon's Dropwizard JSON from
//! [`Metrics::dropwizard_json`]); [`push`] sends the same samples to StatsD and Graphite. Families
//! hold their label sets in memory for the life of the process, so every label here has a
//! small, bounded set of values (no object names).

pub mod dropwizard;
pub mod exposition;
pub mod push;
pub mod store;

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::registry::{Registry, Unit};

pub use store::InstrumentedStore;
// The metric types of the families' series, for code that keeps a series' handle.
pub use prometheus_client::metrics::{counter::Counter, gauge::Gauge, histogram::Histogram};

/// The `Content-Type` of [`Metrics::encode_prometheus`] (Prometheus text format 0.0.4).
pub const PROMETHEUS_CONTENT_TYPE: &str =
    prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The `Content-Type` of [`Metrics::encode_openmetrics`].
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the registry could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A family failed to write itself.
    #[error("encode the metrics: {0}")]
    Encode(#[from] std::fmt::Error),
    /// The encoded registry could not be read back.
    #[error("read the encoded metrics: {0}")]
    Parse(#[from] exposition::ParseError),
}

/// The process-wide metrics: created on first use, shared by every crate in the process.
pub fn global() -> &'static Metrics {
    static GLOBAL: OnceLock<Metrics> = OnceLock::new();
    GLOBAL.get_or_init(Metrics::new)
}

/// A registry and its families (see the crate docs). Use [`global`]; tests may build their own.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// What the API server records.
    pub api: ApiMetrics,
    /// What the controllers record.
    pub controllers: ControllerMetrics,
    /// What the instance census records.
    pub cluster: ClusterMetrics,
    /// What the store decorator records.
    pub store: StoreMetrics,
    /// What the offer broker records.
    pub offers: OfferMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every family registered (and the fixed label sets at zero).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("pacer");
        let api = ApiMetrics::register(registry.sub_registry_with_prefix("apiserver"));
        let controllers =
            ControllerMetrics::register(registry.sub_registry_with_prefix("controller"));
        let cluster = ClusterMetrics::register(&mut registry);
        let store = StoreMetrics::register(registry.sub_registry_with_prefix("store"));
        let offers = OfferMetrics::register(&mut registry);
        Self {
            registry,
            api,
            controllers,
            cluster,
            store,
            offers,
        }
    }

    /// Every sample in the Prometheus text format, version 0.0.4 (what `promtool check
    /// metrics` and Prometheus' default scrape read).
    pub fn encode_prometheus(&self) -> Result<String, MetricsError> {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// Every sample as Marathon's `GET /metrics` JSON ([`dropwizard`]).
    pub fn dropwizard_json(&self) -> Result<serde_json::Value, MetricsError> {
        let samples = exposition::parse(&self.encode_prometheus()?)?;
        Ok(dropwizard::registry_json(&samples))
    }

    /// Every sample in the OpenMetrics text format (ends with `# EOF`).
    pub fn encode_openmetrics(&self) -> Result<String, MetricsError> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Seconds as a histogram observation.
fn seconds(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64()
}

/// A histogram of latencies from 0.5 ms to about 16 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// A histogram of store latencies from 0.1 ms to about 3 s.
fn store_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// A histogram of round durations from 1 ms to about 65 s.
fn round_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

/// Labels of one kind of API request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Kubernetes' verb in capitals (`GET`, `LIST`, `WATCH`, `POST`, `PUT`, `PATCH`, `APPLY`,
    /// `DELETE`, `DELETECOLLECTION`), or the HTTP method outside resource URLs.
    pub verb: &'static str,
    /// The resource (`apps`, `apps/status`, `v2/apps`, `/metrics`, …; `other` when unknown).
    pub resource: String,
    /// The HTTP status code.
    pub code: String,
}

/// Labels naming a resource.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    /// The resource being watched.
    pub resource: String,
}

/// The API server's families.
#[derive(Clone, Debug)]
pub struct ApiMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily<RequestLabels>,
    open_watches: Family<ResourceLabels, Gauge>,
}

impl ApiMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            open_watches: Family::default(),
        };
        registry.register(
            "requests",
            "API requests answered, by verb, resource and HTTP status code",
            metrics.requests.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Time until an API request's response head (for watches: until the stream opened), \
             by verb, resource and HTTP status code",
            Unit::Seconds,
            metrics.duration.clone(),
        );
        registry.register(
            "open_watches",
            "Watch and event streams open now, by resource",
            metrics.open_watches.clone(),
        );
        metrics
    }

    /// Records one answered request.
    pub fn observe_request(&self, labels: RequestLabels, elapsed: Duration) {
        self.duration
            .get_or_create(&labels)
            .observe(seconds(elapsed));
        self.requests.get_or_create(&labels).inc();
    }

    /// Counts a watch of `resource` as open until the returned guard is dropped.
    pub fn watch_opened(&self, resource: String) -> OpenWatch {
        let gauge = self
            .open_watches
            .get_or_create_owned(&ResourceLabels { resource });
        gauge.inc();
        OpenWatch(gauge)
    }
}

/// An open watch, counted in `pacer_apiserver_open_watches` until dropped.
#[derive(Debug)]
pub struct OpenWatch(Gauge);

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Labels naming a controller.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// The controller's name (its election name, e.g. `placement`).
    pub controller: String,
}

/// The controllers' families.
#[derive(Clone, Debug)]
pub struct ControllerMetrics {
    reconcile: HistogramFamily<ControllerLabels>,
    queue_depth: Family<ControllerLabels, Gauge>,
    errors: Family<ControllerLabels, Counter>,
    leader: Family<ControllerLabels, Gauge>,
}

/// One controller's series, cheap to clone and to record into.
#[derive(Clone, Debug)]
pub struct ControllerSeries {
    /// How long each round (one reconcile of the controller's whole cache) took.
    pub reconcile: Histogram,
    /// Watched changes that wait for the next round.
    pub queue_depth: Gauge,
    /// Runs that ended with an error.
    pub errors: Counter,
    /// 1 while this process leads the controller's election, else 0.
    pub leader: Gauge,
}

impl ControllerMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            reconcile: Family::new_with_constructor(round_histogram),
            queue_depth: Family::default(),
            errors: Family::default(),
            leader: Family::default(),
        };
        registry.register_with_unit(
            "reconcile_duration",
            "Duration of a controller's reconcile rounds (decide over the caches, then write)",
            Unit::Seconds,
            metrics.reconcile.clone(),
        );
        registry.register(
            "queue_depth",
            "Watched changes waiting for a controller's next round",
            metrics.queue_depth.clone(),
        );
        registry.register(
            "errors",
            "Controller runs that ended with an error (the controller then campaigns again)",
            metrics.errors.clone(),
        );
        registry.register(
            "leader",
            "Whether this process leads the controller's election (1) or not (0)",
            metrics.leader.clone(),
        );
        metrics
    }

    /// The series of `controller`, created (at zero) on first use.
    pub fn series(&self, controller: &str) -> ControllerSeries {
        let labels = ControllerLabels {
            controller: controller.to_owned(),
        };
        ControllerSeries {
            reconcile: self.reconcile.get_or_create_owned(&labels),
            queue_depth: self.queue_depth.get_or_create_owned(&labels),
            errors: self.errors.get_or_create_owned(&labels),
            leader: self.leader.get_or_create_owned(&labels),
        }
    }
}

/// Labels naming an Instance phase.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// The phase, as in `status.phase` (`Scheduled`, `Running`, …).
    pub phase: &'static str,
}

/// Labels of a health verdict.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HealthLabels {
    /// `healthy` or `unhealthy`.
    pub status: &'static str,
}

/// Labels of a health check result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    /// `passing` or `failing`.
    pub result: &'static str,
}

/// The cluster's state as the instance census sees it.
#[derive(Clone, Debug)]
pub struct ClusterMetrics {
    instances: Family<PhaseLabels, Gauge>,
    /// Instances waiting for a node: goal Running, unbound, not terminal.
    pub pending: Gauge,
    health: Family<HealthLabels, Gauge>,
    checks: Family<CheckLabels, Gauge>,
    /// Health check failures counted by agents, as the census saw them.
    pub check_failures: Counter,
    /// Instances seen being bound to a node.
    pub placements: Counter,
}

impl ClusterMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            instances: Family::default(),
            pending: Gauge::default(),
            health: Family::default(),
            checks: Family::default(),
            check_failures: Counter::default(),
            placements: Counter::default(),
        };
        registry.register("instances", "Instances by phase", metrics.instances.clone());
        registry.register(
            "instances_pending",
            "Instances waiting for a node (goal Running, not bound, not terminal)",
            metrics.pending.clone(),
        );
        registry.register(
            "instance_health",
            "Non-terminal instances with health checks, by their latest verdict",
            metrics.health.clone(),
        );
        registry.register(
            "health_checks",
            "Latest results of every instance health check, by result",
            metrics.checks.clone(),
        );
        registry.register(
            "health_check_failures",
            "Health check failures reported by agents since this process started",
            metrics.check_failures.clone(),
        );
        registry.register(
            "placements",
            "Instances bound to a node since this process started",
            metrics.placements.clone(),
        );
        for status in ["healthy", "unhealthy"] {
            metrics.health.get_or_create_owned(&HealthLabels { status });
        }
        for result in ["passing", "failing"] {
            metrics.checks.get_or_create_owned(&CheckLabels { result });
        }
        metrics
    }

    /// The gauge of instances in `phase`.
    pub fn instances(&self, phase: &'static str) -> Gauge {
        self.instances.get_or_create_owned(&PhaseLabels { phase })
    }

    /// The gauge of instances whose verdict is `healthy` or `unhealthy`.
    pub fn health(&self, healthy: bool) -> Gauge {
        let status = if healthy { "healthy" } else { "unhealthy" };
        self.health.get_or_create_owned(&HealthLabels { status })
    }

    /// The gauge of health checks `passing` or `failing`.
    pub fn checks(&self, passing: bool) -> Gauge {
        let result = if passing { "passing" } else { "failing" };
        self.checks.get_or_create_owned(&CheckLabels { result })
    }
}

/// Labels naming a store operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// The `Store` method (`get`, `list`, `txn`, `watch`, `lease_keep_alive`, …).
    pub operation: &'static str,
}

/// The store's families.
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    duration: HistogramFamily<OperationLabels>,
    errors: Family<OperationLabels, Counter>,
}

impl StoreMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            duration: Family::new_with_constructor(store_histogram),
            errors: Family::default(),
        };
        registry.register_with_unit(
            "request_duration",
            "Latency of store calls (for watch: until the stream opened), by operation",
            Unit::Seconds,
            metrics.duration.clone(),
        );
        registry.register(
            "errors",
            "Store calls that returned an error, by operation",
            metrics.errors.clone(),
        );
        metrics
    }

    /// Records one store call.
    pub fn observe(&self, operation: &'static str, elapsed: Duration, ok: bool) {
        let labels = OperationLabels { operation };
        self.duration
            .get_or_create(&labels)
            .observe(seconds(elapsed));
        if !ok {
            self.errors.get_or_create(&labels).inc();
        }
    }
}

/// Labels naming a role of the offer broker.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    /// The role (`Framework.spec.role`; `*` for the default role).
    pub role: String,
}

/// Labels naming a role and one of its resources.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleResourceLabels {
    /// The role.
    pub role: String,
    /// `cpus`, `mem` (MiB), `disk` (MiB) or `gpus`.
    pub resource: &'static str,
}

/// What one role holds, as the offer broker's last round saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct RoleAllocation {
    /// The role.
    pub role: String,
    /// Its dominant share of the cluster (0–1), before its weight.
    pub dominant_share: f64,
    /// What it holds (bound instances plus open offers): cpus, mem (MiB), disk (MiB), gpus.
    pub cpus: f64,
    /// Memory, MiB.
    pub mem: f64,
    /// Disk, MiB.
    pub disk: f64,
    /// GPUs.
    pub gpus: f64,
}

/// A gauge of floating-point values.
type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// The offer broker's families. Roles are few (each is a registered framework's role), and a
/// role that no framework has any more is removed at the next round.
#[derive(Clone, Debug)]
pub struct OfferMetrics {
    /// Offers open (made, not yet answered, expired or rescinded) after the last round.
    pub open: Gauge,
    /// Offers made since this process started.
    pub made: Counter,
    /// Offers accepted (their Instances created) since this process started.
    pub accepted: Counter,
    /// Offers declined since this process started.
    pub declined: Counter,
    /// Offers expired since this process started.
    pub expired: Counter,
    /// Offers rescinded since this process started.
    pub rescinded: Counter,
    dominant_share: Family<RoleLabels, FloatGauge>,
    allocated: Family<RoleResourceLabels, FloatGauge>,
    roles: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl OfferMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            open: Gauge::default(),
            made: Counter::default(),
            accepted: Counter::default(),
            declined: Counter::default(),
            expired: Counter::default(),
            rescinded: Counter::default(),
            dominant_share: Family::default(),
            allocated: Family::default(),
            roles: std::sync::Arc::default(),
        };
        registry.register(
            "offers_open",
            "Offers open after the offer broker's last round",
            metrics.open.clone(),
        );
        for (name, help, counter) in [
            (
                "offers_made",
                "Offers made by the offer broker",
                &metrics.made,
            ),
            (
                "offers_accepted",
                "Offers accepted (their instances created bound to the offered node)",
                &metrics.accepted,
            ),
            (
                "offers_declined",
                "Offers declined by their framework",
                &metrics.declined,
            ),
            (
                "offers_expired",
                "Offers not answered before they expired",
                &metrics.expired,
            ),
            (
                "offers_rescinded",
                "Offers withdrawn by the offer broker (node lost or unschedulable, resources \
                 taken, framework gone or suppressed)",
                &metrics.rescinded,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "offer_role_dominant_share",
            "Dominant share of the cluster (0-1) held by each role: bound instances plus open \
             offers, as Dominant Resource Fairness weighs it before the role's weight",
            metrics.dominant_share.clone(),
        );
        registry.register(
            "offer_role_allocated",
            "Resources held by each role (bound instances plus open offers), by resource: cpus, \
             mem (MiB), disk (MiB), gpus",
            metrics.allocated.clone(),
        );
        metrics
    }

    /// Sets the per-role series to `roles` (every role the broker weighs now); the series of
    /// roles not among them are removed.
    pub fn set_roles(&self, roles: &[RoleAllocation]) {
        let mut known = self
            .roles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for gone in known
            .iter()
            .filter(|role| !roles.iter().any(|now| now.role == **role))
        {
            self.dominant_share
                .remove(&RoleLabels { role: gone.clone() });
            for resource in ["cpus", "mem", "disk", "gpus"] {
                self.allocated.remove(&RoleResourceLabels {
                    role: gone.clone(),
                    resource,
                });
            }
        }
        for allocation in roles {
            self.dominant_share
                .get_or_create(&RoleLabels {
                    role: allocation.role.clone(),
                })
                .set(allocation.dominant_share);
            for (resource, value) in [
                ("cpus", allocation.cpus),
                ("mem", allocation.mem),
                ("disk", allocation.disk),
                ("gpus", allocation.gpus),
            ] {
                self.allocated
                    .get_or_create(&RoleResourceLabels {
                        role: allocation.role.clone(),
                        resource,
                    })
                    .set(value);
            }
        }
        *known = roles
            .iter()
            .map(|allocation| allocation.role.clone())
            .collect();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn offer_families_follow_the_roles() {
        let metrics = Metrics::new();
        let batch = RoleAllocation {
            role: "batch".to_owned(),
            dominant_share: 0.25,
            cpus: 2.5,
            mem: 1024.0,
            disk: 0.0,
            gpus: 0.0,
        };
        let web = RoleAllocation {
            role: "web".to_owned(),
            dominant_share: 0.5,
            ..batch.clone()
        };
        metrics.offers.set_roles(&[batch.clone(), web]);
        metrics.offers.open.set(3);
        metrics.offers.accepted.inc();
        let text = metrics.encode_prometheus().unwrap();
        for line in [
            "pacer_offers_open 3",
            "pacer_offers_accepted_total 1",
            "pacer_offers_declined_total 0",
            "pacer_offers_rescinded_total 0",
            "pacer_offer_role_dominant_share{role=\"batch\"} 0.25",
            "pacer_offer_role_dominant_share{role=\"web\"} 0.5",
            "pacer_offer_role_allocated{role=\"batch\",resource=\"cpus\"} 2.5",
            "pacer_offer_role_allocated{role=\"batch\",resource=\"mem\"} 1024.0",
        ] {
            assert!(
                text.lines().any(|candidate| candidate == line),
                "{line:?} missing from:\n{text}"
            );
        }
        // A role no framework has any more goes.
        metrics.offers.set_roles(&[batch]);
        let text = metrics.encode_prometheus().unwrap();
        assert!(!text.contains("role=\"web\""), "{text}");
        assert!(text.contains("pacer_offer_role_dominant_share{role=\"batch\"} 0.25\n"));
    }

    #[test]
    fn families_are_named_as_documented() {
        let metrics = Metrics::new();
        metrics.api.observe_request(
            RequestLabels {
                verb: "LIST",
                resource: "apps".to_owned(),
                code: "200".to_owned(),
            },
            Duration::from_millis(3),
        );
        let watch = metrics.api.watch_opened("apps".to_owned());
        let series = metrics.controllers.series("placement");
        series.leader.set(1);
        series.reconcile.observe(0.01);
        metrics.cluster.instances("Running").set(2);
        metrics
            .store
            .observe("txn", Duration::from_micros(300), false);
        let text = metrics.encode_prometheus().unwrap();
        for line in [
            "# TYPE pacer_apiserver_requests_total counter",
            "pacer_apiserver_requests_total{verb=\"LIST\",resource=\"apps\",code=\"200\"} 1",
            "# TYPE pacer_apiserver_request_duration_seconds histogram",
            "pacer_apiserver_open_watches{resource=\"apps\"} 1",
            "pacer_controller_leader{controller=\"placement\"} 1",
            "pacer_controller_reconcile_duration_seconds_count{controller=\"placement\"} 1",
            "pacer_controller_errors_total{controller=\"placement\"} 0",
            "pacer_instances{phase=\"Running\"} 2",
            "pacer_instances_pending 0",
            "pacer_instance_health{status=\"healthy\"} 0",
            "pacer_health_checks{result=\"failing\"} 0",
            "pacer_health_check_failures_total 0",
            "pacer_placements_total 0",
            "pacer_store_request_duration_seconds_count{operation=\"txn\"} 1",
            "pacer_store_errors_total{operation=\"txn\"} 1",
        ] {
            assert!(
                text.lines().any(|candidate| candidate == line),
                "{line:?} missing from:\n{text}"
            );
        }
        drop(watch);
        let text = metrics.encode_prometheus().unwrap();
        assert!(text.contains("pacer_apiserver_open_watches{resource=\"apps\"} 0\n"));
        let open = metrics.encode_openmetrics().unwrap();
        assert!(open.ends_with("# EOF\n"), "{open}");
    }
}

//! Leader election over the HTTP API, in the spirit of client-go's `leaderelection`: any number
//! of replicas of a controller run a [`LeaderElector`] on one `Lease`; one holds it at a time,
//! runs the controller, and writes through a *fenced* client, so a deposed leader's writes fail
//! even when they race the takeover.
//!
//! The protocol (all compare-and-swap on the Lease's `resourceVersion`):
//! - a candidate creates the Lease when it does not exist, or takes it over when it is free
//!   (no holder) or expired — *expired* as this candidate observes it: the lease record has not
//!   changed for `leaseDurationSeconds` by the candidate's own monotonic clock (client-go's
//!   rule, so clock skew between replicas does not matter);
//! - the holder renews every `retry_period` (a plain update; same term); if it cannot renew
//!   for `renew_deadline`, or sees another holder, it stops leading at once;
//! - on shutdown it releases the lease (no holder, 1 s duration) so a successor need not wait.
//!
//! The server turns every holder change into a new *term* and checks `Pacer-Fence` headers
//! against it (see the API server's `fence` module): [`Leadership::client`] is a
//! [`Client::fenced`] handle whose every write is applied only while this term lasts, and
//! answered 409 `Conflict` naming the fence otherwise.
//!
//! ```no_run
//! # async fn demo(client: pacer_client::Client) -> Result<(), pacer_client::runtime::ElectionError> {
//! use pacer_client::runtime::{ElectionConfig, LeaderElector};
//! use tokio_util::sync::CancellationToken;
//!
//! let config = ElectionConfig::new("default", "my-controller", "replica-1");
//! let elector = LeaderElector::new(client, config)?;
//! elector
//!     .run(CancellationToken::new(), |leader| async move {
//!         // Run the controller here; write with `leader.client()`. The future is dropped as
//!         // soon as leadership is lost.
//!         leader.token().cancelled().await;
//!     })
//!     .await;
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use pacer_schemas::Time;
use pacer_schemas::lease::{Lease, LeaseFence, LeaseSpec};
use pacer_schemas::meta::ObjectMeta;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::Api;
use crate::client::Client;
use crate::error::Error;
use crate::params::PostParams;

/// client-go's `JitterFactor`: `renew_deadline` must exceed `retry_period` by this factor.
const JITTER_FACTOR: f64 = 1.2;

/// How an election is run: which Lease, who this candidate is, and its timing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct ElectionConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease (one per controller).
    pub lease_name: String,
    /// Who this candidate is; unique per replica (e.g. `host-pid`).
    pub identity: String,
    /// How long others wait after the last observed renewal before taking over. Whole seconds
    /// on the Lease (rounded up). Default 15 s.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leading. Default 10 s.
    pub renew_deadline: Duration,
    /// Pause between attempts to acquire or renew. Default 2 s.
    pub retry_period: Duration,
    /// Whether the leader releases the Lease on shutdown. Default true.
    pub release_on_cancel: bool,
}

impl ElectionConfig {
    /// An election on Lease `namespace/lease_name` as `identity`, with client-go's defaults
    /// (15 s lease, 10 s renew deadline, 2 s retry period), releasing on shutdown.
    pub fn new(
        namespace: impl Into<String>,
        lease_name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            lease_name: lease_name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            release_on_cancel: true,
        }
    }

    /// Sets the lease duration, renew deadline and retry period.
    pub fn timing(
        mut self,
        lease_duration: Duration,
        renew_deadline: Duration,
        retry_period: Duration,
    ) -> Self {
        self.lease_duration = lease_duration;
        self.renew_deadline = renew_deadline;
        self.retry_period = retry_period;
        self
    }

    /// Sets whether the leader releases the Lease on shutdown.
    pub fn release_on_cancel(mut self, release: bool) -> Self {
        self.release_on_cancel = release;
        self
    }

    /// The fence of this candidate's leadership.
    pub fn fence(&self) -> LeaseFence {
        LeaseFence::new(&self.namespace, &self.lease_name, &self.identity)
    }

    /// `leaseDurationSeconds`: the lease duration in whole seconds, rounded up.
    fn duration_seconds(&self) -> i32 {
        let millis = self.lease_duration.as_millis();
        i32::try_from(millis.div_ceil(1000)).unwrap_or(i32::MAX)
    }

    /// Checks client-go's rules: lease duration > renew deadline > 1.2 × retry period > 0,
    /// and a fence that can be sent (valid names, a non-empty printable identity).
    fn check(&self) -> Result<(), ElectionError> {
        let invalid = |reason: String| Err(ElectionError::InvalidConfig(reason));
        if self.retry_period.is_zero() {
            return invalid("retry_period must be greater than zero".to_owned());
        }
        if self.lease_duration <= self.renew_deadline {
            return invalid(format!(
                "lease_duration ({:?}) must be greater than renew_deadline ({:?})",
                self.lease_duration, self.renew_deadline
            ));
        }
        if self.renew_deadline.as_secs_f64() <= JITTER_FACTOR * self.retry_period.as_secs_f64() {
            return invalid(format!(
                "renew_deadline ({:?}) must be greater than {JITTER_FACTOR} × retry_period ({:?})",
                self.renew_deadline, self.retry_period
            ));
        }
        LeaseFence::parse(&self.fence().to_string())?;
        Ok(())
    }
}

/// Why an elector cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    /// The timing breaks a rule (see [`ElectionConfig`]).
    #[error("invalid leader election config: {0}")]
    InvalidConfig(String),
    /// The namespace, lease name or identity cannot form a `Pacer-Fence` header.
    #[error("invalid leader election config: {0}")]
    InvalidFence(#[from] pacer_schemas::lease::FenceParseError),
    /// The fenced client could not be made.
    #[error("invalid leader election config: {0}")]
    Client(#[from] Error),
}

/// Who leads, as this elector last saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderState {
    /// The holder of the Lease, `None` when free or not yet read.
    pub leader: Option<String>,
    /// Whether this elector leads.
    pub leading: bool,
}

/// One term of leadership, handed to the code that runs while leading.
#[derive(Clone, Debug)]
pub struct Leadership {
    client: Client,
    fence: LeaseFence,
    token: CancellationToken,
}

impl Leadership {
    /// The fenced client: write with it (reads work too). Its writes fail with 409 `Conflict`
    /// once this term is over.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The fence every request of [`Self::client`] carries.
    pub fn fence(&self) -> &LeaseFence {
        &self.fence
    }

    /// Cancelled when the term ends (leadership lost or shutdown); pass it to
    /// [`Controller::shutdown_on`](crate::runtime::Controller::shutdown_on).
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }
}

/// What one look at the Lease says to do.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    /// This candidate holds it: renew.
    Renew,
    /// Free, or expired as observed: take it over (a new term).
    TakeOver,
    /// Someone else holds it.
    Wait {
        /// The holder.
        holder: String,
    },
}

/// The pure decision of one attempt: renew our own lease, take over a free or expired one,
/// or wait for the holder.
fn next_step(spec: &LeaseSpec, identity: &str, expired: bool) -> Step {
    match spec.holder() {
        Some(holder) if holder == identity => Step::Renew,
        Some(holder) if !expired => Step::Wait {
            holder: holder.to_owned(),
        },
        _ => Step::TakeOver,
    }
}

/// The Lease record as last observed, and when (monotonic): expiry is judged by how long it
/// has not changed.
#[derive(Debug)]
struct Observation {
    record: LeaseSpec,
    at: Instant,
}

impl Observation {
    fn expired(&self, now: Instant) -> bool {
        let seconds = u64::try_from(self.record.duration_seconds()).unwrap_or(0);
        now.duration_since(self.at) >= Duration::from_secs(seconds)
    }
}

/// What one attempt achieved.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Attempt {
    /// This candidate holds the lease now.
    Leading,
    /// Another candidate holds it.
    HeldBy(String),
    /// A concurrent write won the race; try again.
    Raced,
}

/// How one term ended.
enum Term {
    Shutdown,
    Lost,
    Ended,
}

/// Campaigns for, holds and renews one Lease; see the module docs.
#[derive(Debug)]
pub struct LeaderElector {
    leases: Api<Lease>,
    fenced: Client,
    config: ElectionConfig,
    observed: Mutex<Option<Observation>>,
    state: watch::Sender<LeaderState>,
}

impl LeaderElector {
    /// An elector on `client` with `config` (checked: see [`ElectionConfig`]).
    pub fn new(client: Client, config: ElectionConfig) -> Result<Self, ElectionError> {
        config.check()?;
        let fenced = client.fenced(&config.fence())?;
        Ok(Self {
            leases: Api::namespaced(client, &config.namespace),
            fenced,
            config,
            observed: Mutex::new(None),
            state: watch::Sender::new(LeaderState::default()),
        })
    }

    /// The election's configuration.
    pub fn config(&self) -> &ElectionConfig {
        &self.config
    }

    /// Leadership changes as they are observed: who leads, and whether this elector does.
    pub fn subscribe(&self) -> watch::Receiver<LeaderState> {
        self.state.subscribe()
    }

    /// Whether this elector leads, as of its last attempt.
    pub fn is_leader(&self) -> bool {
        self.state.borrow().leading
    }

    /// One attempt: creates the Lease, renews it, or takes it over when free or expired.
    /// `Ok(true)` when this candidate holds it afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, Error> {
        Ok(self.attempt().await? == Attempt::Leading)
    }

    async fn attempt(&self) -> Result<Attempt, Error> {
        let now = now();
        let identity = self.config.identity.as_str();
        let Some(current) = self.leases.get_opt(&self.config.lease_name).await? else {
            let mut lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.lease_name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                ..Lease::default()
            };
            self.hold(&mut lease.spec, now, true);
            return match self.leases.create(&PostParams::default(), &lease).await {
                Ok(created) => Ok(self.written(&created)),
                Err(error) if error.is_already_exists() => Ok(Attempt::Raced),
                Err(error) => Err(error),
            };
        };
        let expired = self.observe(&current.spec);
        let mut desired = current.clone();
        match next_step(&current.spec, identity, expired) {
            Step::Wait { holder } => {
                self.report(Some(holder.clone()), false);
                return Ok(Attempt::HeldBy(holder));
            }
            Step::Renew => self.hold(&mut desired.spec, now, false),
            Step::TakeOver => {
                self.hold(&mut desired.spec, now, true);
                if current.spec.holder().is_some() {
                    desired.spec.lease_transitions = Some(
                        current
                            .spec
                            .lease_transitions
                            .unwrap_or(0)
                            .saturating_add(1),
                    );
                }
                tracing::info!(
                    lease = %self.config.fence(),
                    previous = current.spec.holder().unwrap_or(""),
                    "taking over the lease"
                );
            }
        }
        match self.leases.replace(&PostParams::default(), &desired).await {
            Ok(written) => Ok(self.written(&written)),
            Err(error) if error.is_conflict() || error.is_not_found() => Ok(Attempt::Raced),
            Err(error) => Err(error),
        }
    }

    /// Fills `spec` as held by this candidate at `now` (a new term with `acquire`).
    fn hold(&self, spec: &mut LeaseSpec, now: Time, acquire: bool) {
        spec.holder_identity = Some(self.config.identity.clone());
        spec.lease_duration_seconds = Some(self.config.duration_seconds());
        spec.renew_time = Some(now);
        if acquire {
            spec.acquire_time = Some(now);
        }
        spec.lease_transitions.get_or_insert(0);
    }

    /// Records a Lease this candidate wrote.
    fn written(&self, lease: &Lease) -> Attempt {
        self.observe(&lease.spec);
        self.report(Some(self.config.identity.clone()), true);
        Attempt::Leading
    }

    /// Notes the record; returns whether it has gone unchanged for its whole duration.
    fn observe(&self, record: &LeaseSpec) -> bool {
        let now = Instant::now();
        let mut observed = self
            .observed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match observed.as_ref() {
            Some(last) if last.record == *record => last.expired(now),
            _ => {
                *observed = Some(Observation {
                    record: record.clone(),
                    at: now,
                });
                false
            }
        }
    }

    fn report(&self, leader: Option<String>, leading: bool) {
        let next = LeaderState { leader, leading };
        self.state.send_if_modified(|state| {
            if *state == next {
                return false;
            }
            tracing::info!(
                lease = %self.config.fence(),
                leader = next.leader.as_deref().unwrap_or(""),
                leading = next.leading,
                "leader changed"
            );
            *state = next;
            true
        });
    }

    /// Runs `lead` whenever this candidate leads, until `shutdown` is cancelled.
    ///
    /// Each term: campaign (an attempt every `retry_period`), then call `lead` with the
    /// [`Leadership`] and poll its future while renewing. When renewing fails for
    /// `renew_deadline` or another holder appears, the future is dropped at once (and the
    /// term's token cancelled), and the elector campaigns again. When `shutdown` fires, the
    /// token is cancelled and the future gets up to `renew_deadline` to finish (a
    /// [`Controller`](crate::runtime::Controller) with `shutdown_on(leader.token())` stops
    /// cleanly); then the lease is released (`release_on_cancel`). A future that ends on its
    /// own ends the term too (the lease is released, and the elector campaigns again).
    pub async fn run<F, Fut>(&self, shutdown: CancellationToken, mut lead: F)
    where
        F: FnMut(Leadership) -> Fut,
        Fut: Future<Output = ()>,
    {
        let fence = self.config.fence();
        loop {
            if !self.campaign(&shutdown).await {
                return;
            }
            tracing::info!(lease = %fence, "leading");
            let token = shutdown.child_token();
            let leadership = Leadership {
                client: self.fenced.clone(),
                fence: fence.clone(),
                token: token.clone(),
            };
            let term = {
                let run = lead(leadership);
                tokio::pin!(run);
                let term = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => Term::Shutdown,
                    () = self.keep_renewing() => Term::Lost,
                    () = &mut run => Term::Ended,
                };
                if matches!(term, Term::Shutdown) {
                    // Still the leader: let the work wind down on its token (bounded, since
                    // nobody renews meanwhile).
                    token.cancel();
                    if tokio::time::timeout(self.config.renew_deadline, &mut run)
                        .await
                        .is_err()
                    {
                        tracing::warn!(lease = %fence, "the leader's work did not stop within the renew deadline; dropped");
                    }
                }
                term
                // The leader's future is dropped here: after leadership is lost it stops at
                // once.
            };
            token.cancel();
            // Work that ended because shutdown cancelled its token ended by the shutdown.
            let term = match term {
                Term::Ended if shutdown.is_cancelled() => Term::Shutdown,
                other => other,
            };
            match term {
                Term::Shutdown => {
                    tracing::info!(lease = %fence, "shutting down; leadership given up");
                    if self.config.release_on_cancel {
                        self.release().await;
                    }
                    self.report(None, false);
                    return;
                }
                Term::Lost => {
                    tracing::warn!(lease = %fence, "leadership lost; stopped leading");
                    let leader = self.state.borrow().leader.clone();
                    self.report(
                        leader.filter(|holder| *holder != self.config.identity),
                        false,
                    );
                }
                Term::Ended => {
                    tracing::info!(lease = %fence, "the leader's work ended; leadership given up");
                    self.release().await;
                    self.report(None, false);
                }
            }
            pause(self.config.retry_period, &shutdown).await;
        }
    }

    /// Attempts until this candidate leads (`true`) or `shutdown` fires (`false`).
    async fn campaign(&self, shutdown: &CancellationToken) -> bool {
        loop {
            if shutdown.is_cancelled() {
                return false;
            }
            let attempt = tokio::select! {
                () = shutdown.cancelled() => return false,
                attempt = self.attempt() => attempt,
            };
            match attempt {
                Ok(Attempt::Leading) => return true,
                Ok(Attempt::HeldBy(_) | Attempt::Raced) => {}
                Err(error) => {
                    tracing::warn!(lease = %self.config.fence(), %error, "cannot read or acquire the lease; retrying");
                }
            }
            pause(self.config.retry_period, shutdown).await;
        }
    }

    /// Renews every `retry_period`; returns when leadership is lost: another holder was seen,
    /// or no renewal succeeded for `renew_deadline`.
    async fn keep_renewing(&self) {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let left = self.config.renew_deadline.saturating_sub(renewed.elapsed());
            match tokio::time::timeout(left, self.attempt()).await {
                Ok(Ok(Attempt::Leading)) => renewed = Instant::now(),
                Ok(Ok(Attempt::HeldBy(holder))) => {
                    tracing::warn!(lease = %self.config.fence(), %holder, "another candidate holds the lease");
                    return;
                }
                Ok(Ok(Attempt::Raced)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(lease = %self.config.fence(), %error, "cannot renew the lease; retrying");
                }
                Err(_) => {}
            }
            if renewed.elapsed() >= self.config.renew_deadline {
                tracing::warn!(lease = %self.config.fence(), deadline = ?self.config.renew_deadline, "no renewal within the renew deadline");
                return;
            }
        }
    }

    /// Gives the lease up if this candidate still holds it: no holder and a 1 s duration, so
    /// the next candidate takes over at once (and this term's fenced writes fail from now).
    async fn release(&self) {
        let current = match self.leases.get_opt(&self.config.lease_name).await {
            Ok(Some(lease)) if lease.holder() == Some(self.config.identity.as_str()) => lease,
            Ok(_) => return,
            Err(error) => {
                tracing::warn!(lease = %self.config.fence(), %error, "cannot release the lease; it will expire");
                return;
            }
        };
        let mut released = current;
        released.spec.holder_identity = None;
        released.spec.lease_duration_seconds = Some(1);
        released.spec.renew_time = Some(now());
        match self.leases.replace(&PostParams::default(), &released).await {
            Ok(_) => tracing::info!(lease = %self.config.fence(), "lease released"),
            Err(error) => {
                tracing::warn!(lease = %self.config.fence(), %error, "cannot release the lease; it will expire")
            }
        }
    }
}

/// Now, at microsecond precision (the Lease's MicroTime-like timestamps).
fn now() -> Time {
    let now = jiff::Timestamp::now();
    Time::new(jiff::Timestamp::from_microsecond(now.as_microsecond()).unwrap_or(now))
}

async fn pause(duration: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = tokio::time::sleep(duration) => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            lease_duration_seconds: Some(10),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decisions() {
        // (holder, expired as observed, decision)
        let table = [
            (Some("me"), false, Step::Renew),
            (Some("me"), true, Step::Renew),
            (
                Some("other"),
                false,
                Step::Wait {
                    holder: "other".to_owned(),
                },
            ),
            (Some("other"), true, Step::TakeOver),
            (None, false, Step::TakeOver),
            (Some(""), false, Step::TakeOver),
        ];
        for (holder, expired, expect) in table {
            assert_eq!(
                next_step(&spec(holder), "me", expired),
                expect,
                "{holder:?} {expired}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn expiry_is_judged_by_how_long_the_record_has_not_changed() {
        let observation = Observation {
            record: spec(Some("other")),
            at: Instant::now(),
        };
        assert!(!observation.expired(Instant::now()));
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert!(!observation.expired(Instant::now()));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(observation.expired(Instant::now()));
    }

    #[test]
    fn configs_are_checked() {
        let base = ElectionConfig::new("default", "ctl", "me");
        assert!(base.check().is_ok());
        let seconds = Duration::from_secs;
        // (lease duration, renew deadline, retry period, valid)
        let table = [
            (seconds(15), seconds(10), seconds(2), true),
            (seconds(10), seconds(10), seconds(2), false),
            (seconds(15), seconds(2), seconds(2), false),
            (seconds(15), seconds(10), seconds(0), false),
            (
                Duration::from_millis(2_500),
                seconds(2),
                Duration::from_millis(500),
                true,
            ),
        ];
        for (lease, renew, retry, valid) in table {
            let config = base.clone().timing(lease, renew, retry);
            assert_eq!(
                config.check().is_ok(),
                valid,
                "{lease:?} {renew:?} {retry:?}"
            );
        }
        assert_eq!(
            base.clone()
                .timing(Duration::from_millis(2_500), seconds(2), seconds(1))
                .duration_seconds(),
            3
        );
        for bad in [
            ElectionConfig::new("Default", "ctl", "me"),
            ElectionConfig::new("default", "ctl", ""),
            ElectionConfig::new("default", "ctl", "a\nb"),
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}

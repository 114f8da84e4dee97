//! Lease-based leader election, with client-go's `leaderelection` semantics.
//!
//! Candidates race to write themselves into a coordination.k8s.io/v1 Lease as its
//! `holderIdentity`. The holder renews `renewTime` every retry period; others wait
//! until they have seen the same record unchanged for a whole lease duration, timed
//! on their own monotonic clock (never the holder's timestamps, so clock skew does not
//! matter), and then take the lease over, bumping `leaseTransitions`. A leader that
//! cannot renew within the renew deadline has lost the lease and must stop, because
//! another candidate may take it over once the lease duration passes.
//!
//! The Lease store and the clock are traits, so the state machine is tested
//! deterministically; [`KubeLease`] is the real store.
//!
//! Components configure it with [`Config`] (upstream's
//! `LeaderElectionConfiguration`, as in a KubeSchedulerConfiguration) overridden by
//! the explicitly set `--leader-elect*` [`Flags`], and run their work through
//! [`Leader::run`], which exports `leader_election_master_status` and stops the
//! work when leadership is lost.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{IntGaugeVec, Opts, Registry};
use serde::Deserialize;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use parking_lot::Mutex;

/// Leader election failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Lease could not be read or written.
    #[error("error retrieving resource lock {lock}: {source}")]
    Lock {
        /// namespace/name of the Lease.
        lock: String,
        /// Why.
        source: kube::Error,
    },
    /// The Lease could not be written.
    #[error("failed to update lock {lock}: {source}")]
    Write {
        /// namespace/name of the Lease.
        lock: String,
        /// Why.
        source: kube::Error,
    },
    /// Another candidate wrote the Lease between our read and our write.
    #[error(
        "Operation cannot be fulfilled on leases.coordination.k8s.io {0:?}: the object has been modified; please apply your changes to the latest version and try again"
    )]
    Conflict(String),
    /// The leader failed to renew within the renew deadline.
    #[error("leaderelection lost")]
    Lost,
}

/// The leader election record, as stored in a Lease's spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Who holds the lease; empty when released.
    pub holder_identity: String,
    /// How long the lease lasts after `renew_time`.
    pub lease_duration_seconds: i32,
    /// When the holder acquired it.
    pub acquire_time: Timestamp,
    /// When the holder last renewed it.
    pub renew_time: Timestamp,
    /// How many times it changed hands.
    pub lease_transitions: i32,
}

/// Where the record lives: a Lease, read and written with optimistic concurrency.
pub trait LeaseStore: Send + Sync + 'static {
    /// The lock's name, for messages.
    fn name(&self) -> String {
        "lease".into()
    }
    /// The record and the object's resourceVersion, or `None` if there is no Lease.
    fn get(&self) -> impl Future<Output = Result<Option<(Record, String)>, Error>> + Send;
    /// Creates the Lease; [`Error::Conflict`] if it exists.
    fn create(&self, r: &Record) -> impl Future<Output = Result<(), Error>> + Send;
    /// Replaces the record if the Lease is still at `rv`; [`Error::Conflict`] if not.
    fn update(&self, r: &Record, rv: &str) -> impl Future<Output = Result<(), Error>> + Send;
}

/// Wall time for the record, monotonic time for expiry.
pub trait Clock: Send + Sync + 'static {
    /// Now, on the wall clock.
    fn now(&self) -> Timestamp;
    /// Now, on a monotonic clock.
    fn instant(&self) -> Instant;
}

/// The system clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
    fn instant(&self) -> Instant {
        Instant::now()
    }
}

/// Timing, from the `--leader-elect-*` flags.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// `--leader-elect-lease-duration`.
    pub lease_duration: Duration,
    /// `--leader-elect-renew-deadline`.
    pub renew_deadline: Duration,
    /// `--leader-elect-retry-period`.
    pub retry_period: Duration,
}

/// client-go's JitterFactor for the acquire loop.
const JITTER: f64 = 1.2;

/// Health-check slack after the lease should have been renewed, as upstream's
/// `leaderelection.NewLeaderHealthzAdaptor(20 * time.Second)`.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(20);

/// Upstream's `LeaderElectionConfiguration`, with its field names in config files.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Whether to elect a leader before running.
    pub leader_elect: bool,
    /// How long non-leaders wait after a renewal before taking over.
    #[serde(with = "go_duration")]
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops leading.
    #[serde(with = "go_duration")]
    pub renew_deadline: Duration,
    /// How long candidates wait between attempts.
    #[serde(with = "go_duration")]
    pub retry_period: Duration,
    /// The lock's type: only `leases`, as upstream since 1.24.
    pub resource_lock: String,
    /// The Lease's name.
    pub resource_name: String,
    /// The Lease's namespace.
    pub resource_namespace: String,
}

impl Config {
    /// Upstream's defaults (15 s, 10 s, 2 s, `leases` in kube-system) for the
    /// component whose Lease is `name`.
    pub fn defaults(name: &str) -> Self {
        Config {
            leader_elect: true,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            resource_lock: "leases".into(),
            resource_name: name.into(),
            resource_namespace: "kube-system".into(),
        }
    }

    /// The checks of upstream's `ValidateLeaderElectionConfiguration`, as
    /// `field: message` lines (`leaderElection.` prefixed by the caller if needed).
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if self.resource_lock != "leases" {
            errs.push(format!("Invalid lock-type {}", self.resource_lock));
        }
        if !self.leader_elect {
            return errs;
        }
        for (what, d) in [
            ("leaseDuration", self.lease_duration),
            ("renewDeadline", self.renew_deadline),
            ("retryPeriod", self.retry_period),
        ] {
            if d.is_zero() {
                errs.push(format!("{what} must be greater than zero"));
            }
        }
        if self.lease_duration <= self.renew_deadline {
            errs.push("leaseDuration must be greater than renewDeadline".into());
        }
        if self.renew_deadline.as_secs_f64() <= JITTER * self.retry_period.as_secs_f64() {
            errs.push("renewDeadline must be greater than retryPeriod*JitterFactor".into());
        }
        if self.resource_name.is_empty() {
            errs.push("resourceName is required".into());
        }
        if self.resource_namespace.is_empty() {
            errs.push("resourceNamespace is required".into());
        }
        errs
    }

    /// The election's timing.
    pub fn timing(&self) -> Timing {
        Timing {
            lease_duration: self.lease_duration,
            renew_deadline: self.renew_deadline,
            retry_period: self.retry_period,
        }
    }
}

/// Go durations in config files (`15s`, `1m0s`).
mod go_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        component_base::duration::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// The `--leader-elect*` flags. Only the flags given on the command line override
/// the component's [`Config`] (its defaults, or its config file's
/// `leaderElection`), as upstream's `ApplyLeaderElectionTo`.
#[derive(Clone, Debug, Default, clap::Args)]
#[group(id = "leader-election")]
pub struct Flags {
    /// Start a leader election client and gain leadership before executing the main
    /// loop. Enable this when running replicated components for high availability.
    /// (default true)
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: Option<bool>,
    /// The duration that non-leader candidates will wait after observing a
    /// leadership renewal until attempting to acquire leadership of a led but
    /// unrenewed leader slot. (default 15s)
    #[arg(long, value_parser = component_base::duration::parse_duration)]
    pub leader_elect_lease_duration: Option<Duration>,
    /// The interval between attempts by the acting master to renew a leadership slot
    /// before it stops leading. (default 10s)
    #[arg(long, value_parser = component_base::duration::parse_duration)]
    pub leader_elect_renew_deadline: Option<Duration>,
    /// The duration the clients should wait between attempting acquisition and
    /// renewal of a leadership. (default 2s)
    #[arg(long, value_parser = component_base::duration::parse_duration)]
    pub leader_elect_retry_period: Option<Duration>,
    /// The type of resource object that is used for locking during leader election.
    /// Supported options are 'leases'. (default "leases")
    #[arg(long)]
    pub leader_elect_resource_lock: Option<String>,
    /// The name of resource object that is used for locking during leader election.
    /// (default: the component's name)
    #[arg(long)]
    pub leader_elect_resource_name: Option<String>,
    /// The namespace of resource object that is used for locking during leader
    /// election. (default "kube-system")
    #[arg(long)]
    pub leader_elect_resource_namespace: Option<String>,
}

impl Flags {
    /// Overrides `cfg` with the flags that were given.
    pub fn apply(&self, cfg: &mut Config) {
        if let Some(v) = self.leader_elect {
            cfg.leader_elect = v;
        }
        if let Some(v) = self.leader_elect_lease_duration {
            cfg.lease_duration = v;
        }
        if let Some(v) = self.leader_elect_renew_deadline {
            cfg.renew_deadline = v;
        }
        if let Some(v) = self.leader_elect_retry_period {
            cfg.retry_period = v;
        }
        if let Some(v) = &self.leader_elect_resource_lock {
            cfg.resource_lock = v.clone();
        }
        if let Some(v) = &self.leader_elect_resource_name {
            cfg.resource_name = v.clone();
        }
        if let Some(v) = &self.leader_elect_resource_namespace {
            cfg.resource_namespace = v.clone();
        }
    }
}

/// This machine's hostname (`localhost` when it cannot be read).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// This candidate's identity: the hostname and a random UUID, as upstream's
/// `id + "_" + uuid`.
pub fn identity() -> String {
    let host = hostname();
    let r: u128 = rand::random();
    let h = format!("{r:032x}");
    format!(
        "{host}_{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// How [`Leader::run`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The shutdown future resolved.
    Shutdown,
    /// The work finished by itself.
    Finished,
}

/// A component's leader election: the Lease loop, its health check and its metric.
pub struct Leader {
    cfg: Config,
    elector: Elector<KubeLease, SystemClock>,
    master: IntGaugeVec,
}

impl Leader {
    /// A candidate for `cfg`'s Lease, talking through `client`; registers
    /// `leader_election_master_status` in `registry`.
    pub fn new(
        client: kube::Client,
        cfg: Config,
        registry: &Registry,
    ) -> Result<Self, prometheus::Error> {
        let master = IntGaugeVec::new(
            Opts::new(
                "leader_election_master_status",
                "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease. Please make sure to group by name.",
            ),
            &["name"],
        )?;
        registry.register(Box::new(master.clone()))?;
        let elector = Elector::new(
            KubeLease::new(client, &cfg.resource_namespace, &cfg.resource_name),
            SystemClock,
            identity(),
            cfg.timing(),
        );
        Ok(Leader {
            cfg,
            elector,
            master,
        })
    }

    /// The `leaderElection` health check, when election is on.
    pub fn health_check(&self) -> Option<component_base::status::Check> {
        self.cfg
            .leader_elect
            .then(|| Arc::new(self.elector.health_check()) as component_base::status::Check)
    }

    /// Runs `work` once this candidate leads (at once without election), until
    /// `shutdown` resolves or the work ends. Leadership lost is [`Error::Lost`]: the
    /// work is dropped first, and the caller exits, as upstream's components do.
    pub async fn run<W: Future<Output = ()>>(
        mut self,
        shutdown: impl Future<Output = ()>,
        work: W,
    ) -> Result<Ended, Error> {
        tokio::pin!(shutdown);
        if !self.cfg.leader_elect {
            return Ok(tokio::select! {
                () = work => Ended::Finished,
                () = &mut shutdown => Ended::Shutdown,
            });
        }
        let lease = self.cfg.resource_name.clone();
        self.master.with_label_values(&[&lease]).set(0);
        tokio::select! {
            () = self.elector.acquire() => {}
            () = &mut shutdown => return Ok(Ended::Shutdown),
        }
        self.master.with_label_values(&[&lease]).set(1);
        let master = self.master.clone();
        let mut elector = self.elector;
        let renew = elector.renew_until_lost();
        let ended = tokio::select! {
            e = renew => Err(e),
            () = work => Ok(Ended::Finished),
            () = &mut shutdown => Ok(Ended::Shutdown),
        };
        master.with_label_values(&[&lease]).set(0);
        ended
    }
}

/// One candidate.
pub struct Elector<S, C> {
    store: S,
    clock: C,
    identity: String,
    timing: Timing,
    /// The last record read or written, and when (monotonic) it was first seen.
    observed: Option<(Record, Instant)>,
    state: Arc<Mutex<State>>,
}

/// What the health check and metrics see.
#[derive(Debug, Default)]
pub struct State {
    /// Whether this candidate holds the lease.
    pub leading: bool,
    /// When it last renewed (monotonic).
    pub renewed: Option<Instant>,
}

impl<S: LeaseStore, C: Clock> Elector<S, C> {
    /// A candidate named `identity`.
    pub fn new(store: S, clock: C, identity: String, timing: Timing) -> Self {
        Elector {
            store,
            clock,
            identity,
            timing,
            observed: None,
            state: Arc::default(),
        }
    }

    /// Shared view of the candidate's state.
    pub fn state(&self) -> Arc<Mutex<State>> {
        self.state.clone()
    }

    /// A health check: failing when this candidate leads but has not renewed for
    /// longer than the lease duration plus 20 s.
    pub fn health_check(&self) -> impl Fn() -> Result<(), String> + Send + Sync + 'static {
        let state = self.state.clone();
        let limit = self.timing.lease_duration + HEALTH_TIMEOUT;
        let lease = self.store.name();
        move || {
            let s = state.lock();
            match (s.leading, s.renewed) {
                (true, Some(at)) if at.elapsed() > limit => Err(format!(
                    "failed election to renew leadership on lease {lease}"
                )),
                _ => Ok(()),
            }
        }
    }

    /// One attempt, as client-go's `tryAcquireOrRenew`: `Ok(true)` when this
    /// candidate holds the lease afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, Error> {
        let now = self.clock.now();
        let mut record = Record {
            holder_identity: self.identity.clone(),
            lease_duration_seconds: self.timing.lease_duration.as_secs().max(1) as i32,
            acquire_time: now,
            renew_time: now,
            lease_transitions: 0,
        };
        let Some((old, rv)) = self.store.get().await? else {
            self.store.create(&record).await?;
            self.observed = Some((record, self.clock.instant()));
            return Ok(true);
        };
        // A changed record restarts the expiry timer.
        if self.observed.as_ref().map(|(r, _)| r) != Some(&old) {
            self.observed = Some((old.clone(), self.clock.instant()));
        }
        let seen_at = self
            .observed
            .as_ref()
            .map(|(_, t)| *t)
            .unwrap_or_else(|| self.clock.instant());
        let held_by_other = !old.holder_identity.is_empty() && old.holder_identity != self.identity;
        let expiry = Duration::from_secs(old.lease_duration_seconds.max(0) as u64);
        if held_by_other && seen_at + expiry > self.clock.instant() {
            return Ok(false);
        }
        if old.holder_identity == self.identity {
            record.acquire_time = old.acquire_time;
            record.lease_transitions = old.lease_transitions;
        } else {
            record.lease_transitions = old.lease_transitions + 1;
        }
        self.store.update(&record, &rv).await?;
        self.observed = Some((record, self.clock.instant()));
        Ok(true)
    }

    fn set_leading(&self, leading: bool) {
        let mut s = self.state.lock();
        s.leading = leading;
        if leading {
            s.renewed = Some(self.clock.instant());
        }
    }

    /// Blocks until this candidate holds the lease, retrying every retry period
    /// (plus a random jitter of up to 1.2 periods, client-go's `JitterUntil(period, 1.2)`).
    pub async fn acquire(&mut self) {
        tracing::info!(identity = %self.identity, "attempting to acquire leader lease");
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(identity = %self.identity, "successfully acquired lease");
                    self.set_leading(true);
                    return;
                }
                Ok(false) => {
                    if let Some((r, _)) = &self.observed {
                        tracing::debug!(holder = %r.holder_identity, "lease is held by another candidate and has not yet expired");
                    }
                }
                Err(e) => tracing::info!(error = %e, "failed to acquire lease"),
            }
            let jitter = 1.0 + rand::random::<f64>() * JITTER;
            tokio::time::sleep(self.timing.retry_period.mul_f64(jitter)).await;
        }
    }

    /// Renews every retry period while leading. Returns [`Error::Lost`] once a renewal
    /// has not succeeded within the renew deadline, or another holder is seen.
    pub async fn renew_until_lost(&mut self) -> Error {
        loop {
            let deadline = self.clock.instant() + self.timing.renew_deadline;
            let renewed = loop {
                let left = deadline.saturating_duration_since(self.clock.instant());
                if left.is_zero() {
                    break false;
                }
                // One attempt may take at most max(1 s, renewDeadline/2), so that a hung
                // request leaves time for another before the deadline.
                let attempt =
                    left.min((self.timing.renew_deadline / 2).max(Duration::from_secs(1)));
                match tokio::time::timeout(attempt, self.try_acquire_or_renew()).await {
                    Ok(Ok(true)) => break true,
                    Ok(Ok(false)) => break false,
                    Ok(Err(e)) => tracing::info!(error = %e, "failed to renew lease"),
                    Err(_) => {}
                }
                tokio::time::sleep(self.timing.retry_period.min(left)).await;
            };
            if !renewed {
                self.set_leading(false);
                tracing::error!(identity = %self.identity, "failed to renew lease: timed out waiting for the condition");
                return Error::Lost;
            }
            self.state.lock().renewed = Some(self.clock.instant());
            tokio::time::sleep(self.timing.retry_period).await;
        }
    }
}

/// The Lease `namespace/name` through the apiserver.
pub struct KubeLease {
    api: Api<Lease>,
    name: String,
    lock: String,
    /// The Lease last read or written, so that an update keeps its labels,
    /// annotations and the spec fields election does not own.
    last: Mutex<Option<Lease>>,
}

impl KubeLease {
    /// The Lease `name` in `namespace`.
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        KubeLease {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            lock: format!("{namespace}/{name}"),
            last: Mutex::new(None),
        }
    }

    fn lease(&self, r: &Record, rv: Option<&str>) -> Lease {
        let mut l = self.last.lock().clone().unwrap_or_else(|| Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                ..Default::default()
            },
            spec: None,
        });
        l.metadata.resource_version = rv.map(str::to_owned);
        let mut spec: LeaseSpec = l.spec.take().unwrap_or_default();
        spec.holder_identity = Some(r.holder_identity.clone());
        spec.lease_duration_seconds = Some(r.lease_duration_seconds);
        spec.acquire_time = Some(MicroTime(r.acquire_time));
        spec.renew_time = Some(MicroTime(r.renew_time));
        spec.lease_transitions = Some(r.lease_transitions);
        l.spec = Some(spec);
        l
    }

    fn err(&self, e: kube::Error, write: bool) -> Error {
        match e {
            kube::Error::Api(s) if s.code == 409 => Error::Conflict(self.name.clone()),
            e if write => Error::Write {
                lock: self.lock.clone(),
                source: e,
            },
            e => Error::Lock {
                lock: self.lock.clone(),
                source: e,
            },
        }
    }
}

impl LeaseStore for KubeLease {
    fn name(&self) -> String {
        self.lock.clone()
    }

    async fn get(&self) -> Result<Option<(Record, String)>, Error> {
        let got = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.err(e, false))?;
        *self.last.lock() = got.clone();
        let Some(l) = got else {
            return Ok(None);
        };
        let spec = l.spec.unwrap_or_default();
        let ts = |t: Option<MicroTime>| t.map(|t| t.0).unwrap_or(Timestamp::UNIX_EPOCH);
        Ok(Some((
            Record {
                holder_identity: spec.holder_identity.unwrap_or_default(),
                lease_duration_seconds: spec.lease_duration_seconds.unwrap_or_default(),
                acquire_time: ts(spec.acquire_time),
                renew_time: ts(spec.renew_time),
                lease_transitions: spec.lease_transitions.unwrap_or_default(),
            },
            l.metadata.resource_version.unwrap_or_default(),
        )))
    }

    async fn create(&self, r: &Record) -> Result<(), Error> {
        let l = self
            .api
            .create(&PostParams::default(), &self.lease(r, None))
            .await
            .map_err(|e| self.err(e, true))?;
        *self.last.lock() = Some(l);
        Ok(())
    }

    async fn update(&self, r: &Record, rv: &str) -> Result<(), Error> {
        let l = self
            .api
            .replace(&self.name, &PostParams::default(), &self.lease(r, Some(rv)))
            .await
            .map_err(|e| self.err(e, true))?;
        *self.last.lock() = Some(l);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One Lease shared by several candidates, with a resourceVersion.
    #[derive(Clone, Default)]
    struct MemLease(Arc<Mutex<Option<(Record, u64)>>>);

    impl LeaseStore for MemLease {
        async fn get(&self) -> Result<Option<(Record, String)>, Error> {
            Ok(self.0.lock().clone().map(|(r, v)| (r, v.to_string())))
        }
        async fn create(&self, r: &Record) -> Result<(), Error> {
            let mut g = self.0.lock();
            if g.is_some() {
                return Err(Error::Conflict("l".into()));
            }
            *g = Some((r.clone(), 1));
            Ok(())
        }
        async fn update(&self, r: &Record, rv: &str) -> Result<(), Error> {
            let mut g = self.0.lock();
            match &*g {
                Some((_, v)) if v.to_string() == rv => {
                    *g = Some((r.clone(), v + 1));
                    Ok(())
                }
                _ => Err(Error::Conflict("l".into())),
            }
        }
    }

    /// A clock that moves only when told.
    #[derive(Clone)]
    struct FakeClock(Arc<Mutex<(Timestamp, Instant)>>);

    impl FakeClock {
        fn new() -> Self {
            FakeClock(Arc::new(Mutex::new((
                Timestamp::from_second(1_800_000_000).unwrap(),
                Instant::now(),
            ))))
        }
        fn advance(&self, d: Duration) {
            let mut g = self.0.lock();
            g.0 += d;
            g.1 += d;
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Timestamp {
            self.0.lock().0
        }
        fn instant(&self) -> Instant {
            self.0.lock().1
        }
    }

    const TIMING: Timing = Timing {
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
    };

    #[tokio::test]
    async fn one_leader_then_takeover_after_a_full_lease_duration() {
        let lease = MemLease::default();
        let clock = FakeClock::new();
        let mut a = Elector::new(lease.clone(), clock.clone(), "a".into(), TIMING);
        let mut b = Elector::new(lease.clone(), clock.clone(), "b".into(), TIMING);

        assert!(
            a.try_acquire_or_renew().await.unwrap(),
            "a creates the lease"
        );
        assert!(!b.try_acquire_or_renew().await.unwrap(), "a holds it");
        let first = lease.0.lock().clone().unwrap().0;
        assert_eq!(first.holder_identity, "a");
        assert_eq!(first.lease_transitions, 0);
        assert_eq!(first.lease_duration_seconds, 15);

        // a renews: renewTime moves, acquireTime and transitions stay.
        clock.advance(Duration::from_secs(2));
        assert!(a.try_acquire_or_renew().await.unwrap());
        let renewed = lease.0.lock().clone().unwrap().0;
        assert_eq!(renewed.acquire_time, first.acquire_time);
        assert!(renewed.renew_time > first.renew_time);

        // b saw a renewal 14 s ago: not yet expired on b's own clock.
        assert!(!b.try_acquire_or_renew().await.unwrap());
        clock.advance(Duration::from_secs(14));
        assert!(!b.try_acquire_or_renew().await.unwrap());
        clock.advance(Duration::from_secs(1));
        assert!(
            b.try_acquire_or_renew().await.unwrap(),
            "expired: b takes over"
        );
        let taken = lease.0.lock().clone().unwrap().0;
        assert_eq!(taken.holder_identity, "b");
        assert_eq!(taken.lease_transitions, 1);
        assert_eq!(taken.acquire_time, clock.now());

        // a, still believing it leads, now finds b's fresh record and fails.
        assert!(!a.try_acquire_or_renew().await.unwrap());
    }

    #[tokio::test]
    async fn expiry_ignores_the_holders_timestamps() {
        // A holder whose clock is far behind writes old renewTimes; the others still
        // wait a full lease duration from when they saw the record.
        let lease = MemLease::default();
        let clock = FakeClock::new();
        *lease.0.lock() = Some((
            Record {
                holder_identity: "skewed".into(),
                lease_duration_seconds: 15,
                acquire_time: Timestamp::UNIX_EPOCH,
                renew_time: Timestamp::UNIX_EPOCH,
                lease_transitions: 3,
            },
            7,
        ));
        let mut b = Elector::new(lease.clone(), clock.clone(), "b".into(), TIMING);
        assert!(!b.try_acquire_or_renew().await.unwrap());
        clock.advance(Duration::from_secs(15));
        assert!(b.try_acquire_or_renew().await.unwrap());
        assert_eq!(lease.0.lock().clone().unwrap().0.lease_transitions, 4);
    }

    #[tokio::test]
    async fn a_released_lease_is_taken_at_once() {
        let lease = MemLease::default();
        let clock = FakeClock::new();
        *lease.0.lock() = Some((
            Record {
                holder_identity: String::new(),
                lease_duration_seconds: 1,
                acquire_time: clock.now(),
                renew_time: clock.now(),
                lease_transitions: 0,
            },
            1,
        ));
        let mut b = Elector::new(lease.clone(), clock.clone(), "b".into(), TIMING);
        assert!(b.try_acquire_or_renew().await.unwrap());
    }

    #[tokio::test]
    async fn a_lost_race_is_a_conflict_not_leadership() {
        let lease = MemLease::default();
        let clock = FakeClock::new();
        let mut a = Elector::new(lease.clone(), clock.clone(), "a".into(), TIMING);
        a.try_acquire_or_renew().await.unwrap();
        // Someone else writes between a's read and write.
        struct Racing(MemLease);
        impl LeaseStore for Racing {
            async fn get(&self) -> Result<Option<(Record, String)>, Error> {
                let r = self.0.get().await;
                let mut g = self.0.0.lock();
                if let Some((_, v)) = g.as_mut() {
                    *v += 1;
                }
                r
            }
            async fn create(&self, r: &Record) -> Result<(), Error> {
                self.0.create(r).await
            }
            async fn update(&self, r: &Record, rv: &str) -> Result<(), Error> {
                self.0.update(r, rv).await
            }
        }
        let mut racing = Elector::new(Racing(lease.clone()), clock.clone(), "a".into(), TIMING);
        assert!(matches!(
            racing.try_acquire_or_renew().await,
            Err(Error::Conflict(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_that_cannot_renew_loses_within_the_deadline() {
        // The store starts failing after the lease is taken.
        #[derive(Clone)]
        struct Failing(MemLease, Arc<Mutex<bool>>);
        impl LeaseStore for Failing {
            async fn get(&self) -> Result<Option<(Record, String)>, Error> {
                if *self.1.lock() {
                    return Err(Error::Conflict("down".into()));
                }
                self.0.get().await
            }
            async fn create(&self, r: &Record) -> Result<(), Error> {
                self.0.create(r).await
            }
            async fn update(&self, r: &Record, rv: &str) -> Result<(), Error> {
                self.0.update(r, rv).await
            }
        }
        let down = Arc::new(Mutex::new(false));
        let store = Failing(MemLease::default(), down.clone());
        // Tokio's paused clock drives both sleeps and the elector's instants here.
        #[derive(Clone, Copy)]
        struct TokioClock;
        impl Clock for TokioClock {
            fn now(&self) -> Timestamp {
                Timestamp::now()
            }
            fn instant(&self) -> Instant {
                tokio::time::Instant::now().into_std()
            }
        }
        let mut e = Elector::new(store, TokioClock, "a".into(), TIMING);
        e.acquire().await;
        assert!(e.state().lock().leading);
        let health = e.health_check();
        assert!(health().is_ok());
        *down.lock() = true;
        let started = tokio::time::Instant::now();
        let err = e.renew_until_lost().await;
        assert!(matches!(err, Error::Lost));
        let took = started.elapsed();
        assert!(
            took >= TIMING.renew_deadline
                && took <= TIMING.renew_deadline + TIMING.retry_period * 2,
            "{took:?}"
        );
        assert!(!e.state().lock().leading);
    }
}

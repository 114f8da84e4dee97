//! The apiserver's metrics, with upstream's names and labels.

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::api::Api;
use crate::catalog::{Resource, catalog};
use crate::request::RequestInfo;

/// The metric families; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    /// Where they are registered.
    pub registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    /// `apiserver_current_inflight_requests{request_kind}`.
    pub inflight: IntGaugeVec,
    storage_objects: IntGaugeVec,
    watch_events: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("apiserver_request_total", "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code."),
            &["verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component", "code"],
        )
        .expect("metric");
        let duration = HistogramVec::new(
            HistogramOpts::new("apiserver_request_duration_seconds", "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.")
                .buckets(vec![0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0]),
            &["verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component"],
        )
        .expect("metric");
        let inflight = IntGaugeVec::new(
            Opts::new("apiserver_current_inflight_requests", "Maximal number of currently used inflight request limit of this apiserver per request kind in last second."),
            &["request_kind"],
        )
        .expect("metric");
        let storage_objects = IntGaugeVec::new(
            Opts::new("apiserver_storage_objects", "Number of stored objects at the time of last check split by kind. In case of a fetching error, the value will be -1."),
            &["resource"],
        )
        .expect("metric");
        let watch_events = IntCounterVec::new(
            Opts::new(
                "apiserver_watch_events_total",
                "Number of events sent in watch clients",
            ),
            &["group", "version", "resource"],
        )
        .expect("metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(inflight.clone()),
            Box::new(storage_objects.clone()),
            Box::new(watch_events.clone()),
        ] {
            registry.register(c).expect("register");
        }
        crate::storage::metered::register(&registry);
        Metrics {
            registry,
            requests,
            duration,
            inflight,
            storage_objects,
            watch_events,
        }
    }

    /// Records one finished resource request.
    pub fn observe(&self, info: &RequestInfo, code: u16, took: Duration) {
        let verb = match info.verb.as_str() {
            "get" | "list" | "watch" | "create" | "update" | "patch" | "delete"
            | "deletecollection" => info.verb.to_uppercase(),
            v => v.to_uppercase(),
        };
        let verb = match verb.as_str() {
            "GET" => "GET",
            "CREATE" => "POST",
            "UPDATE" => "PUT",
            other => other,
        }
        .to_owned();
        let scope = if info.name.is_some() {
            "resource"
        } else if info.namespace.is_some() {
            "namespace"
        } else {
            "cluster"
        };
        let sub = info.subresource.clone().unwrap_or_default();
        let code = code.to_string();
        self.requests
            .with_label_values(&[
                &verb,
                "",
                &info.group,
                &info.version,
                &info.resource,
                &sub,
                scope,
                "apiserver",
                &code,
            ])
            .inc();
        if info.verb != "watch" {
            self.duration
                .with_label_values(&[
                    &verb,
                    "",
                    &info.group,
                    &info.version,
                    &info.resource,
                    &sub,
                    scope,
                    "apiserver",
                ])
                .observe(took.as_secs_f64());
        }
    }

    /// Counts one watch event sent.
    pub fn watch_event(&self, res: &Resource) {
        self.watch_events
            .with_label_values(&[res.group, res.version, res.plural])
            .inc();
    }

    /// Refreshes `apiserver_storage_objects` from the watch caches.
    pub fn refresh_storage(&self, api: &Api) {
        for r in catalog().all() {
            if r.converts() {
                continue;
            }
            if let Some(c) = api.registry.cache(r) {
                let n = c.snapshot("").0.len() as i64;
                let name = if r.group.is_empty() {
                    r.plural.to_owned()
                } else {
                    format!("{}.{}", r.plural, r.group)
                };
                self.storage_objects.with_label_values(&[&name]).set(n);
            }
        }
    }
}

//! The client-side runtime every Keelson daemon stands on, in the role client-go
//! plays upstream: kube-scheduler, kube-controller-manager, and later the kubelet,
//! kube-proxy and the cloud controller manager share it instead of copies.
//!
//! ```text
//!  --kubeconfig ─▶ [config] ─▶ kube::Client ─▶ [ratelimit] token bucket (--kube-api-qps/-burst)
//!                                   │
//!        ┌──────────────────────────┼──────────────────────────────┐
//!        ▼                          ▼                              ▼
//!  [informer] one list+watch   [leaderelection] Lease loop    [events] events.k8s.io/v1
//!  per resource: store,        (--leader-elect* flags),       writer in the background,
//!  indexes, handlers           Leader::run(work)              series and spam filter
//!        │ handlers queue keys
//!        ▼
//!  [workqueue] dedup + backoff ─▶ run_workers(sync) ─▶ Outcome (forget, backoff, later)
//! ```
//!
//! - [`config`]: client configuration from `--kubeconfig`/`--master`/in-cluster, and
//!   rate-limited clients.
//! - [`ratelimit`]: client-go's token-bucket limiter as a tower layer.
//! - [`clientbuilder`]: per-controller service-account clients
//!   (`--use-service-account-credentials`).
//! - [`informer`]: the shared informer factory.
//! - [`workqueue`]: the deduplicating, rate-limited work queue, its `workqueue_*`
//!   metrics, and the worker runner.
//! - [`leaderelection`]: Lease-based leader election and its flags.
//! - [`events`]: the event recorder.
//! - [`delegated`]: the secure port's delegated authentication and authorization
//!   (TokenReview, SubjectAccessReview) and their flags.
//! - [`errors`]: API errors' messages and kinds, as upstream's clients read them.
//! - [`selectors`]: label selectors, node selectors and tolerations on k8s-openapi
//!   types, over [`component_base::selectors`] (the one matcher, shared with the
//!   apiserver). Quantities are [`component_base::quantity`].
//!
//! Kubernetes types are k8s-openapi's; [`component_base`] stays plumbing without
//! them.

pub mod clientbuilder;
pub mod config;
pub mod delegated;
pub mod errors;
pub mod events;
pub mod informer;
pub mod leaderelection;
pub mod ratelimit;
pub mod selectors;
pub mod workqueue;

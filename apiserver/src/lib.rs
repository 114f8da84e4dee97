//! `kube-apiserver`: the Kubernetes REST API over an etcd v3 store.
//!
//! # Request path
//!
//! ```text
//! TLS (rustls) -> server::Server::handle
//!   -> request::parse (RequestInfo)
//!   -> authn ([`authn`]: front proxy, x509, tokens, anonymous; 401)
//!   -> impersonation -> authorization ([`authz`]: masters, Node, RBAC ...; 403)
//!   -> in-flight limits (429)
//!   -> handlers (verb): decode + schema field validation -> defaults
//!        -> fieldmanager (managedFields; server-side apply merge and conflicts)
//!        -> strategy (server-owned fields) -> admission (mutating, validating)
//!        -> validation (422) -> api hooks (ClusterIP/NodePort) -> registry
//!   -> registry: JSON objects in the store under /registry/<resource>/<ns>/<name>,
//!      resourceVersion = the store's mod revision; optimistic concurrency by txn
//!   -> storage::Kv (etcd v3 gRPC: keelson-store embedded, or --etcd-servers)
//! ```
//!
//! Reads: single GETs go to the store (consistent); lists and watches are served by
//! one [`cache::WatchCache`] per stored resource, fed by a store watch, except the
//! requests upstream sends to etcd (continue tokens, resourceVersionMatch=Exact, a
//! limit on a consistent read). The self reviews (`kubectl auth can-i`, `whoami`) are
//! answered by [`review`] from the same authorizer. Replies are JSON or `meta.k8s.io/v1` Tables
//! ([`table`]); every error is a `Status` built in [`error`].
//!
//! Everything about the built-in types comes from two sources: [`catalog`] (which
//! resources exist, their verbs, scopes, storage keys) and [`schema`] (upstream's
//! OpenAPI definitions, for field validation, patch strategies and `/openapi`).
//! Custom resources join the catalog at run time ([`crd`]), each with its CRD's
//! structural schema in place of a vendored definition.

pub mod admission;
pub mod api;
pub mod app;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod cache;
pub mod catalog;
pub mod convert;
pub mod crd;
pub mod defaults;
pub mod discovery;
pub mod error;
pub mod eviction;
pub mod fieldmanager;
pub mod fieldsel;
pub mod handlers;
pub mod meta;
pub mod metrics;
pub mod nodes;
pub mod openapi;
pub mod options;
pub mod patch;
pub mod protobuf;
pub mod proxy;
pub use component_base::quantity;
pub mod rbac;
pub mod registry;
pub mod request;
pub mod review;
pub mod schema;
pub use component_base::selectors;
pub mod server;
pub mod serviceaccount;
pub mod smp;
pub mod storage;
pub mod strategy;
pub mod table;
pub mod validation;
pub mod webhookclient;

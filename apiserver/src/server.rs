//! HTTPS serving and the request path, in upstream's filter order: authentication,
//! in-flight limits, authorization, then the handler (which runs admission and
//! storage). Non-resource paths (discovery, OpenAPI, health, version, metrics) are
//! served here too. Every error leaves through [`ApiError::to_status`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::api::Api;
use crate::authn::{Credentials, UserInfo};
use crate::cache::Notice;
use crate::catalog::{Resource, catalog};
use crate::error::ApiError;
use crate::handlers::{self, Ctx, Reply};
use crate::metrics::Metrics;
use crate::request::{self, Query, RequestInfo};
use crate::table::{self, IncludeObject};

/// The largest request body upstream accepts (3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// What the serving loop shares.
pub struct Server {
    /// The API.
    pub api: Arc<Api>,
    /// Authentication.
    /// Non-mutating in-flight slots (`--max-requests-inflight`).
    pub readonly: Semaphore,
    /// Mutating in-flight slots (`--max-mutating-requests-inflight`).
    pub mutating: Semaphore,
    /// `--request-timeout`.
    pub request_timeout: Duration,
    /// Metrics.
    pub metrics: Metrics,
    /// Readiness: set once bootstrap is done.
    pub ready: std::sync::atomic::AtomicBool,
}

fn json_bytes(v: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

fn respond(code: u16, body: &Value, content_type: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(json_bytes(body)));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/json")),
    );
    r
}

/// An error as a Status reply.
pub fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = respond(e.code(), &e.to_status(), "application/json");
    if matches!(
        e,
        ApiError::TooManyRequests | ApiError::TooLargeResourceVersion { .. }
    ) {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

fn text(code: u16, body: String) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// What a read is transformed into, from the Accept header (upstream's
/// `negotiation.NegotiateOutputMediaType` with its `as=`/`g=`/`v=` parameters). The
/// first media range Keelson can serve wins; protobuf ranges are answered in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The object itself.
    Object,
    /// A meta.k8s.io Table (`as=Table`).
    Table,
    /// meta.k8s.io PartialObjectMetadata of the given version (`v1` or `v1beta1`).
    Metadata(&'static str),
    /// meta.k8s.io PartialObjectMetadataList of the given version.
    MetadataList(&'static str),
    /// The object as Kubernetes protobuf (JSON when its kind has no protobuf form).
    Protobuf,
    /// Nothing Keelson can serve: 406.
    NotAcceptable,
}

impl Target {
    /// Negotiates the target of a resource read from the Accept header.
    pub fn negotiate(accept: &str) -> Target {
        if accept.trim().is_empty() {
            return Target::Object;
        }
        for range in accept.split(',') {
            let ps: Vec<&str> = range.split(';').map(str::trim).collect();
            let media = ps[0];
            let param = |k: &str| {
                ps[1..]
                    .iter()
                    .find_map(|p| p.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            };
            let json_like = matches!(
                media,
                "application/json" | "*/*" | "application/*" | "application/yaml"
            );
            match param("as") {
                None if json_like => return Target::Object,
                None if media == crate::protobuf::MEDIA_TYPE => return Target::Protobuf,
                None => {}
                Some(kind) if json_like && param("g") == Some("meta.k8s.io") => {
                    let version = match param("v") {
                        Some("v1") => "v1",
                        Some("v1beta1") => "v1beta1",
                        _ => continue,
                    };
                    match kind {
                        "Table" => return Target::Table,
                        "PartialObjectMetadata" => return Target::Metadata(version),
                        "PartialObjectMetadataList" => return Target::MetadataList(version),
                        _ => {}
                    }
                }
                Some(_) => {}
            }
        }
        Target::NotAcceptable
    }

    /// The media type a reply in this target is labelled with.
    fn content_type(self) -> &'static str {
        match self {
            Target::Metadata("v1beta1") => {
                "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1beta1"
            }
            Target::Metadata(_) => "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
            Target::MetadataList("v1beta1") => {
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1beta1"
            }
            Target::MetadataList(_) => {
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
            }
            _ => "application/json",
        }
    }
}

/// A reply body as Kubernetes protobuf, when its kind has a protobuf form (custom
/// resources and Tables do not: they stay JSON, which protobuf clients also accept).
fn protobuf_reply(body: &Value) -> Option<Vec<u8>> {
    let kind = body.get("kind").and_then(Value::as_str)?;
    let av = body.get("apiVersion").and_then(Value::as_str)?;
    let def = if kind == "Status" {
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status".to_owned()
    } else {
        let (g, v) = av.rsplit_once('/').unwrap_or(("", av));
        crate::schema::schema().definition_for(g, v, kind)?
    };
    if !crate::protobuf::encode::can_encode(&def) {
        return None;
    }
    crate::protobuf::encode::encode_body(body, &def)
}

/// An object's PartialObjectMetadata of meta.k8s.io/`version`.
pub fn partial_metadata(obj: &Value, version: &str) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}

/// The 406 for a media type Keelson does not serve.
fn not_acceptable() -> ApiError {
    ApiError::NotAcceptable(
        "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf".into(),
    )
}

/// The version information `/version` reports.
pub fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": "v1.33.0-keelson",
        "gitCommit": option_env!("KEELSON_GIT_COMMIT").unwrap_or("0000000000000000000000000000000000000000"),
        "gitTreeState": "clean",
        "buildDate": "2026-11-23T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": format!("linux/{}", if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" }),
    })
}

fn is_long_running(info: &RequestInfo) -> bool {
    info.verb == "watch"
        || matches!(
            info.subresource.as_deref(),
            Some("log" | "exec" | "attach" | "portforward" | "proxy")
        )
}

/// Emits a long-running request's ResponseComplete audit event when its response
/// body is dropped: the watch ended or the client went away.
struct CompleteOnDrop {
    auditor: Arc<crate::audit::Auditor>,
    record: crate::audit::Record,
    code: u16,
}

impl Drop for CompleteOnDrop {
    fn drop(&mut self) {
        self.auditor
            .emit(&self.record, "ResponseComplete", Some(self.code), None);
    }
}

/// Upstream's `getAuthMethods`: what a request that failed authentication tried.
fn auth_methods(req: &Request<hyper::body::Incoming>) -> String {
    let mut methods = Vec::new();
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim();
    if auth.len() > 6 && auth[..6].eq_ignore_ascii_case("basic ") {
        methods.push("basic");
    }
    let mut parts = auth.split(' ');
    if parts
        .next()
        .is_some_and(|p| p.eq_ignore_ascii_case("bearer"))
        && parts.next().is_some()
    {
        methods.push("bearer");
    }
    if Query::parse(req.uri().query())
        .get("access_token")
        .is_some_and(|t| !t.trim().is_empty())
    {
        methods.push("access_token");
    }
    if req
        .extensions()
        .get::<component_base::serve::PeerInfo>()
        .is_some_and(|p| !p.certs.is_empty())
    {
        methods.push("x509");
    }
    if methods.is_empty() {
        "Authentication failed, no credentials provided".to_owned()
    } else {
        format!("Authentication failed, attempted: {}", methods.join(", "))
    }
}

impl Server {
    /// Handles one request, auditing it when `--audit-policy-file` is set.
    pub async fn handle(self: Arc<Self>, req: Request<hyper::body::Incoming>) -> Response<Body> {
        let Some(auditor) = self.api.auditor.clone() else {
            return self.handle_request(req, None).await;
        };
        let id = uuid::Uuid::new_v4().to_string();
        let rec = Arc::new(parking_lot::Mutex::new(crate::audit::Record {
            id: id.clone(),
            uri: req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
            user_agent: req
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
            source_ips: req
                .extensions()
                .get::<component_base::serve::PeerInfo>()
                .map(|p| vec![p.addr.ip().to_string()])
                .unwrap_or_default(),
            received: crate::meta::rfc3339_micro(std::time::SystemTime::now()),
            ..Default::default()
        }));
        let (long, attrs) = {
            let method = req.method().as_str().to_owned();
            let query = Query::parse(req.uri().query());
            let info = request::parse(&method, req.uri().path(), &query);
            (
                is_long_running(&info),
                crate::authz::Attributes::from_request(&info),
            )
        };
        let auth_methods = auth_methods(&req);
        let mut resp = self.handle_request(req, Some(rec.clone())).await;
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert("audit-id", v);
        }
        let mut r = rec.lock().clone();
        let code = resp.status().as_u16();
        // A request that failed authentication never reached the policy: it is
        // judged as nobody's, and logged at ResponseStarted with how it tried, as
        // upstream's `WithFailedAuthenticationAudit`.
        if r.level.is_none() && code == 401 {
            let (level, omit) = auditor.policy.evaluate(&UserInfo::default(), &attrs);
            r.level = Some(level);
            r.omit = omit;
            r.attrs = attrs;
            let status = json!({"kind": "Status", "message": auth_methods});
            auditor.emit(&r, "ResponseStarted", Some(code), Some(&status));
            return resp;
        }
        match r.level {
            None | Some(crate::audit::Level::None) => resp,
            Some(_) if long => {
                auditor.emit(&r, "ResponseStarted", Some(code), None);
                // ResponseComplete when the stream ends (or the client goes).
                let done = CompleteOnDrop {
                    auditor: auditor.clone(),
                    record: r,
                    code,
                };
                let (parts, body) = resp.into_parts();
                let body = body.map_frame(move |f| {
                    let _ = &done;
                    f
                });
                Response::from_parts(parts, Body::new(body))
            }
            Some(level) => {
                // Error replies are small Status objects; RequestResponse wants the
                // reply itself. Either way the body is read once and put back.
                if level < crate::audit::Level::RequestResponse && code < 400 {
                    auditor.emit(&r, "ResponseComplete", Some(code), None);
                    return resp;
                }
                let (parts, body) = resp.into_parts();
                let bytes = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                // Logged as JSON, whatever the client was answered in.
                let media = parts
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                let value: Option<Value> = json_body(&media, &bytes, None)
                    .ok()
                    .and_then(|j| serde_json::from_slice(&j).ok());
                auditor.emit(&r, "ResponseComplete", Some(code), value.as_ref());
                Response::from_parts(parts, Body::from(bytes))
            }
        }
    }

    async fn handle_request(
        self: Arc<Self>,
        mut req: Request<hyper::body::Incoming>,
        audit: Option<Arc<parking_lot::Mutex<crate::audit::Record>>>,
    ) -> Response<Body> {
        let start = Instant::now();
        let method = req.method().as_str().to_owned();
        let path = req.uri().path().to_owned();
        let query = Query::parse(req.uri().query());
        let info = request::parse(&method, &path, &query);
        // Health and version stay open without credentials even when anonymous access
        // is off, so that probes and load balancers work; upstream needs
        // --anonymous-auth for that (a deliberate difference, kept for probes).
        let public = matches!(
            path.as_str(),
            "/healthz" | "/livez" | "/readyz" | "/version"
        ) || path.starts_with("/healthz/")
            || path.starts_with("/livez/")
            || path.starts_with("/readyz/");
        let peer = req
            .extensions()
            .get::<component_base::serve::PeerInfo>()
            .cloned();
        let certs = peer.as_ref().map(|p| p.certs.as_slice()).unwrap_or(&[]);
        let authenticated = self.api.authenticator.authenticate_request(Credentials {
            headers: req.headers(),
            certs,
        });
        let user = match authenticated {
            Ok((u, by_proxy)) => {
                if by_proxy {
                    self.api
                        .authenticator
                        .clear_request_headers(req.headers_mut());
                }
                u
            }
            Err(crate::authn::Unauthenticated::NoCredentials) if public => UserInfo::anonymous(),
            Err(reason) => {
                tracing::debug!(path, %reason, "unauthenticated request");
                return error_response(&ApiError::Unauthorized);
            }
        };
        crate::authn::strip_token_protocol(req.headers_mut());
        let attrs = crate::authz::Attributes::from_request(&info);
        let mut capture = None;
        if let (Some(rec), Some(auditor)) = (&audit, &self.api.auditor) {
            let (level, omit) = auditor.policy.evaluate(&user, &attrs);
            let mut r = rec.lock();
            r.user = user.clone();
            r.attrs = attrs.clone();
            r.level = Some(level);
            r.omit = omit;
            auditor.emit(&r, "RequestReceived", None, None);
            // The record travels on for admission's annotations (and, from the
            // Request level, the request object).
            if level > crate::audit::Level::None {
                capture = Some(rec.clone());
            }
        }
        let requestor = user.name.clone();
        let user = match crate::authz::impersonate(&self.api.authorizer, user, req.headers()) {
            Ok(u) => u,
            Err(e) => return error_response(&e),
        };
        if let Some(rec) = &audit
            && user.name != requestor
        {
            rec.lock().impersonated = Some(user.clone());
        }
        let (decision, authz_error) = self.api.authorizer.decide(&user, &attrs);
        if let Some(rec) = &audit {
            let (d, reason) = match &decision {
                crate::authz::Decision::Allow(r) => ("allow", r),
                crate::authz::Decision::Deny(r) | crate::authz::Decision::NoOpinion(r) => {
                    ("forbid", r)
                }
            };
            let mut r = rec.lock();
            r.annotations
                .insert("authorization.k8s.io/decision".into(), json!(d));
            r.annotations
                .insert("authorization.k8s.io/reason".into(), json!(reason));
        }
        if let (crate::authz::Decision::NoOpinion(_), Some(e)) = (&decision, authz_error) {
            tracing::warn!(path, user = user.name, error = e, "authorization failed");
            return error_response(&ApiError::Internal(e));
        }
        if let crate::authz::Decision::Deny(r) | crate::authz::Decision::NoOpinion(r) = &decision {
            tracing::debug!(path, user = user.name, "forbidden");
            return error_response(&attrs.forbidden(&user.name, r));
        }
        let mutating = matches!(method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE");
        let long = is_long_running(&info);
        let _permit = if long {
            None
        } else {
            let sem = if mutating {
                &self.mutating
            } else {
                &self.readonly
            };
            match sem.try_acquire() {
                Ok(p) => Some(p),
                Err(_) => return error_response(&ApiError::TooManyRequests),
            }
        };
        let kind = if mutating { "mutating" } else { "readOnly" };
        self.metrics.inflight.with_label_values(&[kind]).inc();
        let resp = if long {
            self.clone().route(req, &info, &query, &user, capture).await
        } else {
            match tokio::time::timeout(self.request_timeout, self.clone().route(req, &info, &query, &user, capture)).await {
                Ok(r) => r,
                Err(_) => error_response(&ApiError::Timeout(
                    "Timeout: request did not complete within requested timeout - context deadline exceeded".into(),
                )),
            }
        };
        self.metrics.inflight.with_label_values(&[kind]).dec();
        if info.is_resource {
            self.metrics
                .observe(&info, resp.status().as_u16(), start.elapsed());
        }
        resp
    }

    async fn route(
        self: Arc<Self>,
        mut req: Request<hyper::body::Incoming>,
        info: &RequestInfo,
        query: &Query,
        user: &UserInfo,
        capture: Option<Arc<parking_lot::Mutex<crate::audit::Record>>>,
    ) -> Response<Body> {
        let accept = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let path = info.path.as_str();
        if !info.is_resource {
            return self
                .non_resource(req.method().as_str(), path, query, &accept)
                .await;
        }
        let Some(res) = catalog().get(&info.group, &info.version, &info.resource) else {
            return error_response(&ApiError::NoRoute);
        };
        // A cluster-scoped resource has no namespaced path (the namespace object's own
        // `/namespaces/<name>` aside): authorization saw the namespace, so serving the
        // path would let a namespace's RoleBindings act cluster-wide.
        if !res.namespaced
            && info.namespace.is_some()
            && !(res.group.is_empty() && res.plural == "namespaces" && info.name == info.namespace)
        {
            return error_response(&ApiError::NoRoute);
        }
        let method = req.method().as_str().to_owned();
        let user_agent = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_owned();
        // exec, attach and port-forward upgrade the connection; the upgrade is taken
        // before the (empty) body is read.
        let upgrade = (matches!(
            info.subresource.as_deref(),
            Some("exec" | "attach" | "portforward")
        ) && req.headers().contains_key(header::UPGRADE))
        .then(|| (req.headers().clone(), hyper::upgrade::on(&mut req)));
        let proxy_headers =
            (info.subresource.as_deref() == Some("proxy")).then(|| req.headers().clone());
        let body = match read_body(req.into_body()).await {
            Ok(b) => b,
            Err(e) => return error_response(&e),
        };
        // The request object as JSON, whatever it arrived as (kubectl's typed
        // clients send protobuf).
        // As upstream's `LogRequestObject`: a create's event names the object it
        // carries; from the Request level it holds the object too.
        if let Some(rec) = &capture
            && !body.is_empty()
        {
            let (wants_object, names_it) = {
                let r = rec.lock();
                (
                    r.level.is_some_and(|l| l >= crate::audit::Level::Request),
                    r.attrs.verb == "create" && r.attrs.name.is_empty(),
                )
            };
            if (wants_object || names_it)
                && let Ok(json) = json_body(&content_type, &body, Some(res.kind))
                && let Ok(v) = serde_json::from_slice::<Value>(&json)
            {
                let mut r = rec.lock();
                if names_it {
                    r.attrs.name = crate::meta::name(&v).to_owned();
                }
                if wants_object {
                    r.request_object = Some(v);
                }
            }
        }
        let target = Target::negotiate(&accept);
        if target == Target::NotAcceptable {
            return error_response(&not_acceptable());
        }
        let ctx = Ctx {
            api: &self.api,
            info,
            res,
            query,
            user,
            user_agent: &user_agent,
            warnings: Default::default(),
            audit_annotations: Default::default(),
        };
        if let (Some((headers, on_upgrade)), "Pod") = (upgrade, res.kind) {
            return match crate::nodes::upgrade(&ctx, &method, &headers, on_upgrade).await {
                Ok(r) => r,
                Err(e) => error_response(&e),
            };
        }
        if let (Some(headers), "Pod" | "Service") = (&proxy_headers, res.kind) {
            return match crate::proxy::proxy(&ctx, &method, headers, &body).await {
                Ok(r) => r,
                Err(e) => error_response(&e),
            };
        }
        if matches!(
            (res.kind, info.subresource.as_deref()),
            ("Pod", Some("log")) | ("Node", Some("proxy"))
        ) {
            return match crate::nodes::proxy(&ctx, &method, &body, &content_type).await {
                Ok(r) => r,
                Err(e) => error_response(&e),
            };
        }
        if info.verb == "watch" {
            if let Target::MetadataList(_) = target {
                return error_response(&ApiError::NotAcceptable(format!(
                    "you requested PartialObjectMetadataList, but the requested object is not a list (*{}.{})",
                    res.version, res.kind
                )));
            }
            return match handlers::watch(&ctx).await {
                Ok(w) => watch_response(
                    w,
                    target,
                    IncludeObject::parse(query.get("includeObject")),
                    self.metrics.clone(),
                ),
                // Like upstream's cacher: once the request is accepted, a resourceVersion
                // the cache no longer holds is an ERROR event in a 200 stream, which
                // clients (client-go's reflector, kube-rs' watcher) answer by relisting.
                Err(e @ ApiError::Gone(_)) => {
                    let mut line =
                        serde_json::to_vec(&json!({"type": "ERROR", "object": e.to_status()}))
                            .unwrap_or_default();
                    line.push(b'\n');
                    let mut r = Response::new(Body::from(line));
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    r
                }
                Err(e) => error_response(&e),
            };
        }
        // The hot read path: a JSON list is written straight from the cache's objects,
        // without building (and deep-copying into) one big JSON value first.
        if info.verb == "list"
            && info.subresource.is_none()
            && res.has_verb("list")
            && !res.converts()
            && res.custom.is_none()
            && target == Target::Object
        {
            return match handlers::list_objects(&ctx).await {
                Ok(l) => {
                    let mut r = Response::new(Body::from(handlers::list_json(res, &l)));
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    r
                }
                Err(e) => error_response(&e),
            };
        }
        let result = dispatch(&ctx, &body, &content_type).await;
        if let Some(rec) = &capture {
            let mut r = rec.lock();
            for (k, v) in ctx.audit_annotations.lock().drain(..) {
                r.annotations.insert(k, json!(v));
            }
        }
        match result {
            Ok(mut reply) => {
                // Warnings from admission (PodSecurity's warn mode, ...).
                reply.warnings.extend(ctx.warnings.lock().drain(..));
                Self::render(res, info, query, target, reply)
            }
            Err(e) => error_response(&e),
        }
    }

    fn render(
        res: &Resource,
        info: &RequestInfo,
        query: &Query,
        target: Target,
        reply: Reply,
    ) -> Response<Body> {
        let is_object = reply.body.get("kind").and_then(Value::as_str) != Some("Status");
        let read = matches!(info.verb.as_str(), "get" | "list") && info.subresource.is_none();
        let mut resp = if target == Target::Table
            && is_object
            && matches!(info.verb.as_str(), "get" | "list")
            && info.subresource.is_none()
        {
            let include = IncludeObject::parse(query.get("includeObject"));
            let items: Vec<Value> = if info.verb == "list" {
                reply.body["items"].as_array().cloned().unwrap_or_default()
            } else {
                vec![reply.body.clone()]
            };
            let rv = reply
                .body
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let cont = reply
                .body
                .pointer("/metadata/continue")
                .and_then(Value::as_str)
                .map(str::to_owned);
            // Rows of a list carry the full object with its kind, as upstream.
            let items: Vec<Value> = items
                .into_iter()
                .map(|mut o| {
                    if let Some(m) = o.as_object_mut() {
                        m.entry("kind").or_insert(json!(res.kind));
                        m.entry("apiVersion").or_insert(json!(res.api_version()));
                    }
                    o
                })
                .collect();
            respond(
                reply.code,
                &table::table(res, &items, rv, cont, include),
                "application/json",
            )
        } else if let (Target::Metadata(v) | Target::MetadataList(v), true) =
            (target, is_object && read)
        {
            match (target, info.verb == "list") {
                (Target::Metadata(_), false) => respond(
                    reply.code,
                    &partial_metadata(&reply.body, v),
                    target.content_type(),
                ),
                (Target::MetadataList(_), true) => {
                    let items: Vec<Value> = reply.body["items"]
                        .as_array()
                        .map(|a| a.iter().map(|o| partial_metadata(o, v)).collect())
                        .unwrap_or_default();
                    let list = json!({
                        "kind": "PartialObjectMetadataList",
                        "apiVersion": format!("meta.k8s.io/{v}"),
                        "metadata": reply.body.get("metadata").cloned().unwrap_or(json!({})),
                        "items": items,
                    });
                    respond(reply.code, &list, target.content_type())
                }
                (Target::Metadata(_), true) => {
                    return error_response(&ApiError::NotAcceptable(format!(
                        "you requested PartialObjectMetadata, but the requested object is a list (*{}.{}List)",
                        res.version, res.kind
                    )));
                }
                _ => {
                    return error_response(&ApiError::NotAcceptable(format!(
                        "you requested PartialObjectMetadataList, but the requested object is not a list (*{}.{})",
                        res.version, res.kind
                    )));
                }
            }
        } else if target == Target::Protobuf
            && let Some(bytes) = protobuf_reply(&reply.body)
        {
            let mut r = Response::new(Body::from(bytes));
            *r.status_mut() =
                StatusCode::from_u16(reply.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::protobuf::MEDIA_TYPE),
            );
            r
        } else {
            respond(reply.code, &reply.body, "application/json")
        };
        for w in &reply.warnings {
            if let Ok(v) = HeaderValue::from_str(&format!("299 - {:?}", w)) {
                resp.headers_mut().append("warning", v);
            }
        }
        resp
    }

    async fn non_resource(
        &self,
        method: &str,
        path: &str,
        query: &Query,
        accept: &str,
    ) -> Response<Body> {
        if method != "GET" && method != "HEAD" {
            return error_response(&ApiError::MethodNotAllowed);
        }
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match parts.as_slice() {
            ["version"] => respond(200, &version_info(), "application/json"),
            [".well-known", "openid-configuration"] | ["openid", "v1", "jwks"] => {
                match &self.api.service_account_issuer {
                    Some(d) if parts[0] == "openid" => {
                        respond(200, &d.jwks(), "application/jwk-set+json")
                    }
                    Some(d) => respond(200, &d.configuration(), "application/json"),
                    None => error_response(&ApiError::NoRoute),
                }
            }
            ["healthz" | "livez" | "readyz", rest @ ..] => self.health(parts[0], rest, query),
            ["metrics"] => {
                self.metrics.refresh_storage(&self.api);
                text(200, component_base::metrics::render(&self.metrics.registry))
            }
            ["api"] => {
                if crate::discovery::wants_aggregated(accept) {
                    respond(
                        200,
                        &crate::discovery::aggregated(true),
                        crate::discovery::AGGREGATED,
                    )
                } else {
                    respond(
                        200,
                        &crate::discovery::api_versions(&self.api.config.advertise),
                        "application/json",
                    )
                }
            }
            ["apis"] => {
                if crate::discovery::wants_aggregated(accept) {
                    respond(
                        200,
                        &crate::discovery::aggregated(false),
                        crate::discovery::AGGREGATED,
                    )
                } else {
                    respond(200, &crate::discovery::api_group_list(), "application/json")
                }
            }
            ["api", v] => match crate::discovery::resource_list("", v) {
                Some(l) => respond(200, &l, "application/json"),
                None => error_response(&ApiError::NoRoute),
            },
            ["apis", g] => match crate::discovery::api_group(g) {
                Some(l) => respond(200, &l, "application/json"),
                None => error_response(&ApiError::NoRoute),
            },
            ["apis", g, v] => match crate::discovery::resource_list(g, v) {
                Some(l) => respond(200, &l, "application/json"),
                None => error_response(&ApiError::NoRoute),
            },
            ["openapi", "v2"] => {
                if accept.contains(crate::openapi::V2_PROTOBUF) {
                    static PB: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
                    let pb = PB.get_or_init(|| {
                        Bytes::from(crate::openapi::v2_protobuf(&crate::openapi::v2_document(
                            self.api.schema,
                        )))
                    });
                    // Upstream labels it application/octet-stream: Go's mime parser
                    // rejects the '@' in the media type kubectl asks for.
                    let mut r = Response::new(Body::from(pb.clone()));
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    return r;
                }
                if accept.contains("protobuf") && !accept.contains("json") {
                    return error_response(&ApiError::NotAcceptable(format!(
                        "only the following media types are accepted: application/json, {}",
                        crate::openapi::V2_PROTOBUF
                    )));
                }
                respond(
                    200,
                    &crate::openapi::v2_document(self.api.schema),
                    "application/json",
                )
            }
            ["openapi", "v3"] => respond(
                200,
                &crate::openapi::v3_index(self.api.schema, OPENAPI_HASH),
                "application/json",
            ),
            ["openapi", "v3", "api", v] => {
                match crate::openapi::v3_document(self.api.schema, "", v) {
                    Some(d) => openapi_response(&d),
                    None => error_response(&ApiError::NoRoute),
                }
            }
            ["openapi", "v3", "apis", g, v] => {
                match crate::openapi::v3_document(self.api.schema, g, v) {
                    Some(d) => openapi_response(&d),
                    None => error_response(&ApiError::NoRoute),
                }
            }
            _ => error_response(&ApiError::NoRoute),
        }
    }

    fn health(&self, endpoint: &str, rest: &[&str], query: &Query) -> Response<Body> {
        let ready = self.ready.load(std::sync::atomic::Ordering::SeqCst);
        let mut checks: Vec<(&str, bool)> = vec![("ping", true), ("log", true), ("etcd", true)];
        if endpoint == "readyz" {
            checks.push(("etcd-readiness", true));
            checks.push(("informer-sync", ready));
            checks.push(("poststarthook/bootstrap-controller", ready));
            checks.push(("shutdown", true));
        }
        checks.push(("poststarthook/start-apiextensions-informers", true));
        checks.push(("poststarthook/rbac/bootstrap-roles", ready));
        if let Some(one) = rest.first() {
            let name = rest.join("/");
            return match checks.iter().find(|(n, _)| *n == name) {
                Some((_, true)) => text(200, "ok".into()),
                Some((n, false)) => text(500, format!("internal server error: {n} check failed")),
                None if one.is_empty() => text(200, "ok".into()),
                None => error_response(&ApiError::NoRoute),
            };
        }
        let ok = checks.iter().all(|(_, ok)| *ok);
        if query.0.contains_key("verbose") {
            let mut out = String::new();
            for (n, good) in &checks {
                out.push_str(&format!(
                    "[{}]{n} {}\n",
                    if *good { "+" } else { "-" },
                    if *good {
                        "ok"
                    } else {
                        "failed: reason withheld"
                    }
                ));
            }
            out.push_str(&format!(
                "{endpoint} check {}\n",
                if ok { "passed" } else { "failed" }
            ));
            return text(if ok { 200 } else { 500 }, out);
        }
        if ok {
            text(200, "ok".into())
        } else {
            let failed: Vec<String> = checks
                .iter()
                .filter(|(_, g)| !g)
                .map(|(n, _)| format!("[-]{n} failed: reason withheld"))
                .collect();
            text(
                500,
                format!("{}\n{endpoint} check failed", failed.join("\n")),
            )
        }
    }
}

/// The hash in `/openapi/v3` URLs; stable for one build of the schema.
const OPENAPI_HASH: &str = "keelson-v1.33.0";

fn openapi_response(d: &Value) -> Response<Body> {
    use std::hash::{Hash, Hasher};
    let mut r = respond(200, d, "application/json");
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, immutable"),
    );
    // The document's own hash: custom group-versions change with their CRDs.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    d.to_string().hash(&mut h);
    if let Ok(v) = HeaderValue::from_str(&format!("\"{:016X}\"", h.finish())) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

async fn read_body(body: hyper::body::Incoming) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(ApiError::TooLarge(MAX_BODY))
            } else {
                Err(ApiError::BadRequest(format!(
                    "error reading request body: {e}"
                )))
            }
        }
    }
}

/// Every non-patch body as JSON: YAML and protobuf bodies are converted here, once,
/// so that the handlers see one format. Patch bodies keep their own media types.
/// `kind`, when given, is the only kind a protobuf body may carry (the resource's own,
/// for a create or update): anything else is refused before it is decoded.
fn json_body(content_type: &str, body: &Bytes, kind: Option<&str>) -> Result<Bytes, ApiError> {
    match content_type {
        "" | "application/json" | "*/*" => Ok(body.clone()),
        _ if body.is_empty() => Ok(body.clone()),
        "application/yaml" => {
            let text = std::str::from_utf8(body).map_err(|e| {
                ApiError::BadRequest(format!("error converting YAML to JSON: {e}"))
            })?;
            // Upstream converts YAML guided by the Go type, so `name: y` stays a string.
            // Without types, YAML 1.2 booleans come closest: only true/false are bools.
            let opts = serde_saphyr::options! { strict_booleans: true };
            let v: Value = serde_saphyr::from_str_with_options(text, opts)
                .map_err(|e| ApiError::BadRequest(yaml_error(&e)))?;
            Ok(Bytes::from(serde_json::to_vec(&v).unwrap_or_default()))
        }
        crate::protobuf::MEDIA_TYPE => {
            if let Some(want) = kind {
                let env = crate::protobuf::envelope(body)
                    .map_err(|e| ApiError::BadRequest(e.to_string()))?;
                if env.kind != want {
                    return Err(ApiError::BadRequest(format!(
                        "the object provided is unrecognized (must be of type {want}): {} in {}",
                        env.kind, env.api_version
                    )));
                }
            }
            let v = crate::protobuf::decode_body(body, &|g, v, k| {
                crate::schema::schema().definition_for(g, v, k)
            })
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            Ok(Bytes::from(serde_json::to_vec(&v).unwrap_or_default()))
        }
        _ => Err(ApiError::UnsupportedMediaType(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf".into(),
        )),
    }
}

/// Upstream's words for a YAML body that does not parse:
/// `error converting YAML to JSON: yaml: line 4: <what>`.
fn yaml_error(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    let text = text.trim_start_matches("error: ");
    let what = match (e.location(), text.split_once(": ")) {
        (Some(_), Some((pos, rest))) if pos.starts_with("line ") => rest,
        _ => text,
    };
    match e.location() {
        Some(loc) => format!(
            "error converting YAML to JSON: yaml: line {}: {what}",
            loc.line()
        ),
        None => format!("error converting YAML to JSON: yaml: {what}"),
    }
}

async fn dispatch(ctx: &Ctx<'_>, body: &Bytes, content_type: &str) -> Result<Reply, ApiError> {
    let res = ctx.res;
    let info = ctx.info;
    let verb = info.verb.as_str();
    let converted;
    let (body, content_type) = if verb == "patch" {
        (body, content_type)
    } else {
        let kind =
            (info.subresource.is_none() && matches!(verb, "create" | "update")).then_some(res.kind);
        converted = json_body(content_type, body, kind)?;
        (&converted, "application/json")
    };
    if res.namespaced
        && info.namespace.is_none()
        && !matches!(verb, "list" | "watch")
        && res.plural != "namespaces"
    {
        return Err(ApiError::NoRoute);
    }
    let not_supported = || ApiError::MethodNotSupported {
        resource: res.gr(),
        verb: verb.to_owned(),
    };
    if let Some(sub) = info.subresource.as_deref() {
        let Some(s) = res.subresource(sub) else {
            return Err(ApiError::NoRoute);
        };
        let method = match verb {
            "get" => "GET",
            "update" => "PUT",
            "patch" => "PATCH",
            "create" => "POST",
            "delete" => "DELETE",
            _ => "",
        };
        if !s.verbs.contains(&verb) {
            return Err(ApiError::MethodNotAllowed);
        }
        return match sub {
            "status" | "approval" | "finalize" => match verb {
                "get" => handlers::get_status(ctx).await,
                "update" => handlers::update(ctx, body, true).await,
                "patch" => handlers::patch(ctx, body, content_type, true).await,
                _ => Err(ApiError::MethodNotAllowed),
            }
            .map(|r| handlers::reply_in_request_version(res, r)),
            "scale" => handlers::scale(ctx, method, body, content_type).await,
            "binding" => handlers::bind(ctx, body).await,
            "eviction" => crate::eviction::evict(ctx, body).await,
            "token" if res.kind == "ServiceAccount" => {
                crate::serviceaccount::request::create(ctx, ctx.api.token_issuing.as_ref(), body)
                    .await
            }
            // Reached without a connection upgrade (upgrades go to `nodes::upgrade`).
            "exec" | "attach" | "portforward" if res.kind == "Pod" => {
                Err(ApiError::BadRequest("Upgrade request required".into()))
            }
            "log" | "exec" | "attach" | "portforward" | "proxy" => {
                Err(crate::nodes::no_kubelet(ctx).await)
            }
            _ => Err(ApiError::MethodNotAllowed),
        };
    }
    if !(res.has_verb(verb) || res.plural == "bindings" && verb == "create") {
        return Err(not_supported());
    }
    // POST goes to collections only; an item path would be authorized for one name
    // and create another.
    if verb == "create" && info.name.is_some() {
        return Err(ApiError::MethodNotAllowed);
    }
    if res.plural == "bindings" {
        return handlers::bind(ctx, body).await;
    }
    if matches!(res.group, "authentication.k8s.io" | "authorization.k8s.io") {
        return crate::review::create(ctx, body);
    }
    match verb {
        "get" => handlers::get(ctx).await.map(|mut r| {
            r.body = handlers::to_request_version(res, &r.body);
            r
        }),
        "list" => {
            let l = handlers::list_objects(ctx).await?;
            Ok(Reply {
                code: 200,
                body: handlers::list_body(res, &l),
                warnings: Vec::new(),
            })
        }
        "create" => handlers::create(ctx, body)
            .await
            .map(|r| handlers::reply_in_request_version(res, r)),
        "update" => handlers::update(ctx, body, false)
            .await
            .map(|r| handlers::reply_in_request_version(res, r)),
        "patch" => handlers::patch(ctx, body, content_type, false)
            .await
            .map(|r| handlers::reply_in_request_version(res, r)),
        "delete" => handlers::delete(ctx, body).await,
        "deletecollection" => handlers::delete_collection(ctx, body).await,
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// How often a watch that asked for bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);
/// How long before a watch's timeout its last bookmark goes out.
const BOOKMARK_BEFORE_END: Duration = Duration::from_secs(2);

fn watch_response(
    mut w: handlers::WatchStart,
    target: Target,
    include: IncludeObject,
    metrics: Metrics,
) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(64);
    let res = w.res;
    // A protobuf watch, when asked for and the kind has a protobuf form.
    let proto_def = (target == Target::Protobuf && res.custom.is_none())
        .then(|| crate::schema::schema().definition_for(res.group, res.version, res.kind))
        .flatten()
        .filter(|d| crate::protobuf::encode::can_encode(d));
    let content_type = if proto_def.is_some() {
        "application/vnd.kubernetes.protobuf;stream=watch"
    } else {
        target.content_type()
    };
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + w.timeout;
        let encode = |ty: &str, obj: Value| {
            if let Some(def) = &proto_def {
                let def = if ty == "ERROR" {
                    "io.k8s.apimachinery.pkg.apis.meta.v1.Status"
                } else {
                    def.as_str()
                };
                if let Some(frame) = crate::protobuf::encode::watch_frame(ty, &obj, def) {
                    return Bytes::from(frame);
                }
            }
            let obj = match target {
                _ if ty == "ERROR" => obj,
                Target::Table if ty != "BOOKMARK" => table::table(res, &[obj], None, None, include),
                // A bookmark of a metadata watch is a PartialObjectMetadata too, as
                // upstream's watch encoder transforms every event's object.
                Target::Metadata(v) => partial_metadata(&obj, v),
                _ => obj,
            };
            let mut line =
                serde_json::to_vec(&json!({"type": ty, "object": obj})).unwrap_or_default();
            line.push(b'\n');
            Bytes::from(line)
        };
        // An event's object is serialized once and shared by every watcher that sends
        // it unchanged (JSON at the storage version), as upstream's cachingObject.
        let event_line = |ty: &str, e: &crate::cache::Event, other: Option<Value>| {
            if let Some(o) = other {
                return encode(ty, handlers::to_request_version(res, &o));
            }
            if target != Target::Object || res.converts() || res.custom.is_some() {
                return encode(ty, handlers::to_request_version(res, &e.object));
            }
            let obj = e.object_json();
            let mut line = Vec::with_capacity(obj.len() + 40);
            line.extend_from_slice(b"{\"type\":\"");
            line.extend_from_slice(ty.as_bytes());
            line.extend_from_slice(b"\",\"object\":");
            line.extend_from_slice(obj);
            line.extend_from_slice(b"}\n");
            Bytes::from(line)
        };
        let backlog = std::mem::take(&mut w.backlog);
        for n in &backlog {
            if let Some((ty, e, other)) = handlers::watch_event(&w, n) {
                metrics.watch_event(res);
                if tx
                    .send(Ok(event_line(ty.as_str(), e, other)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        // Upstream's cacher sends a bookmark every minute, and one just before the
        // watch's timeout, so that a client resumes from a fresh resourceVersion: the
        // next one is due at min(last + 1 min, deadline - 2 s), and none once that
        // has passed.
        let due = |from: tokio::time::Instant| {
            deadline
                .checked_sub(BOOKMARK_BEFORE_END)
                .map(|end| (from + BOOKMARK_EVERY).min(end))
                .filter(|t| *t > from)
        };
        let mut next_bookmark = due(tokio::time::Instant::now());
        let mut last_rv = backlog.iter().fold(w.start_rv, |rv, n| match n {
            Notice::Progress(r) => rv.max(*r),
            Notice::Event(e) => rv.max(e.rv),
        });
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = tx.closed() => return,
                _ = tokio::time::sleep_until(next_bookmark.unwrap_or(deadline)),
                    if w.bookmarks && next_bookmark.is_some() =>
                {
                    next_bookmark = due(tokio::time::Instant::now());
                    if last_rv > 0 {
                        let bm = json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": {"resourceVersion": last_rv.to_string()}});
                        if tx.send(Ok(encode("BOOKMARK", bm))).await.is_err() {
                            return;
                        }
                    }
                }
                n = w.rx.recv() => match n {
                    Ok(n) => {
                        match &n {
                            Notice::Progress(rv) => last_rv = *rv,
                            Notice::Event(e) => last_rv = e.rv,
                        }
                        if let Some((ty, e, other)) = handlers::watch_event(&w, &n) {
                            metrics.watch_event(res);
                            if tx.send(Ok(event_line(ty.as_str(), e, other))).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        // Too slow: end the watch; the client re-watches from its last
                        // resourceVersion, as with upstream's terminated slow watchers.
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut r = Response::new(Body::from_stream(stream.map(|b| b)));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    r
}

/// Serves HTTPS on `addr` until `stop` resolves.
pub async fn serve(
    server: Arc<Server>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let stopped = async move {
        let _ = stop.changed().await;
    };
    component_base::serve::serve_tls(listener, tls, stopped, move |req| {
        let server = server.clone();
        async move { server.handle(req).await }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_become_json() {
        let yaml = Bytes::from_static(
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\ndata:\n  a: \"1\"\n",
        );
        let j: Value =
            serde_json::from_slice(&json_body("application/yaml", &yaml, None).unwrap()).unwrap();
        assert_eq!(
            j,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "y"}, "data": {"a": "1"}})
        );
        let raw = Bytes::from_static(b"{\"a\":1}");
        assert_eq!(json_body("application/json", &raw, None).unwrap(), raw);
        assert_eq!(json_body("", &raw, None).unwrap(), raw);
        let bad = Bytes::from_static(b"metadata:\n  name: [y\n");
        match json_body("application/yaml", &bad, None) {
            Err(ApiError::BadRequest(m)) => {
                assert!(
                    m.starts_with("error converting YAML to JSON: yaml: line "),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
        match json_body("text/plain", &raw, None) {
            Err(ApiError::UnsupportedMediaType(m)) => assert!(
                m.ends_with(
                    "application/json, application/yaml, application/vnd.kubernetes.protobuf"
                ),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        // A protobuf body of another kind than the resource's is refused undecoded.
        let mut tm = crate::protobuf::Writer::default();
        tm.string(1, "v1").string(2, "Secret");
        let mut env = crate::protobuf::Writer(crate::protobuf::MAGIC.to_vec());
        env.bytes(1, &tm.0).bytes(2, b"");
        match json_body(
            crate::protobuf::MEDIA_TYPE,
            &Bytes::from(env.0),
            Some("ConfigMap"),
        ) {
            Err(ApiError::BadRequest(m)) => {
                assert!(m.contains("must be of type ConfigMap"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        match json_body(crate::protobuf::MEDIA_TYPE, &raw, None) {
            Err(ApiError::BadRequest(m)) => assert!(m.contains("k8s"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}

#[cfg(test)]
mod negotiation_tests {
    use super::Target;

    #[test]
    fn accept_header_picks_the_first_servable_range() {
        assert_eq!(Target::negotiate(""), Target::Object);
        assert_eq!(Target::negotiate("*/*"), Target::Object);
        // client-go's typed clients: protobuf first, answered in protobuf.
        assert_eq!(
            Target::negotiate("application/vnd.kubernetes.protobuf, */*"),
            Target::Protobuf
        );
        assert_eq!(
            Target::negotiate("application/json, application/vnd.kubernetes.protobuf"),
            Target::Object
        );
        // kubectl get's header.
        assert_eq!(
            Target::negotiate(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
            ),
            Target::Table
        );
        // client-go's metadata client: protobuf first, which is answered in JSON.
        assert_eq!(
            Target::negotiate(
                "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
            ),
            Target::MetadataList("v1")
        );
        assert_eq!(
            Target::negotiate("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1beta1"),
            Target::Metadata("v1beta1")
        );
        // An unknown conversion or version falls through to the next range.
        assert_eq!(
            Target::negotiate("application/json;as=Foo;g=meta.k8s.io;v=v1,application/json"),
            Target::Object
        );
        assert_eq!(
            Target::negotiate("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v2"),
            Target::NotAcceptable
        );
        assert_eq!(Target::negotiate("text/html"), Target::NotAcceptable);
    }
}

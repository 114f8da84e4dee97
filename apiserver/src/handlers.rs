//! The resource verbs: get, list, watch, create, update, patch, delete and
//! deletecollection, and the status and scale subresources.
//!
//! Each write runs upstream's pipeline: decode (with field validation), defaulting,
//! the strategy's server-owned fields, admission (mutating, then validating), object
//! and kind validation, then the store. dryRun=All stops before the store.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::admission::{AdmissionRequest, Operation};
use crate::api::Api;
use crate::cache::{CacheError, EventType, Notice};
use crate::catalog::{Resource, gv_string};
use crate::error::{ApiError, FieldError};
use crate::fieldmanager::FieldManager;
use crate::fieldsel;
use crate::meta;
use crate::request::{Query, RequestInfo};
use crate::schema::FieldValidation;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::storage::prefix_end;

/// What a handler returns: a status code, a JSON body, and warnings.
pub struct Reply {
    /// HTTP status.
    pub code: u16,
    /// Body.
    pub body: Value,
    /// `Warning` headers.
    pub warnings: Vec<String>,
}

impl Reply {
    fn ok(body: Value) -> Self {
        Reply {
            code: 200,
            body,
            warnings: Vec::new(),
        }
    }
    fn created(body: Value) -> Self {
        Reply {
            code: 201,
            body,
            warnings: Vec::new(),
        }
    }
}

/// One resource request.
pub struct Ctx<'a> {
    /// The server.
    pub api: &'a Api,
    /// What was asked.
    pub info: &'a RequestInfo,
    /// The resource.
    pub res: &'static Resource,
    /// Query parameters.
    pub query: &'a Query,
    /// The authenticated user.
    pub user: &'a crate::authn::UserInfo,
    /// The User-Agent header (the default field manager).
    pub user_agent: &'a str,
    /// Warnings for the client gathered on the way (admission's), sent as
    /// `Warning` headers with the reply.
    pub warnings: std::sync::Arc<parking_lot::Mutex<Vec<String>>>,
    /// Audit annotations gathered on the way (admission's), added to the request's
    /// audit event.
    pub audit_annotations: std::sync::Arc<parking_lot::Mutex<Vec<(String, String)>>>,
}

impl Ctx<'_> {
    fn ns(&self) -> &str {
        if self.res.namespaced {
            self.info.namespace.as_deref().unwrap_or("")
        } else {
            ""
        }
    }
    fn name(&self) -> &str {
        self.info.name.as_deref().unwrap_or("")
    }
    fn dry_run(&self) -> Result<bool, ApiError> {
        match self.query.0.get("dryRun") {
            None => Ok(false),
            Some(v) => {
                for d in v {
                    if d != "All" {
                        return Err(ApiError::BadRequest(format!(
                            "Invalid dryRun value: {d:?}; supported values: \"All\""
                        )));
                    }
                }
                Ok(!v.is_empty())
            }
        }
    }
    fn field_validation(&self) -> Result<FieldValidation, ApiError> {
        FieldValidation::parse(self.query.get("fieldValidation"))
    }
    /// The manager a non-apply write is recorded under: `fieldManager` (checked as
    /// upstream's `ValidateFieldManager`, errors named after `options`, e.g.
    /// `CreateOptions`), else the User-Agent's product.
    fn manager(&self, options: &str) -> Result<String, ApiError> {
        let given = self.query.get("fieldManager");
        let errs = validate_field_manager(given.unwrap_or(""));
        if !errs.is_empty() {
            return Err(options_invalid(options, errs));
        }
        Ok(crate::fieldmanager::manager_or_user_agent(
            given,
            self.user_agent,
        ))
    }
    /// Field management for this resource (`sub`: the subresource written).
    fn field_manager(&self, sub: Option<&str>) -> Option<FieldManager<'static>> {
        let res = self.res;
        if let Some(info) = res.custom {
            return Some(FieldManager::with_root(
                self.api.schema,
                crate::fieldmanager::typed::TypeRef::Node(&info.schema),
                &gv_string(res.group, res.version),
                res.kind,
                sub,
                crate::strategy::has_status(res),
            ));
        }
        let def = self
            .api
            .schema
            .definition_for(res.group, res.version, res.kind)?;
        FieldManager::new(
            self.api.schema,
            &def,
            &gv_string(res.group, res.version),
            res.kind,
            sub,
            crate::strategy::has_status(res),
        )
    }
    fn admission(
        &self,
        op: Operation,
        obj: Option<&Value>,
        old: Option<&Value>,
        sub: Option<&str>,
        dry_run: bool,
    ) -> AdmissionRequest {
        AdmissionRequest {
            operation: op,
            resource: self.res,
            subresource: sub.map(str::to_owned),
            namespace: self.ns().to_owned(),
            // A create names the object it carries, as upstream's attributes do.
            name: match self.name() {
                "" => obj.map(|o| meta::name(o).to_owned()).unwrap_or_default(),
                n => n.to_owned(),
            },
            object: obj.cloned(),
            old_object: old.cloned(),
            user: self.user.clone(),
            dry_run,
            warnings: self.warnings.clone(),
            audit_annotations: self.audit_annotations.clone(),
        }
    }
}

/// Checks the body's apiVersion and kind against the endpoint, filling them when
/// absent, as upstream's decoder defaults them.
fn check_type(
    res: &Resource,
    kind: &str,
    group: &str,
    version: &str,
    obj: &mut Value,
) -> Result<(), ApiError> {
    let want_av = gv_string(group, version);
    let Some(m) = obj.as_object_mut() else {
        return Err(ApiError::BadRequest(
            "the object provided is unrecognized (must be of type Object)".into(),
        ));
    };
    match m.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            m.insert("apiVersion".into(), json!(want_av));
        }
        Some(av) if av != want_av => {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({av}) does not match the expected API version ({want_av})"
            )));
        }
        _ => {}
    }
    match m.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            m.insert("kind".into(), json!(kind));
        }
        Some(k) if k != kind => {
            return Err(ApiError::BadRequest(format!(
                "{k} in version \"{version}\" cannot be handled as a {kind}: no kind \"{k}\" is registered for version \"{want_av}\" in scheme \"k8s.io/apimachinery@v1.33.0/pkg/runtime/scheme.go:100\""
            )));
        }
        _ => {}
    }
    let _ = res;
    Ok(())
}

/// Parses a JSON body.
pub fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "Object 'Kind' is missing in ''".into(),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "couldn't get version/kind; json parse error: {}",
            crate::schema::go_json_error(&e)
        ))
    })
}

/// Decodes a request body into an object of the endpoint's kind, with field
/// validation; returns the object and the warnings.
fn decode(
    ctx: &Ctx<'_>,
    body: &Bytes,
    kind: &str,
    group: &str,
    version: &str,
) -> Result<(Value, Vec<String>), ApiError> {
    let mut obj = parse_json(body)?;
    check_type(ctx.res, kind, group, version, &mut obj)?;
    let mode = ctx.field_validation()?;
    let mut warnings = ctx
        .api
        .schema
        .validate_fields(group, version, kind, &mut obj, mode, body)?;
    warnings.extend(prune_custom(ctx.res, &mut obj, mode)?);
    Ok((obj, warnings))
}

/// A custom object's fields its schema does not specify: dropped, with a warning or
/// (Strict) an error, in upstream's words.
fn prune_custom(
    res: &Resource,
    obj: &mut Value,
    mode: FieldValidation,
) -> Result<Vec<String>, ApiError> {
    let Some(info) = res.custom else {
        return Ok(Vec::new());
    };
    let mut unknown = Vec::new();
    crate::crd::prune(&info.schema, obj, "", &mut unknown);
    mode.apply(
        unknown
            .iter()
            .map(|f| format!("unknown field {f:?}"))
            .collect(),
    )
}

/// Defaults: the built-in kind's, a custom resource's schema `default`s, a CRD's.
fn default_object(res: &Resource, obj: &mut Value) {
    crate::defaults::apply(res.kind, obj);
    if let Some(info) = res.custom {
        crate::crd::apply_defaults(&info.schema, obj);
    }
    if res.kind == "CustomResourceDefinition" && res.group == "apiextensions.k8s.io" {
        crate::crd::default_crd(obj);
    }
}

fn check_namespace(ctx: &Ctx<'_>, obj: &mut Value) -> Result<(), ApiError> {
    if !ctx.res.namespaced {
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("namespace");
        }
        return Ok(());
    }
    let ns = ctx.ns().to_owned();
    let m = meta::meta_mut(obj);
    match m.get("namespace").and_then(Value::as_str) {
        None | Some("") => {
            m.insert("namespace".into(), json!(ns));
        }
        Some(n) if n != ns => {
            return Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ));
        }
        _ => {}
    }
    Ok(())
}

fn invalid(res: &Resource, obj: &Value, causes: Vec<FieldError>) -> ApiError {
    let name = match meta::name(obj) {
        "" => meta::field(obj, "generateName").unwrap_or(""),
        n => n,
    };
    ApiError::Invalid {
        group: res.group.to_owned(),
        kind: res.kind.to_owned(),
        name: name.to_owned(),
        causes,
    }
}

/// Validates a whole object of `res`'s kind.
pub fn validate(res: &Resource, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let mut errs = crate::validation::validate_object_meta(obj, res.kind, res.namespaced);
    errs.extend(crate::validation::validate_kind(res.kind, obj));
    if let Some(info) = res.custom {
        crate::crd::validate(&info.schema, obj, "", &mut errs);
    }
    if res.kind == "CustomResourceDefinition" && res.group == "apiextensions.k8s.io" {
        errs.extend(crate::crd::validate_crd(obj));
    }
    if let Some(old) = old {
        errs.extend(crate::validation::validate_meta_update(obj, old));
        errs.extend(crate::validation::validate_kind_update(res.kind, obj, old));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(invalid(res, obj, errs))
    }
}

/// `metadata.generateName` + a random suffix, for objects created without a name.
fn generate_name(obj: &mut Value) {
    if meta::name(obj).is_empty()
        && let Some(g) = meta::field(obj, "generateName").map(str::to_owned)
        && !g.is_empty()
    {
        let mut base = g;
        base.truncate(58);
        meta::meta_mut(obj).insert(
            "name".into(),
            json!(format!("{base}{}", meta::name_suffix())),
        );
    }
}

/// POST to a collection.
pub async fn create(ctx: &Ctx<'_>, body: &Bytes) -> Result<Reply, ApiError> {
    let res = ctx.res;
    let (obj, warnings) = decode(ctx, body, res.kind, res.group, res.version)?;
    let manager = ctx.manager("CreateOptions")?;
    let mut obj = to_storage_version(res, obj);
    check_namespace(ctx, &mut obj)?;
    default_object(res, &mut obj);
    if let Some(fm) = ctx.field_manager(None) {
        let baseline = fm.empty_object(meta::name(&obj), ctx.ns());
        track_update(res, &fm, &baseline, &mut obj, &manager);
    }
    create_object(ctx, obj, warnings).await
}

/// Records an Update by `manager` on `new` (storage version), comparing in the
/// request's version: upstream manages fields in the version the client wrote.
fn track_update(
    res: &Resource,
    fm: &FieldManager<'_>,
    live: &Value,
    new: &mut Value,
    manager: &str,
) {
    let live_view = to_request_version(res, live);
    let mut new_view = to_request_version(res, new);
    fm.update(&live_view, &mut new_view, manager, &meta::now());
    match new_view.pointer("/metadata/managedFields") {
        Some(mf) => {
            meta::meta_mut(new).insert("managedFields".into(), mf.clone());
        }
        None => {
            meta::meta_mut(new).remove("managedFields");
        }
    }
}

/// Creates `obj` (storage version, defaulted, managed fields recorded): server-owned
/// fields, admission, validation, then the store.
async fn create_object(
    ctx: &Ctx<'_>,
    obj: Value,
    warnings: Vec<String>,
) -> Result<Reply, ApiError> {
    let res = ctx.res;
    let mut obj = obj;
    let dry_run = ctx.dry_run()?;
    crate::strategy::prepare_for_create(res, &mut obj);
    let mut last_err = None;
    // A generated name may collide; upstream retries with a new suffix.
    for _ in 0..3 {
        let mut attempt = obj.clone();
        generate_name(&mut attempt);
        let adm = ctx.admission(Operation::Create, Some(&attempt), None, None, dry_run);
        let mut attempt = ctx.api.admission.admit(ctx.api, adm).await?;
        validate(res, &attempt, None)?;
        ctx.api
            .validate_admission(ctx.admission(
                Operation::Create,
                Some(&attempt),
                None,
                None,
                dry_run,
            ))
            .await?;
        crate::rbac::confirm_write(ctx.api, ctx.user, res, &attempt, None)?;
        ctx.api.before_create(res, &mut attempt, dry_run).await?;
        if dry_run {
            meta::meta_mut(&mut attempt).remove("resourceVersion");
            return Ok(Reply {
                code: 201,
                body: attempt,
                warnings,
            });
        }
        match ctx.api.registry.create(res, &attempt).await {
            Ok(stored) => {
                ctx.api.after_create(res, &stored).await;
                return Ok(Reply {
                    code: 201,
                    body: stored,
                    warnings,
                });
            }
            Err(e @ ApiError::AlreadyExists { .. }) if meta::name(&obj).is_empty() => {
                last_err = Some(e);
            }
            Err(e) => {
                ctx.api.release(res, &attempt).await;
                return Err(e);
            }
        }
    }
    Err(last_err.unwrap_or_else(|| ApiError::Internal("create failed".into())))
}

/// GET one object.
pub async fn get(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    let res = ctx.res;
    let rv = ctx.query.get("resourceVersion").unwrap_or("");
    // "0" may be served from the cache; anything else is a consistent read.
    if rv == "0"
        && let Some(c) = ctx.api.registry.cache(res)
    {
        let key = ctx.api.registry.key(res, ctx.ns(), ctx.name());
        return match c.get(&key) {
            Some(o) => Ok(Reply::ok((*o).clone())),
            None => Err(ApiError::not_found(&res.gr(), ctx.name())),
        };
    }
    Ok(Reply::ok(
        ctx.api.registry.get(res, ctx.ns(), ctx.name()).await?,
    ))
}

/// The selectors of a list or watch, parsed and checked against the resource's field
/// labels.
pub struct Selectors {
    /// Labels.
    pub label: LabelSelector,
    /// Fields.
    pub field: FieldSelector,
}

impl Selectors {
    fn parse(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let label = LabelSelector::parse(ctx.query.get("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::BadRequest(e.0))?;
        let field = FieldSelector::parse(ctx.query.get("fieldSelector").unwrap_or(""))
            .map_err(|e| ApiError::BadRequest(e.0))?;
        for r in &field.0 {
            fieldsel::check_label(ctx.res.kind, &r.field).map_err(ApiError::BadRequest)?;
        }
        Ok(Selectors { label, field })
    }
    /// Whether an object matches both.
    pub fn matches(&self, kind: &str, obj: &Value) -> bool {
        self.label.matches_object(obj)
            && (self.field.is_empty() || self.field.matches(|f| fieldsel::value(kind, obj, f)))
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: u64,
    start: String,
}

fn encode_continue(rv: u64, start: &str) -> String {
    use base64::Engine;
    let t = ContinueToken {
        v: "meta.k8s.io/v1".into(),
        rv,
        start: start.to_owned(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&t).unwrap_or_default())
}

fn decode_continue(s: &str) -> Result<ContinueToken, ApiError> {
    use base64::Engine;
    let bad = || {
        ApiError::BadRequest("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into())
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| bad())?;
    let t: ContinueToken = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if t.v != "meta.k8s.io/v1" || t.start.contains("..") || t.start.starts_with('/') {
        return Err(bad());
    }
    Ok(t)
}

/// A list result before rendering.
pub struct ListResult {
    /// The items (at the storage version).
    pub items: Vec<Arc<Value>>,
    /// The list's resourceVersion.
    pub rv: u64,
    /// The continue token.
    pub cont: Option<String>,
    /// Items after this page, when known.
    pub remaining: Option<u64>,
}

/// Reads a list with upstream's resourceVersion semantics: from the watch cache unless
/// the request needs the store (a continue token, an exact revision, or a limit on a
/// consistent read).
pub async fn list_objects(ctx: &Ctx<'_>) -> Result<ListResult, ApiError> {
    let res = ctx.res;
    let sel = Selectors::parse(ctx)?;
    let rv_param = ctx.query.get("resourceVersion").unwrap_or("");
    let rvm = ctx.query.get("resourceVersionMatch").unwrap_or("");
    let limit = ctx.query.int("limit")?.unwrap_or(0).max(0) as u64;
    let cont = ctx.query.get("continue").unwrap_or("");
    let ns = if res.namespaced {
        ctx.info.namespace.as_deref()
    } else {
        None
    };
    let rv_num: Option<u64> =
        if rv_param.is_empty() {
            None
        } else {
            Some(rv_param.parse().map_err(|_| {
                ApiError::BadRequest(format!("invalid resource version: {rv_param}"))
            })?)
        };
    match rvm {
        "" => {}
        "Exact" | "NotOlderThan"
            if rv_num.is_some() && rv_num != Some(0)
                || rvm == "NotOlderThan" && rv_num.is_some() => {}
        "Exact" | "NotOlderThan" => {
            return Err(ApiError::Invalid {
                group: "meta.k8s.io".into(),
                kind: "ListOptions".into(),
                name: String::new(),
                causes: vec![FieldError::forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                )],
            });
        }
        other => {
            return Err(ApiError::Invalid {
                group: "meta.k8s.io".into(),
                kind: "ListOptions".into(),
                name: String::new(),
                causes: vec![FieldError::not_supported(
                    "resourceVersionMatch",
                    json!(other),
                    &["Exact", "NotOlderThan", ""],
                )],
            });
        }
    }
    if !cont.is_empty() && rv_num.is_some() {
        return Err(ApiError::BadRequest(
            "specifying resource version is not allowed when using continue".into(),
        ));
    }
    let has_limit = limit > 0;
    let delegate = !cont.is_empty()
        || rvm == "Exact"
        || (has_limit && rv_num != Some(0) && rvm != "NotOlderThan");
    let prefix = ctx.api.registry.collection(res, ns);
    if !delegate && let Some(cache) = ctx.api.registry.cache(res) {
        let want = match rv_num {
            Some(0) => 0,
            Some(n) => n,
            None => ctx
                .api
                .registry
                .kv
                .current_revision()
                .await
                .map_err(|e| crate::registry::kv_error(res, "", e))?,
        };
        cache.wait_fresh(want).await.map_err(cache_error)?;
        let sub = prefix
            .strip_prefix(&ctx.api.registry.collection(res, None))
            .unwrap_or("");
        let (all, rv) = cache.snapshot(sub);
        let items = all
            .into_iter()
            .filter(|o| sel.matches(res.kind, o))
            .collect();
        return Ok(ListResult {
            items,
            rv,
            cont: None,
            remaining: None,
        });
    }
    // From the store: one consistent revision across every page.
    let (mut start, mut rev) = if cont.is_empty() {
        (prefix.clone(), rv_num.unwrap_or(0))
    } else {
        let t = decode_continue(cont)?;
        (format!("{prefix}{}", t.start), t.rv)
    };
    let end = prefix_end(prefix.as_bytes());
    let mut items = Vec::new();
    let filtering = !sel.label.is_empty() || !sel.field.is_empty();
    loop {
        let page = ctx
            .api
            .registry
            .kv
            .range(start.as_bytes(), &end, rev, if has_limit { limit.max(1) } else { 0 })
            .await
            .map_err(|e| match e {
                crate::storage::KvError::Compacted(_) if !cont.is_empty() => ApiError::Gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.".into(),
                ),
                crate::storage::KvError::Compacted(c) => ApiError::too_old(rv_num.unwrap_or(0), c),
                e => crate::registry::kv_error(res, "", e),
            })?;
        if rev == 0 {
            rev = page.revision;
        }
        let n = page.kvs.len();
        let mut last_key = None;
        for kv in &page.kvs {
            last_key = Some(String::from_utf8_lossy(&kv.key).into_owned());
            let obj = crate::registry::decode(kv)?;
            if sel.matches(res.kind, &obj) {
                items.push(Arc::new(obj));
                if has_limit && items.len() as u64 >= limit {
                    break;
                }
            }
        }
        let consumed_all_page = last_key
            .as_ref()
            .is_some_and(|k| page.kvs.last().is_some_and(|l| l.key == k.as_bytes()));
        let more = page.more || !consumed_all_page && n > 0;
        if has_limit && items.len() as u64 >= limit {
            if more {
                let lk = last_key.unwrap_or_default();
                let next = format!("{}\u{0}", lk.strip_prefix(&prefix).unwrap_or(&lk));
                let remaining = if filtering {
                    None
                } else {
                    Some(page.count.saturating_sub(n as u64))
                };
                return Ok(ListResult {
                    items,
                    rv: rev,
                    cont: Some(encode_continue(rev, &next)),
                    remaining,
                });
            }
            break;
        }
        if !page.more || !has_limit {
            break;
        }
        let lk = last_key.unwrap_or_default();
        start = format!("{lk}\u{0}");
    }
    Ok(ListResult {
        items,
        rv: rev,
        cont: None,
        remaining: None,
    })
}

fn cache_error(e: CacheError) -> ApiError {
    match e {
        CacheError::TooOld { requested, oldest } => ApiError::too_old(requested, oldest),
        CacheError::TooLarge { requested, current } => {
            ApiError::TooLargeResourceVersion { requested, current }
        }
    }
}

/// A request object (already validated against its own version's schema) as the
/// storage version, for the resources served in two versions.
fn to_storage_version(res: &Resource, obj: Value) -> Value {
    if res.converts() {
        crate::convert::to_storage(res, &obj)
    } else {
        obj
    }
}

/// A write's reply in the request's version (a Status passes through).
pub fn reply_in_request_version(res: &Resource, mut r: Reply) -> Reply {
    if (res.converts() || res.custom.is_some())
        && r.body.get("kind").and_then(Value::as_str) != Some("Status")
    {
        r.body = to_request_version(res, &r.body);
    }
    r
}

/// Converts a stored object to the request's version. A custom object also gets its
/// version's schema defaults, as upstream defaults on every read from storage (a
/// default added to a CRD shows on objects stored before it).
pub fn to_request_version(res: &Resource, obj: &Value) -> Value {
    let mut out = if res.converts() {
        crate::convert::from_storage(res, obj)
    } else {
        obj.clone()
    };
    if let Some(info) = res.custom {
        crate::crd::apply_defaults(&info.schema, &mut out);
    }
    out
}

/// A list as JSON (`PodList`).
pub fn list_body(res: &Resource, list: &ListResult) -> Value {
    let mut md = serde_json::Map::new();
    md.insert("resourceVersion".into(), json!(list.rv.to_string()));
    if let Some(c) = &list.cont {
        md.insert("continue".into(), json!(c));
    }
    if let Some(r) = list.remaining {
        md.insert("remainingItemCount".into(), json!(r));
    }
    let items: Vec<Value> = list
        .items
        .iter()
        .map(|o| {
            let mut o = to_request_version(res, o);
            // Items in a list carry no kind or apiVersion upstream.
            if let Some(m) = o.as_object_mut() {
                m.remove("kind");
                m.remove("apiVersion");
            }
            o
        })
        .collect();
    json!({
        "kind": format!("{}List", res.kind),
        "apiVersion": res.api_version(),
        "metadata": md,
        "items": items,
    })
}

/// A list of `res` (at its storage version, which is the request's) as JSON bytes,
/// identical to `list_body` serialized, but written item by item from the shared
/// objects: a 10k-pod list is not deep-copied first.
pub fn list_json(res: &Resource, list: &ListResult) -> Vec<u8> {
    /// An item without its kind and apiVersion, as upstream's list items.
    struct Item<'a>(&'a Value);
    impl serde::Serialize for Item<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            match self.0 {
                Value::Object(m) => {
                    let mut out = s.serialize_map(None)?;
                    for (k, v) in m {
                        if k != "kind" && k != "apiVersion" {
                            out.serialize_entry(k, v)?;
                        }
                    }
                    out.end()
                }
                other => other.serialize(s),
            }
        }
    }
    let mut head = list_body(
        res,
        &ListResult {
            items: Vec::new(),
            rv: list.rv,
            cont: list.cont.clone(),
            remaining: list.remaining,
        },
    );
    if let Some(m) = head.as_object_mut() {
        m.remove("items");
    }
    let mut out = serde_json::to_vec(&head).unwrap_or_default();
    // `{...}` -> `{...,"items":[...]}`
    out.pop();
    out.extend_from_slice(b",\"items\":[");
    for (i, o) in list.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut out, &Item(o));
    }
    out.extend_from_slice(b"]}");
    out
}

/// Starts a watch: the backlog to send first, and the live receiver.
pub struct WatchStart {
    /// Events to send first.
    pub backlog: Vec<Notice>,
    /// Live notices.
    pub rx: tokio::sync::broadcast::Receiver<Notice>,
    /// Selectors to filter by.
    pub sel: Selectors,
    /// Key prefix to filter by (a namespace).
    pub prefix: String,
    /// The resource.
    pub res: &'static Resource,
    /// Bookmarks wanted.
    pub bookmarks: bool,
    /// When to stop.
    pub timeout: std::time::Duration,
    /// The revision the watch starts after (the first bookmark's, if nothing happens).
    pub start_rv: u64,
}

/// Opens a watch with upstream's resourceVersion semantics.
pub async fn watch(ctx: &Ctx<'_>) -> Result<WatchStart, ApiError> {
    let res = ctx.res;
    if !res.has_verb("watch") {
        return Err(ApiError::MethodNotSupported {
            resource: res.gr(),
            verb: "watch".into(),
        });
    }
    let mut sel = Selectors::parse(ctx)?;
    // GET /namespaces/ns/pods/name?watch=true: a watch of one object.
    if let Some(name) = &ctx.info.name {
        sel.field.0.push(crate::selectors::FieldRequirement {
            field: "metadata.name".into(),
            value: name.clone(),
            negate: false,
        });
    }
    let cache = ctx
        .api
        .registry
        .cache(res)
        .ok_or_else(|| ApiError::MethodNotSupported {
            resource: res.gr(),
            verb: "watch".into(),
        })?;
    let rv_param = ctx.query.get("resourceVersion").unwrap_or("");
    let start_rv = rv_param.parse().unwrap_or_else(|_| cache.rv());
    let (backlog, rx) = match rv_param {
        "" => {
            let cur = ctx
                .api
                .registry
                .kv
                .current_revision()
                .await
                .map_err(|e| crate::registry::kv_error(res, "", e))?;
            cache.wait_fresh(cur).await.map_err(cache_error)?;
            cache.watch_from(0, true).map_err(cache_error)?
        }
        "0" => cache.watch_from(0, true).map_err(cache_error)?,
        n => {
            let n: u64 = n
                .parse()
                .map_err(|_| ApiError::BadRequest(format!("invalid resource version: {n}")))?;
            cache.wait_fresh(n).await.map_err(cache_error)?;
            cache.watch_from(n, false).map_err(cache_error)?
        }
    };
    let ns = if res.namespaced {
        ctx.info.namespace.as_deref()
    } else {
        None
    };
    let timeout = match ctx.query.int("timeoutSeconds")? {
        Some(t) if t > 0 => std::time::Duration::from_secs(t as u64),
        _ => {
            // Upstream picks a random timeout in [min-request-timeout, 2x).
            use rand::Rng;
            let min = ctx.api.config.min_request_timeout.as_secs().max(1);
            std::time::Duration::from_secs(rand::rng().random_range(min..2 * min))
        }
    };
    Ok(WatchStart {
        backlog,
        rx,
        sel,
        prefix: ctx.api.registry.collection(res, ns),
        res,
        bookmarks: ctx.query.flag("allowWatchBookmarks"),
        timeout,
        start_rv,
    })
}

/// The watch event to send for a notice, if this watcher sees it: selector
/// transitions turn into ADDED and DELETED as upstream's cacher does. The object to
/// send is the event's, except for an object that stopped matching: that DELETED
/// carries its previous state, at the event's resourceVersion.
pub fn watch_event<'n>(
    w: &WatchStart,
    n: &'n Notice,
) -> Option<(EventType, &'n crate::cache::Event, Option<Value>)> {
    let Notice::Event(e) = n else { return None };
    if !e.key.starts_with(&w.prefix) {
        return None;
    }
    let kind = w.res.kind;
    let now = w.sel.matches(kind, &e.object);
    let before = e.prev.as_ref().is_some_and(|p| w.sel.matches(kind, p));
    let ty = match e.kind {
        EventType::Added if now => EventType::Added,
        EventType::Modified if now && before => EventType::Modified,
        EventType::Modified if now => EventType::Added,
        EventType::Modified if before => {
            let mut last = e.prev.as_deref().cloned().unwrap_or_default();
            meta::set_rv(&mut last, e.rv);
            return Some((EventType::Deleted, e, Some(last)));
        }
        EventType::Deleted if before || now => EventType::Deleted,
        _ => return None,
    };
    Some((ty, e, None))
}

/// PUT to an object (or its status).
pub async fn update(ctx: &Ctx<'_>, body: &Bytes, status: bool) -> Result<Reply, ApiError> {
    let res = ctx.res;
    let (obj, warnings) = decode(ctx, body, res.kind, res.group, res.version)?;
    let manager = ctx.manager("UpdateOptions")?;
    let mut obj = to_storage_version(res, obj);
    check_namespace(ctx, &mut obj)?;
    let name = ctx.name().to_owned();
    match meta::name(&obj) {
        "" => {
            meta::meta_mut(&mut obj).insert("name".into(), json!(name));
        }
        n if n != name => {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        _ => {}
    }
    let dry_run = ctx.dry_run()?;
    let ns = ctx.ns().to_owned();
    match ctx.api.registry.get(res, &ns, &name).await {
        Err(ApiError::NotFound { .. }) if !status && allow_create_on_update(res.kind) => {
            // `create` decodes a request body: give it the request's version back.
            let body =
                Bytes::from(serde_json::to_vec(&to_request_version(res, &obj)).unwrap_or_default());
            return create(ctx, &body).await;
        }
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    let made = Made {
        obj,
        warnings,
        manager: Some(manager),
    };
    write_update(ctx, status, dry_run, |_| Ok(made.clone())).await
}

/// What a write makes of the current object.
#[derive(Clone)]
struct Made {
    /// The new object, storage version. A resourceVersion on it is a precondition.
    obj: Value,
    /// Field-validation warnings.
    warnings: Vec<String>,
    /// The Update manager to record; `None` when the managed fields are already set
    /// (server-side apply).
    manager: Option<String>,
}

/// The shared tail of update and patch: `make` turns the current object into the new
/// one (again after a lost race), then server-owned fields, managed fields,
/// admission, validation and a conditional write.
async fn write_update(
    ctx: &Ctx<'_>,
    status: bool,
    dry_run: bool,
    mut make: impl FnMut(&Value) -> Result<Made, ApiError>,
) -> Result<Reply, ApiError> {
    let res = ctx.res;
    let name = ctx.name().to_owned();
    let ns = ctx.ns().to_owned();
    // The status-like subresource written: `status`, or CSRs' `approval`.
    let sub = status.then(|| ctx.info.subresource.as_deref().unwrap_or("status"));
    let fm = ctx.field_manager(sub);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let old = ctx.api.registry.get(res, &ns, &name).await?;
        let Made {
            obj,
            warnings,
            manager,
        } = make(&old)?;
        let old_rv = meta::rv(&old).unwrap_or(0);
        if let Some(want) = meta::rv(&obj)
            && want != old_rv
        {
            return Err(ApiError::stale(&res.gr(), &name));
        }
        let mut new = if status {
            let mut tracked = obj.clone();
            if let (Some(fm), Some(m)) = (&fm, &manager) {
                track_update(res, fm, &old, &mut tracked, m);
            }
            let mut n = crate::strategy::prepare_for_status_update(
                res,
                sub.unwrap_or("status"),
                &obj,
                &old,
            );
            match tracked.pointer("/metadata/managedFields") {
                Some(mf) => {
                    meta::meta_mut(&mut n).insert("managedFields".into(), mf.clone());
                }
                None => {
                    meta::meta_mut(&mut n).remove("managedFields");
                }
            }
            n
        } else {
            let mut n = obj.clone();
            default_object(res, &mut n);
            if let (Some(fm), Some(m)) = (&fm, &manager) {
                track_update(res, fm, &old, &mut n, m);
            }
            crate::strategy::prepare_for_update(res, &mut n, &old);
            n
        };
        let op = Operation::Update;
        new = ctx
            .api
            .admission
            .admit(
                ctx.api,
                ctx.admission(op, Some(&new), Some(&old), sub, dry_run),
            )
            .await?;
        validate(res, &new, Some(&old))?;
        ctx.api
            .validate_admission(ctx.admission(op, Some(&new), Some(&old), sub, dry_run))
            .await?;
        crate::rbac::confirm_write(ctx.api, ctx.user, res, &new, Some(&old))?;
        ctx.api.before_update(res, &mut new, &old, dry_run).await?;
        if new.get("metadata") == old.get("metadata")
            && without_meta(&new) == without_meta(&old)
            && !ctx
                .api
                .registry
                .is_stale(res, meta::namespace(&old), meta::name(&old))
        {
            // A no-op write keeps the resourceVersion, as upstream.
            return Ok(Reply {
                code: 200,
                body: old,
                warnings,
            });
        }
        if dry_run {
            return Ok(Reply {
                code: 200,
                body: new,
                warnings,
            });
        }
        // Finalizers gone from an object being deleted: the delete completes.
        // A namespace also waits for its spec.finalizers (upstream's
        // ShouldDeleteNamespaceDuringUpdate): the namespace controller deletes it.
        let spec_finalizers = res.kind == "Namespace"
            && new
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
        let deleting = meta::field(&new, "deletionTimestamp").is_some()
            && meta::finalizers(&new).is_empty()
            && !spec_finalizers;
        if deleting {
            ctx.api.registry.delete(res, &new, old_rv).await?;
            ctx.api.after_delete(res, &new).await;
            return Ok(Reply {
                code: 200,
                body: new,
                warnings,
            });
        }
        match ctx.api.registry.update(res, &new, old_rv).await {
            Ok(stored) => {
                return Ok(Reply {
                    code: 200,
                    body: stored,
                    warnings,
                });
            }
            Err(ApiError::Conflict { .. }) if meta::rv(&obj).is_none() && attempts < 16 => {}
            Err(e) => return Err(e),
        }
    }
}

fn without_meta(v: &Value) -> Value {
    let mut o = v.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
    }
    o
}

/// Kinds upstream creates on PUT when absent.
fn allow_create_on_update(kind: &str) -> bool {
    matches!(kind, "Endpoints" | "Event" | "Lease" | "EndpointSlice")
}

/// A JSON patch failure as upstream answers it: 400 for a body that is not a JSON
/// patch, 413 for too many operations, 422 (with the generic message) for an
/// operation that does not apply.
fn json_patch_error(e: crate::patch::JsonPatchError) -> ApiError {
    use crate::patch::{JsonPatchError, MAX_JSON_PATCH_OPERATIONS};
    match e {
        JsonPatchError::Decode(m) => ApiError::BadRequest(m),
        JsonPatchError::TooManyOperations(n) => ApiError::EntityTooLarge(format!(
            "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {n}"
        )),
        JsonPatchError::Apply(m) => {
            tracing::debug!(error = %m, "JSON patch does not apply");
            ApiError::Unprocessable(m)
        }
    }
}

/// PATCH to an object (or its status). The patch is applied to the current object,
/// and again to the newer one if the write loses a race.
pub async fn patch(
    ctx: &Ctx<'_>,
    body: &Bytes,
    content_type: &str,
    status: bool,
) -> Result<Reply, ApiError> {
    let res = ctx.res;
    let apply = content_type == "application/apply-patch+yaml";
    validate_patch_options(ctx, apply)?;
    let dry_run = ctx.dry_run()?;
    let mode = ctx.field_validation()?;
    if apply {
        return apply_patch(ctx, body, status, dry_run, mode).await;
    }
    let patch = parse_json(body)?;
    let manager = ctx.manager("PatchOptions")?;
    let ns = ctx.ns().to_owned();
    let name = ctx.name().to_owned();
    // A missing object is a 404 before anything else.
    ctx.api.registry.get(res, &ns, &name).await?;
    let make = |current: &Value| -> Result<Made, ApiError> {
        let mut patched = to_request_version(res, current);
        match content_type {
            "application/merge-patch+json" => crate::patch::merge(&mut patched, &patch),
            "application/json-patch+json" => {
                crate::patch::json_patch(&mut patched, &patch).map_err(json_patch_error)?
            }
            "application/strategic-merge-patch+json" => {
                crate::patch::strategic(ctx.api.schema, res, &mut patched, &patch)
                    .map_err(ApiError::BadRequest)?
            }
            other => {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other})"
                )));
            }
        }
        // A patch that names a resourceVersion makes it a precondition; otherwise the
        // patch applies to whatever is current.
        let precondition = patch
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .is_some();
        if !precondition && let Some(m) = patched.get_mut("metadata").and_then(Value::as_object_mut)
        {
            m.remove("resourceVersion");
        }
        let raw = Bytes::from(serde_json::to_vec(&patched).unwrap_or_default());
        let mut warnings = ctx.api.schema.validate_fields(
            res.group,
            res.version,
            res.kind,
            &mut patched,
            mode,
            &raw,
        )?;
        warnings.extend(prune_custom(res, &mut patched, mode)?);
        check_type(res, res.kind, res.group, res.version, &mut patched)?;
        Ok(Made {
            obj: to_storage_version(res, patched),
            warnings,
            manager: Some(manager.clone()),
        })
    };
    write_update(ctx, status, dry_run, make).await
}

/// `PatchOptions` as upstream's `ValidatePatchOptions` checks them.
fn validate_patch_options(ctx: &Ctx<'_>, apply: bool) -> Result<(), ApiError> {
    let fm = ctx.query.get("fieldManager").unwrap_or("");
    let mut errs = Vec::new();
    if apply {
        if fm.is_empty() {
            errs.push(FieldError::required(
                "fieldManager",
                "is required for apply patch",
            ));
        }
    } else if ctx.query.get("force").is_some() {
        errs.push(FieldError::forbidden(
            "force",
            "may not be specified for non-apply patch",
        ));
    }
    errs.extend(validate_field_manager(fm));
    if errs.is_empty() {
        Ok(())
    } else {
        Err(options_invalid("PatchOptions", errs))
    }
}

/// upstream's `ValidateFieldManager`: at most 128 bytes, printable characters.
fn validate_field_manager(fm: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if fm.len() > 128 {
        errs.push(FieldError::too_long("fieldManager", 128));
    }
    for (i, c) in fm.char_indices() {
        if c.is_control() {
            errs.push(FieldError::invalid(
                "fieldManager",
                json!(fm),
                format!("invalid character U+{:04X} (at position {i})", c as u32),
            ));
        }
    }
    errs
}

/// `<Kind>Options.meta.k8s.io "" is invalid: ...`.
fn options_invalid(kind: &str, causes: Vec<FieldError>) -> ApiError {
    ApiError::Invalid {
        group: "meta.k8s.io".into(),
        kind: kind.into(),
        name: String::new(),
        causes,
    }
}

/// Server-side apply (`application/apply-patch+yaml`): merged into the current
/// object by [`crate::fieldmanager`], or creating it when there is none.
async fn apply_patch(
    ctx: &Ctx<'_>,
    body: &Bytes,
    status: bool,
    dry_run: bool,
    mode: FieldValidation,
) -> Result<Reply, ApiError> {
    let res = ctx.res;
    let manager = ctx.query.get("fieldManager").unwrap_or("").to_owned();
    let force = match ctx.query.get("force") {
        None | Some("" | "false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "failed to parse force: strconv.ParseBool: parsing {other:?}: invalid syntax"
            )));
        }
    };
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))?;
    let opts = serde_saphyr::options! { strict_booleans: true };
    let mut applied: Value = serde_saphyr::from_str_with_options(text, opts)
        .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))?;
    if !applied.is_object() {
        return Err(ApiError::BadRequest(
            "error decoding YAML: the applied configuration is not an object".into(),
        ));
    }
    let raw = Bytes::from(serde_json::to_vec(&applied).unwrap_or_default());
    let mut warnings = ctx.api.schema.validate_fields(
        res.group,
        res.version,
        res.kind,
        &mut applied,
        mode,
        &raw,
    )?;
    warnings.extend(prune_custom(res, &mut applied, mode)?);
    let name = ctx.name().to_owned();
    match meta::field(&applied, "name") {
        None | Some("") => {}
        Some(n) if n == name => {}
        Some(n) => {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
    }
    if res.namespaced
        && let Some(n) = meta::field(&applied, "namespace")
        && !n.is_empty()
        && n != ctx.ns()
    {
        return Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        ));
    }
    let sub = if status { Some("status") } else { None };
    let Some(fm) = ctx.field_manager(sub) else {
        return Err(ApiError::UnsupportedMediaType(
            "apply patches are not supported for this resource".into(),
        ));
    };
    let now = meta::now();
    match ctx.api.registry.get(res, ctx.ns(), &name).await {
        Err(ApiError::NotFound { .. }) if !status => {
            let baseline = fm.empty_object(&name, ctx.ns());
            let out = fm.apply(&baseline, &applied, &manager, force, &now)?;
            let mut obj = to_storage_version(res, out);
            default_object(res, &mut obj);
            return create_object(ctx, obj, warnings).await;
        }
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    let make = |current: &Value| -> Result<Made, ApiError> {
        let live = to_request_version(res, current);
        let mut out = fm.apply(&live, &applied, &manager, force, &now)?;
        // A resourceVersion in the applied configuration is a precondition; otherwise
        // the apply is merged again into a newer object if the write loses a race.
        if meta::field(&applied, "resourceVersion").is_none() {
            meta::meta_mut(&mut out).remove("resourceVersion");
        }
        Ok(Made {
            obj: to_storage_version(res, out),
            warnings: warnings.clone(),
            manager: None,
        })
    };
    write_update(ctx, status, dry_run, make).await
}

/// Delete options from the body and query.
struct DeleteOptions {
    grace: Option<i64>,
    propagation: Option<String>,
    uid: Option<String>,
    rv: Option<String>,
    dry_run: bool,
}

fn delete_options(ctx: &Ctx<'_>, body: &Bytes) -> Result<DeleteOptions, ApiError> {
    let b: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_json(body)?
    };
    let grace = match ctx.query.int("gracePeriodSeconds")? {
        Some(g) => Some(g),
        None => b.get("gracePeriodSeconds").and_then(Value::as_i64),
    };
    let mut propagation = ctx
        .query
        .get("propagationPolicy")
        .map(str::to_owned)
        .or_else(|| {
            b.get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    let orphan = ctx
        .query
        .get("orphanDependents")
        .map(|v| v == "true")
        .or_else(|| b.get("orphanDependents").and_then(Value::as_bool));
    if let Some(o) = orphan {
        if propagation.is_some() {
            return Err(ApiError::Invalid {
                group: "meta.k8s.io".into(),
                kind: "DeleteOptions".into(),
                name: String::new(),
                causes: vec![FieldError::invalid(
                    "propagationPolicy",
                    json!(propagation),
                    "orphanDependents and deletionPropagation cannot be both set",
                )],
            });
        }
        propagation = Some(if o { "Orphan" } else { "Background" }.into());
    }
    if let Some(p) = &propagation
        && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
    {
        return Err(ApiError::Invalid {
            group: "meta.k8s.io".into(),
            kind: "DeleteOptions".into(),
            name: String::new(),
            causes: vec![FieldError::not_supported(
                "propagationPolicy",
                json!(p),
                &["Foreground", "Background", "Orphan", "nil"],
            )],
        });
    }
    let dry_run = ctx.dry_run()?
        || b.get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    Ok(DeleteOptions {
        grace,
        propagation,
        uid: b
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_owned),
        rv: b
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_owned),
        dry_run,
    })
}

/// Kinds whose DELETE returns the object rather than a Status.
fn returns_deleted_object(kind: &str) -> bool {
    matches!(
        kind,
        "Pod" | "Namespace" | "Service" | "CustomResourceDefinition"
    )
}

/// Upstream's default propagation when the client names none.
fn default_propagation(res: &Resource) -> &'static str {
    if res.group.is_empty() && res.kind == "ReplicationController" {
        "Orphan"
    } else {
        "Background"
    }
}

/// DELETE one object: preconditions, graceful deletion for pods, and the orphan and
/// foreground finalizers.
pub async fn delete(ctx: &Ctx<'_>, body: &Bytes) -> Result<Reply, ApiError> {
    let opts = delete_options(ctx, body)?;
    delete_one(ctx, ctx.ns(), ctx.name(), &opts).await
}

async fn delete_one(
    ctx: &Ctx<'_>,
    ns: &str,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Reply, ApiError> {
    let res = ctx.res;
    for _ in 0..16 {
        let cur = ctx.api.registry.get(res, ns, name).await?;
        let cur_rv = meta::rv(&cur).unwrap_or(0);
        if let Some(uid) = &opts.uid {
            let have = meta::field(&cur, "uid").unwrap_or("");
            if have != uid {
                return Err(ApiError::Conflict {
                    resource: res.gr(),
                    name: name.to_owned(),
                    message: format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"
                    ),
                });
            }
        }
        if let Some(rv) = &opts.rv {
            let have = cur_rv.to_string();
            if *rv != have {
                return Err(ApiError::Conflict {
                    resource: res.gr(),
                    name: name.to_owned(),
                    message: format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {have}"
                    ),
                });
            }
        }
        ctx.api
            .validate_admission(AdmissionRequest {
                operation: Operation::Delete,
                resource: res,
                subresource: None,
                namespace: ns.to_owned(),
                name: name.to_owned(),
                object: None,
                old_object: Some(cur.clone()),
                user: ctx.user.clone(),
                dry_run: opts.dry_run,
                warnings: ctx.warnings.clone(),
                audit_annotations: ctx.audit_annotations.clone(),
            })
            .await?;
        if res.kind == "Namespace" && res.group.is_empty() {
            // Upstream's namespace storage: the first delete only marks the
            // namespace Terminating (the namespace controller empties it and
            // removes its `kubernetes` finalizer); a delete while spec.finalizers
            // remain is a conflict; then it is deleted as any object.
            if meta::field(&cur, "deletionTimestamp").is_none() {
                let mut next = cur.clone();
                let m = meta::meta_mut(&mut next);
                m.insert(
                    "deletionTimestamp".into(),
                    json!(meta::rfc3339(meta::unix_now())),
                );
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
                let mut finalizers = meta::finalizers(&cur);
                match opts.propagation.as_deref() {
                    Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => {
                        finalizers.push("orphan".into())
                    }
                    Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
                        finalizers.push("foregroundDeletion".into())
                    }
                    _ => {}
                }
                meta::set_finalizers(&mut next, &finalizers);
                next["status"]["phase"] = json!("Terminating");
                if opts.dry_run {
                    return Ok(Reply::ok(next));
                }
                match ctx.api.registry.update(res, &next, cur_rv).await {
                    Ok(stored) => return Ok(Reply::ok(to_request_version(res, &stored))),
                    Err(ApiError::Conflict { .. }) => continue,
                    Err(e) => return Err(e),
                }
            }
            let pending = cur
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
            if pending {
                return Err(ApiError::Conflict {
                    resource: res.gr(),
                    name: name.to_owned(),
                    message: "The system is ensuring all content is removed from this namespace.  Upon completion, this namespace will automatically be purged by the system.".into(),
                });
            }
        }
        let mut next = cur.clone();
        let mut finalizers = meta::finalizers(&cur);
        let propagation = opts
            .propagation
            .clone()
            .unwrap_or_else(|| default_propagation(res).into());
        let already_deleting = meta::field(&cur, "deletionTimestamp").is_some();
        match propagation.as_str() {
            "Orphan" if !finalizers.iter().any(|f| f == "orphan") => {
                finalizers.push("orphan".into())
            }
            "Foreground" if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
                finalizers.push("foregroundDeletion".into())
            }
            _ => {}
        }
        // Foreground and orphan finalizers are only added by a delete that starts the
        // deletion; Background removes none but adds none.
        if propagation == "Background" {
            finalizers.retain(|f| f != "orphan" || meta::finalizers(&cur).contains(f));
        }
        let grace = graceful_period(res, &cur, opts.grace);
        let must_wait = !finalizers.is_empty() || grace > 0;
        if !must_wait {
            if opts.dry_run {
                return Ok(deleted_reply(res, &cur));
            }
            match ctx.api.registry.delete(res, &cur, cur_rv).await {
                Ok(rev) => {
                    ctx.api.after_delete(res, &cur).await;
                    let mut gone = cur.clone();
                    meta::set_rv(&mut gone, rev);
                    return Ok(deleted_reply(res, &gone));
                }
                Err(ApiError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        // Graceful: mark the object and let its finalizers or its kubelet finish.
        meta::set_finalizers(&mut next, &finalizers);
        let m = meta::meta_mut(&mut next);
        if !already_deleting {
            let now = meta::unix_now();
            m.insert(
                "deletionTimestamp".into(),
                json!(meta::rfc3339(now + grace)),
            );
            m.insert("deletionGracePeriodSeconds".into(), json!(grace));
        } else if grace == 0
            || m.get("deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .is_some_and(|g| g > grace)
        {
            // A shorter grace period may shorten a deletion already under way.
            m.insert(
                "deletionTimestamp".into(),
                json!(meta::rfc3339(meta::unix_now() + grace)),
            );
            m.insert("deletionGracePeriodSeconds".into(), json!(grace));
        }
        if res.kind == "Pod"
            && let Some(s) = next.get_mut("spec").and_then(Value::as_object_mut)
            && grace >= 0
            && s.contains_key("terminationGracePeriodSeconds")
            && !already_deleting
        {
            s.insert("terminationGracePeriodSeconds".into(), json!(grace));
        }
        if opts.dry_run {
            return Ok(Reply::ok(next));
        }
        if next == cur {
            return Ok(Reply::ok(cur));
        }
        match ctx.api.registry.update(res, &next, cur_rv).await {
            Ok(stored) => return Ok(Reply::ok(stored)),
            Err(ApiError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::stale(&res.gr(), name))
}

/// The grace period of a delete: only pods bound to a node wait for their kubelet.
fn graceful_period(res: &Resource, obj: &Value, asked: Option<i64>) -> i64 {
    if res.kind != "Pod" {
        return 0;
    }
    let scheduled = obj
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        obj.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if !scheduled || finished {
        return 0;
    }
    let g = asked
        .or_else(|| {
            obj.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30);
    // Upstream turns 0 into 1 unless forced; kubectl --force --grace-period=0 sends 0,
    // which deletes at once.
    g.max(0)
}

fn deleted_reply(res: &Resource, obj: &Value) -> Reply {
    if returns_deleted_object(res.kind) {
        return Reply::ok(to_request_version(res, obj));
    }
    let mut details = serde_json::Map::new();
    details.insert("name".into(), json!(meta::name(obj)));
    if !res.group.is_empty() {
        details.insert("group".into(), json!(res.group));
    }
    details.insert("kind".into(), json!(res.plural));
    details.insert("uid".into(), json!(meta::field(obj, "uid").unwrap_or("")));
    Reply::ok(json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }))
}

/// DELETE a collection: every object the selectors match.
pub async fn delete_collection(ctx: &Ctx<'_>, body: &Bytes) -> Result<Reply, ApiError> {
    let opts = delete_options(ctx, body)?;
    let list = list_objects(ctx).await?;
    let mut deleted = Vec::new();
    for o in &list.items {
        match delete_one(ctx, meta::namespace(o), meta::name(o), &opts).await {
            Ok(_) | Err(ApiError::NotFound { .. }) => deleted.push(o.clone()),
            Err(e) => return Err(e),
        }
    }
    Ok(Reply::ok(list_body(
        ctx.res,
        &ListResult {
            items: deleted,
            rv: list.rv,
            cont: None,
            remaining: None,
        },
    )))
}

/// The Scale of a workload.
/// Where a resource keeps its replica counts: `.spec.replicas` and `.status.replicas`,
/// or a custom resource's scale paths. (spec pointer, status pointer, selector
/// pointer for a custom resource.)
fn replica_paths(res: &Resource) -> (String, String, Option<String>) {
    match res.custom.and_then(|c| c.scale.as_ref()) {
        Some(sc) => (
            crate::crd::json_pointer(&sc.spec_replicas),
            crate::crd::json_pointer(&sc.status_replicas),
            sc.label_selector.as_deref().map(crate::crd::json_pointer),
        ),
        None => ("/spec/replicas".into(), "/status/replicas".into(), None),
    }
}

/// Sets the replica count a scale write asks for.
fn set_spec_replicas(res: &Resource, obj: &mut Value, replicas: i64) {
    let (spec, _, _) = replica_paths(res);
    crate::crd::set_pointer(obj, &spec, json!(replicas));
}

fn scale_of(res: &Resource, obj: &Value) -> Value {
    let (spec_ptr, status_ptr, custom_selector) = replica_paths(res);
    let selector = match res.kind {
        _ if res.custom.is_some() => custom_selector
            .and_then(|p| obj.pointer(&p))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        "ReplicationController" => obj
            .pointer("/spec/selector")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        _ => label_selector_string(obj.pointer("/spec/selector").unwrap_or(&Value::Null)),
    };
    let mut metadata = serde_json::Map::new();
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = obj.pointer(&format!("/metadata/{f}")) {
            metadata.insert(f.into(), v.clone());
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": obj.pointer(&spec_ptr).cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": obj.pointer(&status_ptr).cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

/// A metav1.LabelSelector as its string form (`a=b,c in (d)`).
pub fn label_selector_string(sel: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in ml {
            parts.push(format!("{k}={}", v.as_str().unwrap_or("")));
        }
    }
    if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e.get("key").and_then(Value::as_str).unwrap_or("");
            let vals: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e.get("operator").and_then(Value::as_str).unwrap_or("") {
                "In" => parts.push(format!("{key} in ({})", vals.join(","))),
                "NotIn" => parts.push(format!("{key} notin ({})", vals.join(","))),
                "Exists" => parts.push(key.to_owned()),
                "DoesNotExist" => parts.push(format!("!{key}")),
                _ => {}
            }
        }
    }
    parts.sort();
    parts.join(",")
}

/// GET, PUT and PATCH on `/scale`.
pub async fn scale(
    ctx: &Ctx<'_>,
    method: &str,
    body: &Bytes,
    content_type: &str,
) -> Result<Reply, ApiError> {
    let res = ctx.res;
    let ns = ctx.ns().to_owned();
    let name = ctx.name().to_owned();
    let cur = ctx.api.registry.get(res, &ns, &name).await?;
    if method == "GET" {
        return Ok(Reply::ok(scale_of(res, &cur)));
    }
    let dry_run = ctx.dry_run()?;
    let mut scale = scale_of(res, &cur);
    let asked = if method == "PUT" {
        parse_json(body)?
    } else {
        let p = parse_json(body)?;
        match content_type {
            "application/json-patch+json" => {
                crate::patch::json_patch(&mut scale, &p).map_err(json_patch_error)?
            }
            _ => crate::patch::merge(&mut scale, &p),
        }
        scale.clone()
    };
    let replicas = match asked.pointer("/spec/replicas") {
        None => 0,
        Some(v) => v.as_i64().ok_or_else(|| {
            ApiError::BadRequest("Scale in version \"v1\" cannot be handled as a Scale: json: cannot unmarshal string into Go struct field ScaleSpec.spec.replicas of type int32".into())
        })?,
    };
    if replicas < 0 {
        return Err(ApiError::Invalid {
            group: "autoscaling".into(),
            kind: "Scale".into(),
            name: name.clone(),
            causes: vec![FieldError::invalid(
                "spec.replicas",
                json!(replicas),
                "must be greater than or equal to 0",
            )],
        });
    }
    let precondition = asked
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_owned);
    // The scaler owns the parent's replicas, as an Update with subresource "scale"
    // (upstream's ScaleHandler).
    let manager = ctx.manager(if method == "PUT" {
        "UpdateOptions"
    } else {
        "PatchOptions"
    })?;
    let fm = ctx.field_manager(Some("scale"));
    let stored = ctx
        .api
        .registry
        .guaranteed_update(res, &ns, &name, |mut o| {
            if let Some(p) = &precondition
                && meta::field(&o, "resourceVersion") != Some(p.as_str())
            {
                return Err(ApiError::stale(&res.gr(), &name));
            }
            if o.pointer(&replica_paths(res).0) == Some(&json!(replicas)) {
                return Ok(None);
            }
            let old = o.clone();
            set_spec_replicas(res, &mut o, replicas);
            if let Some(fm) = &fm {
                track_update(res, fm, &old, &mut o, &manager);
            }
            crate::strategy::prepare_for_update(res, &mut o, &old);
            if res.custom.is_some() {
                // The count lands in the custom object: its schema has the last word.
                validate(res, &o, Some(&old))?;
            }
            if dry_run {
                return Err(ApiError::Internal(String::new()));
            }
            Ok(Some(o))
        })
        .await;
    match stored {
        Ok(o) => Ok(Reply::ok(scale_of(res, &o))),
        Err(ApiError::Internal(m)) if m.is_empty() && dry_run => {
            let mut o = cur.clone();
            set_spec_replicas(res, &mut o, replicas);
            Ok(Reply::ok(scale_of(res, &o)))
        }
        Err(e) => Err(e),
    }
}

/// GET on `/status`: the object.
pub async fn get_status(ctx: &Ctx<'_>) -> Result<Reply, ApiError> {
    get(ctx).await
}

/// POST to `pods/<name>/binding` or `bindings`: assigns a pod to a node.
pub async fn bind(ctx: &Ctx<'_>, body: &Bytes) -> Result<Reply, ApiError> {
    let b = parse_json(body)?;
    let pod_name = ctx
        .info
        .name
        .clone()
        .or_else(|| meta::field(&b, "name").map(str::to_owned))
        .unwrap_or_default();
    let node = b
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let pods = crate::catalog::catalog()
        .get("", "v1", "pods")
        .expect("pods");
    if node.is_empty() {
        return Err(ApiError::Invalid {
            group: String::new(),
            kind: "Binding".into(),
            name: pod_name,
            causes: vec![FieldError::required("target.name", "")],
        });
    }
    let ns = ctx.ns().to_owned();
    ctx.api
        .registry
        .guaranteed_update(pods, &ns, &pod_name, |mut p| {
            if meta::field(&p, "deletionTimestamp").is_some() {
                return Err(ApiError::Conflict {
                    resource: pods.gr(),
                    name: pod_name.clone(),
                    message: format!("pod {pod_name} is being deleted, cannot be assigned to a host"),
                });
            }
            let cur = p.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("");
            if !cur.is_empty() {
                return Err(ApiError::Conflict {
                    resource: pods.gr(),
                    name: pod_name.clone(),
                    message: format!("pod {pod_name} is already assigned to node {cur:?}"),
                });
            }
            p["spec"]["nodeName"] = json!(node);
            let conds = p["status"]["conditions"].as_array().cloned().unwrap_or_default();
            let mut conds: Vec<Value> = conds.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
            conds.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": meta::now()}));
            p["status"]["conditions"] = json!(conds);
            Ok(Some(p))
        })
        .await?;
    Ok(Reply::created(json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_json_matches_list_body() {
        let res = crate::catalog::catalog().get("", "v1", "pods").unwrap();
        let pod = |n: &str| {
            Arc::new(
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": n, "resourceVersion": "7"}, "spec": {}}),
            )
        };
        for items in [vec![], vec![pod("a"), pod("b")]] {
            let l = ListResult {
                items,
                rv: 9,
                cont: Some("tok".into()),
                remaining: Some(3),
            };
            let fast: Value = serde_json::from_slice(&list_json(res, &l)).unwrap();
            assert_eq!(fast, list_body(res, &l));
        }
    }
}

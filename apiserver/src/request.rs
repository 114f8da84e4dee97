//! What a request asks for: upstream's `RequestInfo` (verb, group, version, namespace,
//! resource, name, subresource), parsed from the path, method and query, plus the query
//! parameters every verb shares.

use std::collections::HashMap;

use crate::error::ApiError;

/// A parsed resource request, or a non-resource path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// Whether the path names a resource (`/api/...`, `/apis/...` below a version).
    pub is_resource: bool,
    /// Upstream's verb: get, list, watch, create, update, patch, delete,
    /// deletecollection; for non-resource paths, the lower-cased method.
    pub verb: String,
    /// Group; empty for core.
    pub group: String,
    /// Version.
    pub version: String,
    /// Namespace, when the path has one.
    pub namespace: Option<String>,
    /// Plural resource.
    pub resource: String,
    /// Object name.
    pub name: Option<String>,
    /// Subresource.
    pub subresource: Option<String>,
    /// Path parts after the subresource (proxy paths).
    pub rest: Vec<String>,
    /// The path.
    pub path: String,
}

/// Query parameters, multi-valued.
#[derive(Clone, Debug, Default)]
pub struct Query(pub HashMap<String, Vec<String>>);

impl Query {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Self {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        if let Some(raw) = raw {
            for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
                map.entry(k.into_owned()).or_default().push(v.into_owned());
            }
        }
        Query(map)
    }
    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.first()).map(String::as_str)
    }
    /// `key` as a bool (`true`, `1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1" | "True"))
    }
    /// `key` as an integer; a malformed value is a 400.
    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::BadRequest(format!("invalid value for {key}: {v:?}"))),
        }
    }
}

/// Parses the path and method into a [`RequestInfo`].
pub fn parse(method: &str, path: &str, query: &Query) -> RequestInfo {
    let mut info = RequestInfo {
        verb: method.to_lowercase(),
        path: path.to_owned(),
        ..Default::default()
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest: &[&str] = match parts.as_slice() {
        ["api", version, rest @ ..] => {
            info.version = (*version).to_owned();
            rest
        }
        ["apis", group, version, rest @ ..] => {
            info.group = (*group).to_owned();
            info.version = (*version).to_owned();
            rest
        }
        _ => return info,
    };
    if rest.is_empty() {
        return info;
    }
    info.is_resource = true;
    let mut rest = rest.to_vec();
    let mut watch_path = false;
    if rest[0] == "watch" {
        watch_path = true;
        rest.remove(0);
    }
    if rest.is_empty() {
        info.is_resource = false;
        return info;
    }
    if rest[0] == "namespaces" && rest.len() > 1 {
        info.namespace = Some(rest[1].to_owned());
        if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
            rest.drain(..2);
        }
    }
    info.resource = rest[0].to_owned();
    if let Some(n) = rest.get(1) {
        info.name = Some((*n).to_owned());
    }
    if let Some(s) = rest.get(2) {
        info.subresource = Some((*s).to_owned());
    }
    if rest.len() > 3 {
        info.rest = rest[3..].iter().map(|s| (*s).to_owned()).collect();
    }
    // A namespace object's own name is its namespace in upstream's RequestInfo.
    info.verb = match method {
        "GET" | "HEAD" => {
            if watch_path || (info.name.is_none() && query.flag("watch")) {
                "watch"
            } else if info.name.is_none() {
                "list"
            } else if info.subresource.is_none() && query.flag("watch") {
                "watch"
            } else {
                "get"
            }
        }
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => {
            if info.name.is_none() {
                "deletecollection"
            } else {
                "delete"
            }
        }
        other => {
            return RequestInfo {
                verb: other.to_lowercase(),
                ..info
            };
        }
    }
    .to_owned();
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(method: &str, path: &str, q: &str) -> RequestInfo {
        parse(method, path, &Query::parse(Some(q)))
    }

    #[test]
    fn resource_paths() {
        let i = p("GET", "/api/v1/namespaces/default/pods", "");
        assert_eq!(
            (i.verb.as_str(), i.namespace.as_deref(), i.resource.as_str()),
            ("list", Some("default"), "pods")
        );
        let i = p(
            "GET",
            "/apis/apps/v1/namespaces/x/deployments/web/scale",
            "",
        );
        assert_eq!(i.group, "apps");
        assert_eq!(i.name.as_deref(), Some("web"));
        assert_eq!(i.subresource.as_deref(), Some("scale"));
        let i = p("GET", "/api/v1/pods", "watch=true");
        assert_eq!(i.verb, "watch");
        let i = p("DELETE", "/api/v1/namespaces/a/configmaps", "");
        assert_eq!(i.verb, "deletecollection");
    }

    #[test]
    fn namespace_objects() {
        let i = p("GET", "/api/v1/namespaces/kube-system", "");
        assert_eq!(i.resource, "namespaces");
        assert_eq!(i.name.as_deref(), Some("kube-system"));
        let i = p("PUT", "/api/v1/namespaces/kube-system/finalize", "");
        assert_eq!(i.resource, "namespaces");
        assert_eq!(i.subresource.as_deref(), Some("finalize"));
        let i = p("GET", "/api/v1/namespaces", "");
        assert_eq!(
            (i.resource.as_str(), i.verb.as_str()),
            ("namespaces", "list")
        );
    }

    #[test]
    fn non_resource() {
        assert!(!p("GET", "/api", "").is_resource);
        assert!(!p("GET", "/apis/apps/v1", "").is_resource);
        assert!(!p("GET", "/healthz", "").is_resource);
    }
}

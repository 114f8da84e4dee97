//! API errors and their one conversion to the wire: a `meta/v1` `Status`, built the way
//! upstream's `k8s.io/apimachinery/pkg/api/errors` builds it, so that kubectl prints the
//! same lines (`Error from server (NotFound): pods "x" not found`).

use serde_json::{Value, json};

/// A resource named as upstream's `schema.GroupResource` prints it: `pods`,
/// `deployments.apps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupResource {
    /// API group; empty for the core group.
    pub group: String,
    /// Plural resource name.
    pub resource: String,
}

impl GroupResource {
    /// Builds one.
    pub fn new(group: &str, resource: &str) -> Self {
        Self {
            group: group.to_owned(),
            resource: resource.to_owned(),
        }
    }
}

impl std::fmt::Display for GroupResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// The kind of a field error, as upstream's `field.ErrorType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldErrorType {
    /// `FieldValueRequired`.
    Required,
    /// `FieldValueInvalid`.
    Invalid,
    /// `FieldValueNotSupported`.
    NotSupported,
    /// `FieldValueDuplicate`.
    Duplicate,
    /// `FieldValueForbidden`.
    Forbidden,
    /// `FieldValueTooLong`.
    TooLong,
    /// `FieldValueTypeInvalid`.
    TypeInvalid,
}

/// One field error, as upstream's `field.Error`.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// What is wrong.
    pub kind: FieldErrorType,
    /// The path, e.g. `spec.containers[0].image`.
    pub field: String,
    /// The offending value, when the message shows it.
    pub value: Option<Value>,
    /// Extra detail.
    pub detail: String,
}

impl FieldError {
    /// `Required value`.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorType::Required, field, None, detail)
    }
    /// `Invalid value: <v>: <detail>`.
    pub fn invalid(field: impl Into<String>, value: Value, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorType::Invalid, field, Some(value), detail)
    }
    /// `Unsupported value: <v>: supported values: "a", "b"`.
    pub fn not_supported(field: impl Into<String>, value: Value, supported: &[&str]) -> Self {
        let list = supported
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        Self::new(
            FieldErrorType::NotSupported,
            field,
            Some(value),
            if list.is_empty() {
                String::new()
            } else {
                format!("supported values: {list}")
            },
        )
    }
    /// `Duplicate value: <v>`.
    pub fn duplicate(field: impl Into<String>, value: Value) -> Self {
        Self::new(FieldErrorType::Duplicate, field, Some(value), "")
    }
    /// `Forbidden: <detail>`.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorType::Forbidden, field, None, detail)
    }
    /// `Too long: may not be more than <n> bytes`.
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self::new(
            FieldErrorType::TooLong,
            field,
            None,
            format!("may not be more than {max} bytes"),
        )
    }
    fn new(
        kind: FieldErrorType,
        field: impl Into<String>,
        value: Option<Value>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            field: field.into(),
            value,
            detail: detail.into(),
        }
    }

    /// The cause reason, e.g. `FieldValueRequired`.
    pub fn reason(&self) -> &'static str {
        match self.kind {
            FieldErrorType::Required => "FieldValueRequired",
            FieldErrorType::Invalid => "FieldValueInvalid",
            FieldErrorType::NotSupported => "FieldValueNotSupported",
            FieldErrorType::Duplicate => "FieldValueDuplicate",
            FieldErrorType::Forbidden => "FieldValueForbidden",
            FieldErrorType::TooLong => "FieldValueTooLong",
            FieldErrorType::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// The message without the field, as upstream's `ErrorBody`.
    pub fn body(&self) -> String {
        let head = match self.kind {
            FieldErrorType::Required => "Required value",
            FieldErrorType::Invalid => "Invalid value",
            FieldErrorType::NotSupported => "Unsupported value",
            FieldErrorType::Duplicate => "Duplicate value",
            FieldErrorType::Forbidden => "Forbidden",
            FieldErrorType::TooLong => "Too long",
            FieldErrorType::TypeInvalid => "Invalid value",
        };
        let mut s = head.to_owned();
        let shows_value = matches!(
            self.kind,
            FieldErrorType::Invalid
                | FieldErrorType::NotSupported
                | FieldErrorType::Duplicate
                | FieldErrorType::TypeInvalid
        );
        if shows_value && let Some(v) = &self.value {
            s.push_str(": ");
            s.push_str(&render_value(v));
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

/// Renders a value as Go's `%#v`-ish form upstream uses in field errors: strings
/// quoted, numbers bare, `null` as `"null"`.
fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "\"null\"".to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => format!("{:?}", other.to_string()),
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// A GroupKind as upstream prints it: `Kind.group`, or `Kind` for the core group.
fn qualified(kind: &str, group: &str) -> String {
    if group.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}.{group}")
    }
}

/// Joins field errors as upstream's `ErrorList.ToAggregate()` does: one error bare,
/// several in brackets.
pub fn aggregate(errs: &[FieldError]) -> String {
    match errs {
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// An error the API answers with. Every handler returns these; [`ApiError::to_status`]
/// is the one place they become wire `Status` objects.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 404.
    #[error("{resource} \"{name}\" not found")]
    NotFound {
        /// The resource.
        resource: GroupResource,
        /// The name.
        name: String,
    },
    /// 409 AlreadyExists.
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        /// The resource.
        resource: GroupResource,
        /// The name.
        name: String,
    },
    /// 409 Conflict.
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {message}")]
    Conflict {
        /// The resource.
        resource: GroupResource,
        /// The name.
        name: String,
        /// Why.
        message: String,
    },
    /// 422 Invalid.
    #[error("{} \"{name}\" is invalid: {}", qualified(.kind, .group), aggregate(.causes))]
    Invalid {
        /// The group.
        group: String,
        /// The Kind.
        kind: String,
        /// The name.
        name: String,
        /// The field errors.
        causes: Vec<FieldError>,
    },
    /// 400.
    #[error("{0}")]
    BadRequest(String),
    /// An admission webhook's refusal: its code (400 or more) and reason, upstream's
    /// `admission webhook "x" denied the request: ...` message.
    #[error("{message}")]
    Webhook {
        /// The HTTP status code.
        code: u16,
        /// The webhook's reason, possibly empty.
        reason: String,
        /// The full message.
        message: String,
    },
    /// 401.
    #[error("Unauthorized")]
    Unauthorized,
    /// 403.
    #[error("{message}")]
    Forbidden {
        /// The resource, when one is concerned.
        resource: Option<GroupResource>,
        /// The name.
        name: String,
        /// The full message.
        message: String,
    },
    /// 404 for a path that names no resource.
    #[error("the server could not find the requested resource")]
    NoRoute,
    /// 405 for a verb the resource does not serve.
    #[error("{verb} is not supported on resources of kind \"{resource}\"")]
    MethodNotSupported {
        /// The resource.
        resource: GroupResource,
        /// The verb.
        verb: String,
    },
    /// 405 for a method the path does not take.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// 406.
    #[error("{0}")]
    NotAcceptable(String),
    /// 410 Expired.
    #[error("{0}")]
    Gone(String),
    /// 413.
    #[error("Request entity too large: limit is {0}")]
    TooLarge(usize),
    /// 413 with a message (a JSON patch with too many operations).
    #[error("{0}")]
    EntityTooLarge(String),
    /// 422 without field causes, as upstream's `NewGenericServerResponse(422, ...)`
    /// for a JSON patch that does not apply: the message is upstream's generic one
    /// and the reason (logged) stays on the server.
    #[error("the server rejected our request due to an error in our request")]
    Unprocessable(String),
    /// 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 429.
    #[error("Too many requests, please try again later.")]
    TooManyRequests,
    /// 429 from an eviction a PodDisruptionBudget forbids; carries the cause.
    #[error("Cannot evict pod as it would violate the pod's disruption budget.")]
    DisruptionBudget(String),
    /// 409 from server-side apply: fields other managers own.
    #[error("{message}")]
    ApplyConflict {
        /// Upstream's summary (`Apply failed with 1 conflict: ...`).
        message: String,
        /// One cause per field: (`conflict with "m"`, `.data.a`).
        causes: Vec<(String, String)>,
    },
    /// 500.
    #[error("Internal error occurred: {0}")]
    Internal(String),
    /// 500 with reason Unknown, as upstream answers errors that are not API errors.
    #[error("{0}")]
    Unknown(String),
    /// 503.
    #[error("{0}")]
    ServiceUnavailable(String),
    /// 504 for a resourceVersion the cache has not reached in time.
    #[error("Too large resource version: {requested}, current: {current}")]
    TooLargeResourceVersion {
        /// Asked for.
        requested: u64,
        /// What the cache has.
        current: u64,
    },
    /// 504.
    #[error("{0}")]
    Timeout(String),
}

impl From<crate::fieldmanager::Error> for ApiError {
    fn from(e: crate::fieldmanager::Error) -> Self {
        use crate::fieldmanager::{Error, print_manager};
        match e {
            Error::Conflicts(ref list) => ApiError::ApplyConflict {
                message: e.to_string(),
                causes: list
                    .iter()
                    .map(|c| {
                        (
                            format!("conflict with {}", print_manager(&c.manager)),
                            c.field.clone(),
                        )
                    })
                    .collect(),
            },
            Error::BadRequest(m) => ApiError::BadRequest(m),
            Error::Failed(m) => ApiError::Unknown(m),
        }
    }
}

impl ApiError {
    /// The HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound { .. } | ApiError::NoRoute => 404,
            ApiError::AlreadyExists { .. }
            | ApiError::Conflict { .. }
            | ApiError::ApplyConflict { .. } => 409,
            ApiError::Invalid { .. } => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::Webhook { code, .. } => *code,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden { .. } => 403,
            ApiError::MethodNotSupported { .. } | ApiError::MethodNotAllowed => 405,
            ApiError::NotAcceptable(_) => 406,
            ApiError::Gone(_) => 410,
            ApiError::TooLarge(_) | ApiError::EntityTooLarge(_) => 413,
            ApiError::Unprocessable(_) => 422,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::TooManyRequests | ApiError::DisruptionBudget(_) => 429,
            ApiError::Internal(_) | ApiError::Unknown(_) => 500,
            ApiError::ServiceUnavailable(_) => 503,
            ApiError::TooLargeResourceVersion { .. } | ApiError::Timeout(_) => 504,
        }
    }

    /// The Status reason.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } | ApiError::NoRoute => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Webhook { .. } => "",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::MethodNotSupported { .. } | ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::Gone(_) => "Expired",
            ApiError::TooLarge(_) | ApiError::EntityTooLarge(_) => "RequestEntityTooLarge",
            ApiError::Unprocessable(_) => "Invalid",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::TooManyRequests | ApiError::DisruptionBudget(_) => "TooManyRequests",
            ApiError::Internal(_) => "InternalError",
            ApiError::Unknown(_) => "",
            ApiError::ServiceUnavailable(_) => "ServiceUnavailable",
            ApiError::TooLargeResourceVersion { .. } | ApiError::Timeout(_) => "Timeout",
        }
    }

    /// The `Status` object upstream sends for this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        if let ApiError::Webhook { reason, .. } = self {
            status["reason"] = json!(reason);
        }
        let details = match self {
            ApiError::NotFound { resource, name }
            | ApiError::AlreadyExists { resource, name }
            | ApiError::Conflict { resource, name, .. } => Some(gr_details(resource, name)),
            ApiError::MethodNotSupported { resource, .. } => Some(gr_details(resource, "")),
            ApiError::Forbidden {
                resource: Some(resource),
                name,
                ..
            } => Some(gr_details(resource, name)),
            ApiError::Invalid {
                group,
                kind,
                name,
                causes,
            } => {
                let mut d = serde_json::Map::new();
                d.insert("name".into(), json!(name));
                if !group.is_empty() {
                    d.insert("group".into(), json!(group));
                }
                d.insert("kind".into(), json!(kind));
                d.insert(
                    "causes".into(),
                    Value::Array(
                        causes
                            .iter()
                            .map(|c| {
                                json!({"reason": c.reason(), "message": c.body(), "field": c.field})
                            })
                            .collect(),
                    ),
                );
                Some(Value::Object(d))
            }
            ApiError::Internal(m) => Some(json!({"causes": [{"message": m}]})),
            ApiError::ApplyConflict { causes, .. } => Some(json!({
                "causes": causes
                    .iter()
                    .map(|(m, f)| json!({"reason": "FieldManagerConflict", "message": m, "field": f}))
                    .collect::<Vec<_>>()
            })),
            ApiError::Unprocessable(_) => Some(json!({})),
            ApiError::TooManyRequests => Some(json!({"retryAfterSeconds": 1})),
            ApiError::DisruptionBudget(cause) => Some(json!({
                "causes": [{"reason": "DisruptionBudget", "message": cause}]
            })),
            ApiError::TooLargeResourceVersion { .. } => Some(json!({
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retryAfterSeconds": 1
            })),
            _ => None,
        };
        if let Some(d) = details {
            status["details"] = d;
        }
        if status["reason"].as_str().is_some_and(str::is_empty)
            && let Some(m) = status.as_object_mut()
        {
            // StatusReasonUnknown is "", which upstream omits.
            m.remove("reason");
        }
        status
    }

    /// A NotFound for `resource`/`name`.
    pub fn not_found(resource: &GroupResource, name: &str) -> Self {
        ApiError::NotFound {
            resource: resource.clone(),
            name: name.to_owned(),
        }
    }

    /// The optimistic-concurrency conflict upstream returns when a write carries a stale
    /// resourceVersion.
    pub fn stale(resource: &GroupResource, name: &str) -> Self {
        ApiError::Conflict {
            resource: resource.clone(),
            name: name.to_owned(),
            message: "the object has been modified; please apply your changes to the latest version and try again".to_owned(),
        }
    }

    /// 410 for a watch or list from a compacted revision.
    pub fn too_old(requested: u64, oldest: u64) -> Self {
        ApiError::Gone(format!("too old resource version: {requested} ({oldest})"))
    }
}

fn gr_details(resource: &GroupResource, name: &str) -> Value {
    let mut d = serde_json::Map::new();
    if !name.is_empty() {
        d.insert("name".into(), json!(name));
    }
    if !resource.group.is_empty() {
        d.insert("group".into(), json!(resource.group));
    }
    d.insert("kind".into(), json!(resource.resource));
    Value::Object(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_matches_upstream() {
        let e = ApiError::not_found(&GroupResource::new("apps", "deployments"), "web");
        assert_eq!(
            e.to_status(),
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                "message":"deployments.apps \"web\" not found","reason":"NotFound",
                "details":{"name":"web","group":"apps","kind":"deployments"},"code":404})
        );
    }

    #[test]
    fn invalid_names_the_group_kind() {
        let e = ApiError::Invalid {
            group: "apps".into(),
            kind: "Deployment".into(),
            name: "web".into(),
            causes: vec![FieldError::required("spec.selector", "")],
        };
        assert_eq!(
            e.to_string(),
            "Deployment.apps \"web\" is invalid: spec.selector: Required value"
        );
    }

    #[test]
    fn invalid_aggregates_causes() {
        let one = ApiError::Invalid {
            group: String::new(),
            kind: "Pod".into(),
            name: "x".into(),
            causes: vec![FieldError::required("spec.containers[0].image", "")],
        };
        assert_eq!(
            one.to_string(),
            "Pod \"x\" is invalid: spec.containers[0].image: Required value"
        );
        let two = ApiError::Invalid {
            group: String::new(),
            kind: "Pod".into(),
            name: "x".into(),
            causes: vec![
                FieldError::required("a", ""),
                FieldError::not_supported("b", json!("X"), &["Always", "Never"]),
            ],
        };
        assert_eq!(
            two.to_string(),
            "Pod \"x\" is invalid: [a: Required value, b: Unsupported value: \"X\": supported values: \"Always\", \"Never\"]"
        );
        assert_eq!(
            two.to_status()["details"]["causes"][1]["reason"],
            "FieldValueNotSupported"
        );
    }
}

//! Object metadata helpers over `serde_json::Value`: names, resourceVersion, uid,
//! timestamps in upstream's RFC 3339 form, and generateName suffixes.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

/// `metadata.<field>` as a string.
pub fn field<'a>(obj: &'a Value, f: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(f)?.as_str()
}

/// `obj[key]` as a list of strings (non-strings skipped; absent is empty).
pub fn strings(obj: &Value, key: &str) -> Vec<String> {
    obj.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// `metadata.name`, or "".
pub fn name(obj: &Value) -> &str {
    field(obj, "name").unwrap_or("")
}

/// `metadata.namespace`, or "".
pub fn namespace(obj: &Value) -> &str {
    field(obj, "namespace").unwrap_or("")
}

/// `metadata`, created when absent.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

/// Sets `metadata.resourceVersion`.
pub fn set_rv(obj: &mut Value, rv: u64) {
    meta_mut(obj).insert("resourceVersion".into(), json!(rv.to_string()));
}

/// `metadata.resourceVersion` parsed; `None` when unset or empty.
pub fn rv(obj: &Value) -> Option<u64> {
    field(obj, "resourceVersion")
        .filter(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
}

/// `metadata.finalizers`.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Sets `metadata.finalizers`; an empty list removes the field.
pub fn set_finalizers(obj: &mut Value, f: &[String]) {
    let m = meta_mut(obj);
    if f.is_empty() {
        m.remove("finalizers");
    } else {
        m.insert("finalizers".into(), json!(f));
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Days since the epoch to a civil date (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `2006-01-02T15:04:05Z` for a Unix time, as upstream's `metav1.Time`.
pub fn rfc3339(secs: i64) -> String {
    let (y, mo, d) = civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// `metav1.MicroTime` form: `2006-01-02T15:04:05.000000Z`.
pub fn rfc3339_micro(now: SystemTime) -> String {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    rfc3339_micro_at(d.as_secs() as i64, d.subsec_micros())
}

/// `metav1.MicroTime` form of Unix seconds plus microseconds.
pub fn rfc3339_micro_at(secs: i64, micros: u32) -> String {
    let base = rfc3339(secs);
    format!("{}.{micros:06}Z", &base[..base.len() - 1])
}

pub use component_base::time::parse_rfc3339;

/// The current time as `metav1.Time`.
pub fn now() -> String {
    rfc3339(unix_now())
}

/// A random 5-character suffix from upstream's alphabet (no vowels, no confusables).
pub fn name_suffix() -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    use rand::Rng;
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHA[rng.random_range(0..ALPHA.len())] as char)
        .collect()
}

/// A new UID.
pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Upstream's `duration.HumanDuration`, used by every AGE column.
pub fn human_duration(secs: i64) -> String {
    if secs < 0 {
        return "<invalid>".into();
    }
    let s = secs;
    if s < 120 {
        return format!("{s}s");
    }
    let m = s / 60;
    if m < 10 {
        let r = s % 60;
        return if r == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{r}s")
        };
    }
    if m < 180 {
        return format!("{m}m");
    }
    let h = s / 3600;
    if h < 8 {
        let r = m % 60;
        return if r == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{r}m")
        };
    }
    if h < 48 {
        return format!("{h}h");
    }
    if h < 192 {
        let d = h / 24;
        let r = h % 24;
        return if r == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{r}h")
        };
    }
    if h < 24 * 365 * 2 {
        return format!("{}d", h / 24);
    }
    if h < 24 * 365 * 8 {
        let d = h / 24;
        let y = d / 365;
        let r = d % 365;
        return if r == 0 {
            format!("{y}y")
        } else {
            format!("{y}y{r}d")
        };
    }
    format!("{}y", h / 24 / 365)
}

/// The age of an object from its creationTimestamp, as kubectl shows it.
/// How long ago an RFC 3339 time was, as kubectl prints ages (`<unknown>` if it does
/// not parse).
pub fn since(t: &str) -> String {
    match parse_rfc3339(t) {
        Some(t) => human_duration(unix_now() - t),
        None => "<unknown>".into(),
    }
}

/// The object's age, as kubectl prints it.
pub fn age(obj: &Value) -> String {
    match field(obj, "creationTimestamp").and_then(parse_rfc3339) {
        Some(t) => human_duration(unix_now() - t),
        None => "<unknown>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_round_trip() {
        for t in [0, 86_399, 951_782_400, 1_700_000_000, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            parse_rfc3339("2024-02-29T12:00:00.5+01:00"),
            parse_rfc3339("2024-02-29T11:00:00Z")
        );
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(3600 * 3 + 60 * 5), "3h5m");
        assert_eq!(human_duration(86_400 * 3), "3d");
    }
}

//! Go-style durations (`10m`, `1h30m`, `500ms`), as upstream's flags take them
//! and its messages print them.

use std::time::Duration;

/// Parses Go-style durations: `10m`, `1h30m`, `500ms`, `2s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let v: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        num.clear();
        let secs = match unit.as_str() {
            "ns" => v / 1e9,
            "us" | "µs" => v / 1e6,
            "ms" => v / 1e3,
            "s" => v,
            "m" => v * 60.0,
            "h" => v * 3600.0,
            _ => return Err(format!("unknown unit {unit:?} in duration {s:?}")),
        };
        total += Duration::from_secs_f64(secs);
    }
    // Go accepts a bare "0"; any other number needs a unit.
    if num == "0" && total.is_zero() {
        return Ok(Duration::ZERO);
    }
    if !num.is_empty() {
        return Err(format!("missing unit in duration {s:?}"));
    }
    Ok(total)
}

/// Go's `time.Duration.String()` for nanoseconds: `1h2m3.5s`, `300ms`, `0s`.
pub fn go_string(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let neg = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let frac = |v: u64, unit: u64, width: usize| {
        let whole = v / unit;
        let rest = v % unit;
        if rest == 0 {
            whole.to_string()
        } else {
            let f = format!("{rest:0width$}");
            format!("{whole}.{}", f.trim_end_matches('0'))
        }
    };
    if n < 1_000 {
        return format!("{neg}{n}ns");
    }
    if n < 1_000_000 {
        return format!("{neg}{}µs", frac(n, 1_000, 3));
    }
    if n < 1_000_000_000 {
        return format!("{neg}{}ms", frac(n, 1_000_000, 6));
    }
    let secs = n / 1_000_000_000;
    let sub = n % 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let s = frac(s * 1_000_000_000 + sub, 1_000_000_000, 9);
    match (h, m) {
        (0, 0) => format!("{neg}{s}s"),
        (0, m) => format!("{neg}{m}m{s}s"),
        (h, m) => format!("{neg}{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_string(0), "0s");
        assert_eq!(go_string(1_500_000_000), "1.5s");
        assert_eq!(go_string(300_000_000), "300ms");
        assert_eq!(go_string(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_string(90_000_000_000), "1m30s");
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("1m0s").unwrap().as_secs(), 60);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("").is_err());
    }
}

/// A `metav1.Duration`: a [`Duration`] read and written as Go's duration string
/// (`"10s"`, `"1m0s"`), as configuration files (KubeletConfiguration, ...) carry it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoDuration(pub Duration);

impl serde::Serialize for GoDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&go_string(
            i64::try_from(self.0.as_nanos()).unwrap_or(i64::MAX),
        ))
    }
}

impl<'de> serde::Deserialize<'de> for GoDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        // metav1.Duration's UnmarshalJSON: `time: invalid duration "x"`.
        parse_duration(&s)
            .map(GoDuration)
            .map_err(|_| serde::de::Error::custom(format!("time: invalid duration {s:?}")))
    }
}

//! Kubernetes resource quantities (`500m`, `128Mi`, `1.5Gi`, `2e3`), as upstream's
//! `resource.Quantity`: parsed exactly into nano-units, added and compared, and
//! printed back in a canonical form (binary suffixes for whole multiples of 1024,
//! `m` for milli-units, plain integers otherwise).

/// Nano-units per unit.
const NANO: i128 = 1_000_000_000;

/// Parses a quantity into nano-units; `None` when it is not one.
pub fn parse(s: &str) -> Option<i128> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let (num, suffix) =
        match s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')) {
            Some(i) => s.split_at(i),
            None => (s, ""),
        };
    let (neg, digits) = match num.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, num.strip_prefix('+').unwrap_or(num)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
    {
        return None;
    }
    // The number in nano-units, before the suffix.
    let mut value: i128 = 0;
    for c in int.chars() {
        value = value
            .checked_mul(10)?
            .checked_add((c as u8 - b'0') as i128)?;
    }
    value = value.checked_mul(NANO)?;
    let mut scale = NANO / 10;
    for c in frac.chars().take(9) {
        value += (c as u8 - b'0') as i128 * scale;
        scale /= 10;
    }
    let scaled = match suffix {
        "" => value,
        "n" => value / NANO,
        "u" => value / 1_000_000,
        "m" => value / 1_000,
        "k" => value.checked_mul(1_000)?,
        "M" => value.checked_mul(1_000_000)?,
        "G" => value.checked_mul(1_000_000_000)?,
        "T" => value.checked_mul(1_000_000_000_000)?,
        "P" => value.checked_mul(1_000_000_000_000_000)?,
        "E" => value.checked_mul(1_000_000_000_000_000_000)?,
        "Ki" => value.checked_mul(1 << 10)?,
        "Mi" => value.checked_mul(1 << 20)?,
        "Gi" => value.checked_mul(1 << 30)?,
        "Ti" => value.checked_mul(1 << 40)?,
        "Pi" => value.checked_mul(1 << 50)?,
        "Ei" => value.checked_mul(1 << 60)?,
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().ok()?;
            if exp >= 0 {
                value.checked_mul(10i128.checked_pow(exp as u32)?)?
            } else {
                value / 10i128.checked_pow((-exp) as u32)?
            }
        }
        _ => return None,
    };
    Some(if neg { -scaled } else { scaled })
}

/// Prints nano-units canonically, as a `BinarySI` quantity: binary suffixes for
/// whole multiples of 1024.
pub fn format(nano: i128) -> String {
    if nano % NANO != 0 {
        return if nano % 1_000_000 == 0 {
            format!("{}m", nano / 1_000_000)
        } else {
            format!("{nano}n")
        };
    }
    let units = nano / NANO;
    if units != 0 {
        for (suffix, shift) in [
            ("Ei", 60),
            ("Pi", 50),
            ("Ti", 40),
            ("Gi", 30),
            ("Mi", 20),
            ("Ki", 10),
        ] {
            let m = 1i128 << shift;
            if units % m == 0 && units.abs() >= m {
                return format!("{}{suffix}", units / m);
            }
        }
    }
    units.to_string()
}

/// Prints nano-units canonically, as a `DecimalSI` quantity: the largest decimal
/// suffix that keeps the number whole (`1k`, `100M`, `500m`).
pub fn format_decimal(nano: i128) -> String {
    if nano % NANO != 0 {
        return format(nano);
    }
    let units = nano / NANO;
    if units != 0 {
        for (suffix, exp) in [
            ("E", 18),
            ("P", 15),
            ("T", 12),
            ("G", 9),
            ("M", 6),
            ("k", 3),
        ] {
            let m = 10i128.pow(exp);
            if units % m == 0 {
                return format!("{}{suffix}", units / m);
            }
        }
    }
    units.to_string()
}

/// Whether a quantity's text uses a binary suffix (`Ki` … `Ei`), upstream's
/// `BinarySI` format.
pub fn is_binary(s: &str) -> bool {
    s.trim_end().ends_with('i')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstreams_forms() {
        assert_eq!(parse("1"), Some(NANO));
        assert_eq!(parse("500m"), Some(NANO / 2));
        assert_eq!(parse("0.5"), Some(NANO / 2));
        assert_eq!(parse("1.5Gi"), Some(3 * (1 << 29) * NANO));
        assert_eq!(parse("128Mi"), Some(128 * (1 << 20) * NANO));
        assert_eq!(parse("1k"), Some(1000 * NANO));
        assert_eq!(parse("2e3"), Some(2000 * NANO));
        assert_eq!(parse("-1"), Some(-NANO));
        for bad in ["", "abc", "1.2.3", "5Q", "m"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_canonically() {
        assert_eq!(format(parse("500m").unwrap()), "500m");
        assert_eq!(format(parse("2").unwrap()), "2");
        assert_eq!(format(parse("256Mi").unwrap() * 2), "512Mi");
        assert_eq!(format(parse("1Gi").unwrap()), "1Gi");
        assert_eq!(format(parse("1000").unwrap()), "1000");
        assert_eq!(format(0), "0");
        assert_eq!(format_decimal(parse("1000").unwrap()), "1k");
        assert_eq!(format_decimal(parse("100M").unwrap()), "100M");
        assert_eq!(format_decimal(parse("1500m").unwrap()), "1500m");
        assert_eq!(format_decimal(parse("3").unwrap()), "3");
        assert!(is_binary("1Gi") && !is_binary("1G"));
    }
}

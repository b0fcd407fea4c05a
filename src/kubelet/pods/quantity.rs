//! Kubernetes resource quantities (`100m`, `20Mi`, `1.5`, `2e3`) as numbers, the way
//! `resource.Quantity` reads them: binary (Ki…Ei) and decimal (n…E) suffixes. The
//! kubelet needs them for CPU shares and quota, memory limits, `resourceFieldRef`
//! values and emptyDir size limits.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The quantity in base units (cores, bytes), or `None` if it does not parse.
pub fn parse(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    // An exponent (`1e3`, `2E-2`) is part of the number, not the `E` (exa) suffix.
    let (number, suffix) = match suffix.strip_prefix(['e', 'E']) {
        Some(exp) if !exp.is_empty() && exp.trim_start_matches(['+', '-']).chars().all(|c| c.is_ascii_digit()) => {
            let exp: i32 = exp.parse().ok()?;
            (number.parse::<f64>().ok()? * 10f64.powi(exp), "")
        }
        _ => (number.parse::<f64>().ok()?, suffix),
    };
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    let value = number * scale;
    value.is_finite().then_some(value)
}

/// Thousandths of the unit, rounded up (CPU millicores).
pub fn milli(q: &Quantity) -> Option<i64> {
    parse(&q.0).map(|v| (v * 1000.0 - 1e-9).ceil() as i64)
}

/// The value in base units, rounded up (bytes).
pub fn value(q: &Quantity) -> Option<i64> {
    parse(&q.0).map(|v| (v - 1e-9).ceil() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity(s.to_string())
    }

    #[test]
    fn quantities() {
        assert_eq!(milli(&q("100m")), Some(100));
        assert_eq!(milli(&q("1.5")), Some(1500));
        assert_eq!(milli(&q("2")), Some(2000));
        assert_eq!(value(&q("20Mi")), Some(20 * 1024 * 1024));
        assert_eq!(value(&q("1G")), Some(1_000_000_000));
        assert_eq!(value(&q("1e3")), Some(1000));
        assert_eq!(value(&q("1E")), Some(1_000_000_000_000_000_000));
        assert_eq!(value(&q("128974848")), Some(128974848));
        assert_eq!(value(&q("129e6")), Some(129_000_000));
        assert_eq!(value(&q("0.5Gi")), Some(512 * 1024 * 1024));
        assert_eq!(milli(&q("1m")), Some(1));
        assert_eq!(value(&q("1m")), Some(1));
        assert_eq!(parse("12 apples"), None);
        assert_eq!(parse("Mi"), None);
        assert_eq!(parse(""), None);
    }
}

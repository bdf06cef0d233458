//! Kubernetes resource quantities (`resource.Quantity`) parsed into integers.
//!
//! The grammar is Kubernetes': an optional sign, a decimal number, and an optional suffix that
//! is a binary SI suffix (`Ki` … `Ei`), a decimal SI suffix (`n`, `u`, `m`, `k`, `M` … `E`) or a
//! decimal exponent (`e3`, `E-2`). Results round **up**, as Kubernetes does when it converts a
//! quantity to a coarser unit: `0.5m` CPU is 1 millicore, never 0.

use std::fmt;

/// A quantity string that is not valid Kubernetes quantity syntax, or is out of range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantityError {
    /// The text that failed to parse.
    pub input: String,
    /// Why.
    pub reason: &'static str,
}

impl fmt::Display for QuantityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid quantity {:?}: {}", self.input, self.reason)
    }
}

impl std::error::Error for QuantityError {}

/// A parsed quantity: `mantissa × 10^exp10 × 2^exp2`, kept exact (no floating point).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parsed {
    negative: bool,
    /// All digits of the number without the decimal point.
    digits: u128,
    /// Power of ten applied to `digits` (the decimal point shift plus any decimal suffix).
    exp10: i32,
    /// Power of two from a binary suffix.
    exp2: u32,
}

fn parse(input: &str) -> Result<Parsed, QuantityError> {
    let err = |reason| QuantityError {
        input: input.to_string(),
        reason,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    let (negative, rest) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(num_end);
    if number.is_empty() || number == "." {
        return Err(err("no digits"));
    }
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => {
            if f.contains('.') {
                return Err(err("more than one decimal point"));
            }
            (i, f)
        }
        None => (number, ""),
    };
    let mut digits: u128 = 0;
    for c in int_part.bytes().chain(frac_part.bytes()) {
        digits = digits
            .checked_mul(10)
            .and_then(|d| d.checked_add(u128::from(c - b'0')))
            .ok_or_else(|| err("too many digits"))?;
    }
    let mut exp10 = -i32::try_from(frac_part.len()).map_err(|_| err("too many digits"))?;
    let mut exp2 = 0;
    match suffix {
        "" => {}
        "Ki" => exp2 = 10,
        "Mi" => exp2 = 20,
        "Gi" => exp2 = 30,
        "Ti" => exp2 = 40,
        "Pi" => exp2 = 50,
        "Ei" => exp2 = 60,
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        other => {
            let exp = other
                .strip_prefix('e')
                .or_else(|| other.strip_prefix('E'))
                .ok_or_else(|| err("unknown suffix"))?;
            let exp: i32 = exp.parse().map_err(|_| err("unknown suffix"))?;
            if !(-30..=30).contains(&exp) {
                return Err(err("exponent out of range"));
            }
            exp10 += exp;
        }
    }
    Ok(Parsed {
        negative,
        digits,
        exp10,
        exp2,
    })
}

/// `q × 10^scale`, rounded up to an integer; errors on negative values and overflow.
fn scaled_ceil(input: &str, scale: i32) -> Result<u64, QuantityError> {
    let p = parse(input)?;
    let err = |reason| QuantityError {
        input: input.to_string(),
        reason,
    };
    if p.negative && p.digits != 0 {
        return Err(err("negative"));
    }
    let mut value = p.digits;
    value = value
        .checked_shl(p.exp2)
        .filter(|v| v >> p.exp2 == value)
        .ok_or_else(|| err("too large"))?;
    let exp = p.exp10 + scale;
    let result = if exp >= 0 {
        let factor = 10u128
            .checked_pow(exp.unsigned_abs())
            .ok_or_else(|| err("too large"))?;
        value.checked_mul(factor).ok_or_else(|| err("too large"))?
    } else {
        let divisor = 10u128.checked_pow(exp.unsigned_abs());
        match divisor {
            Some(d) => value.div_ceil(d),
            // 10^exp exceeds u128: any non-zero value rounds up to 1.
            None => u128::from(value != 0),
        }
    };
    u64::try_from(result).map_err(|_| err("too large"))
}

/// CPU quantity in millicores, rounded up (`"250m"` → 250, `"1.5"` → 1500, `"0.1m"` → 1).
pub fn cpu_millis(q: &str) -> Result<u64, QuantityError> {
    scaled_ceil(q, 3)
}

/// Memory or storage quantity in bytes, rounded up (`"1Gi"` → 1073741824, `"1G"` → 10^9).
pub fn bytes(q: &str) -> Result<u64, QuantityError> {
    scaled_ceil(q, 0)
}

/// A count such as `nvidia.com/gpu: "2"`, rounded up.
pub fn count(q: &str) -> Result<u64, QuantityError> {
    scaled_ceil(q, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu() {
        assert_eq!(cpu_millis("250m").unwrap(), 250);
        assert_eq!(cpu_millis("1").unwrap(), 1000);
        assert_eq!(cpu_millis("1.5").unwrap(), 1500);
        assert_eq!(cpu_millis("0.1m").unwrap(), 1, "rounds up like Kubernetes");
        assert_eq!(cpu_millis("2000000n").unwrap(), 2);
        assert_eq!(cpu_millis("1e3").unwrap(), 1_000_000);
        assert_eq!(cpu_millis("+2").unwrap(), 2000);
        assert_eq!(cpu_millis("0").unwrap(), 0);
    }

    #[test]
    fn memory() {
        assert_eq!(bytes("1Gi").unwrap(), 1 << 30);
        assert_eq!(bytes("512Mi").unwrap(), 512 << 20);
        assert_eq!(bytes("1.5Gi").unwrap(), 3 << 29);
        assert_eq!(bytes("1G").unwrap(), 1_000_000_000);
        assert_eq!(bytes("128974848").unwrap(), 128_974_848);
        assert_eq!(bytes("129e6").unwrap(), 129_000_000);
        assert_eq!(bytes("123Mi").unwrap(), 123 * 1024 * 1024);
        assert_eq!(bytes("1k").unwrap(), 1000);
        assert_eq!(bytes("1Ki").unwrap(), 1024);
    }

    #[test]
    fn invalid() {
        for bad in [
            "",
            "abc",
            "1.2.3",
            "1Qi",
            "-1",
            "1e99",
            "99999999999999999999999Ei",
            ".",
            "1 Gi",
        ] {
            assert!(bytes(bad).is_err(), "{bad:?} should be rejected");
        }
        let e = bytes("12X").unwrap_err();
        assert_eq!(e.to_string(), "invalid quantity \"12X\": unknown suffix");
    }
}

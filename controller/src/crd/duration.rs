//! Go-style durations (`30s`, `10m`, `1h30m`, `500ms`), as Kubernetes and cosign write them.
//!
//! The grammar is the one the CRD's CEL rules accept (see [`DURATION_REGEX`]): one or more
//! `<digits>[.<digits>]<unit>` parts with units `ns`, `us`, `ms`, `s`, `m`, `h`, no sign and no
//! spaces. It is a subset of Go's `time.ParseDuration`, so whatever passes here also passes the
//! apiserver's `duration()` function. kube's own `Duration` parser is not used: it accepts the
//! empty string and panics on values too large for a `std::time::Duration`.

use std::time::Duration;

use super::FieldError;

/// The shape of a duration, as an RE2 regex for CEL rules (already escaped for a CEL string).
pub const DURATION_REGEX: &str = r"^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$";

/// Parses the Go-style duration `value` of the field at `path`; errors name the field and quote
/// the value.
pub fn parse_duration(path: &str, value: &str) -> Result<Duration, FieldError> {
    parse(value).map_err(|why| {
        FieldError::new(
            path,
            format!("{value:?} is not a duration like 30s, 10m or 1h30m: {why}"),
        )
    })
}

fn parse(value: &str) -> Result<Duration, String> {
    if value.is_empty() {
        return Err("it is empty".into());
    }
    let mut rest = value;
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let (part, tail) = parse_part(rest)?;
        total = total.checked_add(part).ok_or("it is too large")?;
        rest = tail;
    }
    Ok(total)
}

/// One `<digits>[.<digits>]<unit>` part at the start of `s`, and what follows it.
fn parse_part(s: &str) -> Result<(Duration, &str), String> {
    let (whole, s) = split_digits(s);
    if whole.is_empty() {
        return Err(format!("expected a number at {s:?}"));
    }
    let (fraction, s) = match s.strip_prefix('.') {
        Some(after_dot) => {
            let (fraction, s) = split_digits(after_dot);
            if fraction.is_empty() {
                return Err("expected digits after '.'".into());
            }
            (fraction, s)
        }
        None => ("", s),
    };
    let unit_len = s.find(|c: char| c.is_ascii_digit()).unwrap_or(s.len());
    let (unit, s) = s.split_at(unit_len);
    let nanos_per_unit = unit_nanos(unit)?;
    let nanos = scale(whole, fraction, nanos_per_unit).ok_or("it is too large")?;
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| "it is too large")?;
    // The remainder is below 10^9, so it always fits.
    let subsec = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
    Ok((Duration::new(secs, subsec), s))
}

fn split_digits(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(end)
}

fn unit_nanos(unit: &str) -> Result<u128, String> {
    Ok(match unit {
        "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        "" => return Err("a number needs a unit (ns, us, ms, s, m, h)".into()),
        other => {
            return Err(format!("unknown unit {other:?} (use ns, us, ms, s, m, h)"));
        }
    })
}

/// `whole.fraction × nanos_per_unit` in nanoseconds, truncated like Go does; `None` on overflow.
fn scale(whole: &str, fraction: &str, nanos_per_unit: u128) -> Option<u128> {
    let whole: u128 = whole.parse().ok()?;
    let mut nanos = whole.checked_mul(nanos_per_unit)?;
    // Digits past nanosecond precision cannot change the result (the largest unit, h, has 13
    // digits of nanoseconds), so ignoring them keeps the arithmetic small.
    let mut place = nanos_per_unit;
    for digit in fraction.bytes().take(20) {
        place /= 10;
        nanos = nanos.checked_add(u128::from(digit - b'0') * place)?;
    }
    Some(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(value: &str) -> Duration {
        match parse_duration("spec.reverifyInterval", value) {
            Ok(d) => d,
            Err(e) => panic!("{value}: {e}"),
        }
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(ok("10s"), Duration::from_secs(10));
        assert_eq!(ok("10m"), Duration::from_secs(600));
        assert_eq!(ok("1h30m"), Duration::from_secs(5_400));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("1.5h"), Duration::from_secs(5_400));
        assert_eq!(ok("2m0.25s"), Duration::from_millis(120_250));
        assert_eq!(ok("72h"), Duration::from_secs(72 * 3_600));
        assert_eq!(ok("1us"), Duration::from_micros(1));
        assert_eq!(ok("3ns"), Duration::from_nanos(3));
        assert_eq!(ok("1m1m"), Duration::from_secs(120));
        assert_eq!(ok("0s"), Duration::ZERO);
    }

    #[test]
    fn long_fractions_are_truncated_to_nanoseconds() {
        assert_eq!(ok("0.0000000019s"), Duration::from_nanos(1));
        assert_eq!(
            ok("1.123456789123456789123456789s"),
            Duration::new(1, 123_456_789)
        );
    }

    #[test]
    fn rejects_what_go_or_the_crd_would_reject() {
        for (value, expected) in [
            ("", "empty"),
            ("10", "needs a unit"),
            ("10d", "unknown unit \"d\""),
            ("-10s", "expected a number"),
            ("+10s", "expected a number"),
            ("1.s", "digits after '.'"),
            (".5s", "expected a number"),
            ("10 s", "unknown unit \" s\""),
            ("s", "expected a number"),
            ("99999999999999999999999999999999999999999h", "too large"),
            ("9999999999999999999h", "too large"),
        ] {
            match parse_duration("spec.reverifyInterval", value) {
                Ok(d) => panic!("{value:?} parsed as {d:?}"),
                Err(e) => {
                    let text = e.to_string();
                    assert!(text.starts_with("spec.reverifyInterval: "), "{text}");
                    assert!(text.contains(expected), "{value:?}: {text}");
                }
            }
        }
    }
}

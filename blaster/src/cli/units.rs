//! Unit parsers for durations, counts, rates and byte sizes, and the matching formatters the
//! reports use.
//!
//! Parsers take what a user types on the command line (`250us`, `1h30m`, `10k`, `6000/m`,
//! `1.5MiB`) and either return an exact value or a [`UnitError`] that echoes the input and
//! shows the expected form. Numbers are parsed as exact decimals (no float rounding), so
//! `1.5M` is exactly 1,500,000 and `1.1ms` exactly 1,100 µs. Formatters produce short, readable
//! strings with about three significant figures (`850us`, `1.25ms`, `12.3k`, `1.5 MiB`).

use std::time::Duration;

/// A value that could not be parsed: names what was being parsed, echoes the input and says
/// what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {problem}")]
pub struct UnitError {
    /// What was being parsed: "duration", "count", "rate" or "byte size".
    pub what: &'static str,
    /// The input exactly as given.
    pub input: String,
    /// What is wrong with it and the form that was expected.
    pub problem: String,
}

impl UnitError {
    fn new(what: &'static str, input: &str, problem: impl Into<String>) -> Self {
        UnitError {
            what,
            input: input.to_owned(),
            problem: problem.into(),
        }
    }
}

const DURATION_FORM: &str = "expected a number with a unit, like 250us, 10ms, 30s, 2m, 1h30m";
const COUNT_FORM: &str = "expected a whole number, optionally with a k, M, G or T suffix, like 1000, 10k, 1.5M, 1_000_000";
const RATE_FORM: &str =
    "expected requests per second greater than zero, like 2000, 2k, 100/s, 6000/m, 1/ms";
const BYTES_FORM: &str =
    "expected a whole number of bytes, optionally with a unit, like 512, 4KiB, 4KB, 1.5MiB, 1GiB";

/// An exact non-negative decimal number: `mantissa / 10^scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decimal {
    mantissa: u128,
    scale: u32,
}

impl Decimal {
    /// `self * factor`, if that is a whole number that fits.
    fn times_exact(self, factor: u128) -> Option<Result<u128, ()>> {
        let product = self.mantissa.checked_mul(factor)?;
        let div = 10u128.checked_pow(self.scale)?;
        Some(if product % div == 0 {
            Ok(product / div)
        } else {
            Err(())
        })
    }

    /// `self * factor`, rounded down; `None` on overflow.
    fn times_floor(self, factor: u128) -> Option<u128> {
        let product = self.mantissa.checked_mul(factor)?;
        Some(product / 10u128.checked_pow(self.scale)?)
    }

    fn to_f64(self) -> f64 {
        // The mantissa has at most 38 digits; f64 keeps ~16 of them, ample for a rate.
        self.mantissa as f64 / 10f64.powi(self.scale as i32)
    }
}

/// Why the number at the start of a string could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumberError {
    /// No digit where a number should start.
    Missing,
    /// A `-` sign.
    Negative,
    /// More digits than fit.
    TooLarge,
    /// `_` not between two digits, or `.` without a digit after it.
    Malformed,
}

/// Reads a decimal number (`123`, `1.5`, `.5`, `1_000`) at the start of `s`. Returns the number
/// and the rest of the string.
fn take_number(s: &str) -> Result<(Decimal, &str), NumberError> {
    if s.starts_with('-') {
        return Err(NumberError::Negative);
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let bytes = s.as_bytes();
    let mut mantissa: u128 = 0;
    let mut scale: u32 = 0;
    let mut digits = 0usize;
    let mut seen_dot = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa
                    .checked_mul(10)
                    .and_then(|m| m.checked_add(u128::from(b - b'0')))
                    .ok_or(NumberError::TooLarge)?;
                if seen_dot {
                    scale += 1;
                    if scale > 30 {
                        return Err(NumberError::TooLarge);
                    }
                }
                digits += 1;
            }
            b'_' => {
                let prev_digit = i > 0 && bytes[i - 1].is_ascii_digit();
                let next_digit = bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
                if !(prev_digit && next_digit) {
                    return Err(NumberError::Malformed);
                }
            }
            b'.' if !seen_dot => {
                if !bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    return Err(NumberError::Malformed);
                }
                seen_dot = true;
            }
            _ => break,
        }
        i += 1;
    }
    if digits == 0 {
        return Err(NumberError::Missing);
    }
    Ok((Decimal { mantissa, scale }, &s[i..]))
}

/// Reads the whole of `s` (trimmed) as a number followed by an optional suffix (spaces between
/// them are allowed). Maps number errors to a [`UnitError`] with `form` as the expected form.
fn number_and_suffix<'a>(
    what: &'static str,
    input: &'a str,
    form: &str,
) -> Result<(Decimal, &'a str), UnitError> {
    let s = input.trim();
    match take_number(s) {
        Ok((n, rest)) => Ok((n, rest.trim_start())),
        Err(NumberError::Negative) => Err(UnitError::new(
            what,
            input,
            format!("must not be negative; {form}"),
        )),
        Err(NumberError::TooLarge) => Err(UnitError::new(
            what,
            input,
            format!("number too large or too precise; {form}"),
        )),
        Err(NumberError::Missing | NumberError::Malformed) => {
            Err(UnitError::new(what, input, form))
        }
    }
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Nanoseconds in one duration unit.
fn duration_unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" | "min" => 60 * NANOS_PER_SEC,
        "h" => 3_600 * NANOS_PER_SEC,
        _ => return None,
    })
}

/// Parses a duration: a number with a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), several of
/// them added together (`1h30m`, `1m 30s`), or a bare number meaning seconds (`10`).
/// Fractions are allowed (`1.5ms`); zero is allowed (the caller decides whether it makes sense).
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    const WHAT: &str = "duration";
    let err = |problem: &str| UnitError::new(WHAT, s, problem);
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Err(err(DURATION_FORM));
    }
    let (first, rest) = number_and_suffix(WHAT, s, DURATION_FORM)?;
    if rest.is_empty() {
        // A bare number: seconds.
        return nanos_to_duration(first.times_floor(NANOS_PER_SEC)).ok_or_else(|| err("too large"));
    }
    let mut total: u128 = 0;
    let mut number = first;
    let mut rest = rest;
    loop {
        let unit_len = rest
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(rest.len());
        let (unit, after) = rest.split_at(unit_len);
        if unit.is_empty() {
            return Err(err(&format!(
                "missing unit after a number; {DURATION_FORM}"
            )));
        }
        let Some(per_unit) = duration_unit_nanos(unit) else {
            return Err(err(&format!("unknown unit {unit:?}; {DURATION_FORM}")));
        };
        let part = number
            .times_floor(per_unit)
            .ok_or_else(|| err("too large"))?;
        total = total.checked_add(part).ok_or_else(|| err("too large"))?;
        rest = after.trim_start();
        if rest.is_empty() {
            break;
        }
        number = match take_number(rest) {
            Ok((n, after_number)) => {
                rest = after_number.trim_start();
                n
            }
            Err(NumberError::Negative) => {
                return Err(err(&format!("must not be negative; {DURATION_FORM}")));
            }
            Err(_) => return Err(err(DURATION_FORM)),
        };
    }
    nanos_to_duration(Some(total)).ok_or_else(|| err("too large"))
}

fn nanos_to_duration(nanos: Option<u128>) -> Option<Duration> {
    let nanos = nanos?;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).ok()?;
    Some(Duration::new(secs, (nanos % NANOS_PER_SEC) as u32))
}

/// Multiplier of a decimal count suffix (k = 1000).
fn count_suffix(suffix: &str) -> Option<u128> {
    Some(match suffix {
        "" => 1,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => return None,
    })
}

/// Parses a count: a whole number with an optional decimal suffix `k`/`K` (10^3), `M` (10^6),
/// `G` (10^9), `T` (10^12); `_` may separate digits (`1_000_000`). `1.5M` is allowed, `1.5` is
/// not (not whole).
pub fn parse_count(s: &str) -> Result<u64, UnitError> {
    const WHAT: &str = "count";
    let (n, suffix) = number_and_suffix(WHAT, s, COUNT_FORM)?;
    let Some(factor) = count_suffix(suffix) else {
        return Err(UnitError::new(
            WHAT,
            s,
            format!("unknown suffix {suffix:?}; {COUNT_FORM}"),
        ));
    };
    match n.times_exact(factor) {
        Some(Ok(v)) => {
            u64::try_from(v).map_err(|_| UnitError::new(WHAT, s, "too large (at most 2^64-1)"))
        }
        Some(Err(())) => Err(UnitError::new(
            WHAT,
            s,
            format!("not a whole number; {COUNT_FORM}"),
        )),
        None => Err(UnitError::new(WHAT, s, "too large (at most 2^64-1)")),
    }
}

/// Parses a request rate in requests per second: a number with an optional count suffix
/// (`2k`), optionally per a time unit: `/s`, `/m` or `/min` (divided by 60), `/h`, `/ms`
/// (times 1000), `/us`. The result is finite and greater than zero.
pub fn parse_rate(s: &str) -> Result<f64, UnitError> {
    const WHAT: &str = "rate";
    let (n, suffix) = number_and_suffix(WHAT, s, RATE_FORM)?;
    let (multiplier, per) = match suffix.split_once('/') {
        Some((m, per)) => (m.trim_end(), per.trim()),
        None => (suffix, "s"),
    };
    let Some(factor) = count_suffix(multiplier) else {
        return Err(UnitError::new(
            WHAT,
            s,
            format!("unknown suffix {multiplier:?}; {RATE_FORM}"),
        ));
    };
    let Some(per_nanos) = duration_unit_nanos(per) else {
        return Err(UnitError::new(
            WHAT,
            s,
            format!("unknown time unit {per:?} after '/'; {RATE_FORM}"),
        ));
    };
    let rate = n.to_f64() * factor as f64 * (NANOS_PER_SEC as f64 / per_nanos as f64);
    if !rate.is_finite() || rate <= 0.0 {
        return Err(UnitError::new(WHAT, s, RATE_FORM));
    }
    Ok(rate)
}

/// Multiplier of a byte-size unit (case-insensitive): decimal `k`/`KB` = 1000, binary
/// `KiB` = 1024, and so on up to tera.
fn bytes_suffix(suffix: &str) -> Option<u128> {
    const KI: u128 = 1 << 10;
    Some(match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => KI,
        "mi" | "mib" => KI * KI,
        "gi" | "gib" => KI * KI * KI,
        "ti" | "tib" => KI * KI * KI * KI,
        _ => return None,
    })
}

/// Parses a byte size: a number with an optional unit (case-insensitive): `B`, decimal `k`/`KB`
/// (1000), `M`/`MB`, `G`/`GB`, `T`/`TB`, binary `KiB` (1024), `MiB`, `GiB`, `TiB`. Fractions
/// are allowed when the result is a whole number of bytes (`1.5MiB`, not `1.1KiB`).
pub fn parse_bytes(s: &str) -> Result<u64, UnitError> {
    const WHAT: &str = "byte size";
    let (n, suffix) = number_and_suffix(WHAT, s, BYTES_FORM)?;
    let Some(factor) = bytes_suffix(suffix) else {
        return Err(UnitError::new(
            WHAT,
            s,
            format!("unknown unit {suffix:?}; {BYTES_FORM}"),
        ));
    };
    match n.times_exact(factor) {
        Some(Ok(v)) => {
            u64::try_from(v).map_err(|_| UnitError::new(WHAT, s, "too large (at most 2^64-1)"))
        }
        Some(Err(())) => Err(UnitError::new(
            WHAT,
            s,
            format!("not a whole number of bytes; {BYTES_FORM}"),
        )),
        None => Err(UnitError::new(WHAT, s, "too large (at most 2^64-1)")),
    }
}

/// `v` with three significant figures (`1.25`, `12.5`, `125`), or `None` when it rounds to
/// 1000 or more (the caller then moves to the next larger unit).
fn three_figures(v: f64) -> Option<String> {
    let hundredths = (v * 100.0).round() / 100.0;
    if hundredths < 10.0 {
        return Some(format!("{hundredths:.2}"));
    }
    let tenths = (v * 10.0).round() / 10.0;
    if tenths < 100.0 {
        return Some(format!("{tenths:.1}"));
    }
    let whole = v.round();
    (whole < 1000.0).then(|| format!("{whole:.0}"))
}

/// Formats a duration given in microseconds for reports, with about three significant figures:
/// `850us`, `1.25ms`, `12.3ms`, `2.50s`, `1m05s`, `2h03m04s`.
pub fn format_duration_us(us: u64) -> String {
    if us < 1_000 {
        return format!("{us}us");
    }
    if let Some(ms) = three_figures(us as f64 / 1e3) {
        return format!("{ms}ms");
    }
    if us < 60_000_000
        && let Some(s) = three_figures(us as f64 / 1e6)
        && s.parse::<f64>().is_ok_and(|v| v < 60.0)
    {
        return format!("{s}s");
    }
    // Whole seconds from here on.
    let secs = us.saturating_add(500_000) / 1_000_000;
    let (h, m, s) = (secs / 3_600, (secs / 60) % 60, secs % 60);
    if h == 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{h}h{m:02}m{s:02}s")
    }
}

/// Formats a count or rate compactly with about three significant figures: `850`, `12.5`,
/// `12.3k`, `1.20M`, `3.00G`. Whole numbers below 1000 are printed as they are.
pub fn format_count(n: f64) -> String {
    if !n.is_finite() {
        return n.to_string();
    }
    if n < 0.0 {
        return format!("-{}", format_count(-n));
    }
    if n < 1_000.0 {
        if n.fract() == 0.0 {
            return format!("{n:.0}");
        }
        if let Some(s) = three_figures(n) {
            return s;
        }
    }
    for (scale, suffix) in [(1e3, "k"), (1e6, "M"), (1e9, "G"), (1e12, "T")] {
        if let Some(s) = three_figures(n / scale) {
            return format!("{s}{suffix}");
        }
    }
    format!("{:.0}T", n / 1e12)
}

/// Formats a byte count with binary units and one decimal: `512 B`, `4.0 KiB`, `1.5 MiB`,
/// `120.1 MiB`.
pub fn format_bytes(n: u64) -> String {
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    for unit in ["KiB", "MiB", "GiB", "TiB"] {
        value /= 1024.0;
        let tenths = (value * 10.0).round() / 10.0;
        if tenths < 1024.0 || unit == "TiB" {
            return format!("{tenths:.1} {unit}");
        }
    }
    unreachable!("the loop returns at TiB")
}

/// Formats an integer with thousands separators: `1,234,567`.
pub fn format_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn durations_with_units() {
        assert_eq!(parse_duration("250us"), Ok(us(250)));
        assert_eq!(parse_duration("250µs"), Ok(us(250)));
        assert_eq!(parse_duration("1.5ms"), Ok(us(1_500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3_600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.1ms"), Ok(us(1_100)));
        assert_eq!(parse_duration("100ns"), Ok(Duration::from_nanos(100)));
        assert_eq!(parse_duration(" 5s "), Ok(Duration::from_secs(5)));
    }

    #[test]
    fn bare_number_is_seconds_and_zero_is_allowed() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_echo_input_and_form() {
        let e = parse_duration("3x").unwrap_err();
        assert_eq!(e.input, "3x");
        assert!(
            e.to_string().starts_with(r#"invalid duration "3x": "#),
            "{e}"
        );
        assert!(
            e.to_string().contains("like 250us, 10ms, 30s, 2m, 1h30m"),
            "{e}"
        );
        for bad in [
            "", "   ", "-1s", "s", "1h30", "1.s", "1..5s", "ms10", "1e3s", "1s-2s", "_1s",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert_eq!(e.input, bad);
            assert!(
                e.to_string().contains(DURATION_FORM) || e.problem.contains("negative"),
                "{e}"
            );
        }
        assert!(
            parse_duration("-1s")
                .unwrap_err()
                .problem
                .contains("negative")
        );
        assert!(parse_duration("99999999999999999999999h").is_err());
    }

    #[test]
    fn counts_with_suffixes() {
        assert_eq!(parse_count("1000"), Ok(1_000));
        assert_eq!(parse_count("10k"), Ok(10_000));
        assert_eq!(parse_count("10K"), Ok(10_000));
        assert_eq!(parse_count("1.5M"), Ok(1_500_000));
        assert_eq!(parse_count("2G"), Ok(2_000_000_000));
        assert_eq!(parse_count("1_000_000"), Ok(1_000_000));
        assert_eq!(parse_count("0"), Ok(0));
        assert_eq!(parse_count("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn bad_counts() {
        for bad in [
            "",
            "-5",
            "1.5",
            "10x",
            "k",
            "1__000",
            "1_",
            "_1",
            "18446744073709551616",
            "1m",
        ] {
            let e = parse_count(bad).unwrap_err();
            assert_eq!(e.input, bad);
            assert!(e.to_string().starts_with("invalid count"), "{e}");
        }
        assert!(parse_count("1.5").unwrap_err().problem.contains("whole"));
    }

    #[test]
    fn rates_per_unit() {
        assert_eq!(parse_rate("2000"), Ok(2_000.0));
        assert_eq!(parse_rate("2k"), Ok(2_000.0));
        assert_eq!(parse_rate("100/s"), Ok(100.0));
        assert_eq!(parse_rate("6000/m"), Ok(100.0));
        assert_eq!(parse_rate("6000/min"), Ok(100.0));
        assert_eq!(parse_rate("1/ms"), Ok(1_000.0));
        assert_eq!(parse_rate("3600/h"), Ok(1.0));
        assert_eq!(parse_rate("2k/s"), Ok(2_000.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
    }

    #[test]
    fn bad_rates() {
        for bad in [
            "", "0", "0/s", "-1", "10/x", "10/", "inf", "NaN", "1e3", "5q/s",
        ] {
            let e = parse_rate(bad).unwrap_err();
            assert_eq!(e.input, bad);
            assert!(e.to_string().starts_with("invalid rate"), "{e}");
            assert!(e.to_string().contains("like 2000, 2k, 100/s"), "{e}");
        }
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("512"), Ok(512));
        assert_eq!(parse_bytes("512B"), Ok(512));
        assert_eq!(parse_bytes("4KiB"), Ok(4_096));
        assert_eq!(parse_bytes("4k"), Ok(4_000));
        assert_eq!(parse_bytes("4KB"), Ok(4_000));
        assert_eq!(parse_bytes("1.5MiB"), Ok(1_572_864));
        assert_eq!(parse_bytes("1.5 MiB"), Ok(1_572_864));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("1gib"), Ok(1 << 30));
    }

    #[test]
    fn bad_byte_sizes() {
        for bad in ["", "-1", "1.1KiB", "4XB", "KiB", "99999999999TiB"] {
            let e = parse_bytes(bad).unwrap_err();
            assert_eq!(e.input, bad);
            assert!(e.to_string().starts_with("invalid byte size"), "{e}");
        }
    }

    #[test]
    fn durations_format_with_three_figures() {
        assert_eq!(format_duration_us(0), "0us");
        assert_eq!(format_duration_us(850), "850us");
        assert_eq!(format_duration_us(999), "999us");
        assert_eq!(format_duration_us(1_000), "1.00ms");
        assert_eq!(format_duration_us(1_250), "1.25ms");
        assert_eq!(format_duration_us(12_345), "12.3ms");
        assert_eq!(format_duration_us(123_456), "123ms");
        assert_eq!(format_duration_us(999_600), "1.00s");
        assert_eq!(format_duration_us(2_500_000), "2.50s");
        assert_eq!(format_duration_us(59_900_000), "59.9s");
        assert_eq!(format_duration_us(59_960_000), "1m00s");
        assert_eq!(format_duration_us(65_000_000), "1m05s");
        assert_eq!(format_duration_us(7_384_000_000), "2h03m04s");
    }

    #[test]
    fn formatted_durations_parse_back() {
        for v in [850, 1_250, 12_300, 2_500_000, 65_000_000, 7_384_000_000] {
            let s = format_duration_us(v);
            assert_eq!(parse_duration(&s), Ok(us(v)), "{s}");
        }
    }

    #[test]
    fn counts_format_compactly() {
        assert_eq!(format_count(0.0), "0");
        assert_eq!(format_count(850.0), "850");
        assert_eq!(format_count(12.5), "12.5");
        assert_eq!(format_count(12_345.0), "12.3k");
        assert_eq!(format_count(999_999.0), "1.00M");
        assert_eq!(format_count(1_200_000.0), "1.20M");
        assert_eq!(format_count(3e9), "3.00G");
        assert_eq!(format_count(-1_500.0), "-1.50k");
        assert_eq!(parse_count(&format_count(1_200_000.0)), Ok(1_200_000));
    }

    #[test]
    fn bytes_format_in_binary_units() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(4_096), "4.0 KiB");
        assert_eq!(format_bytes(1_572_864), "1.5 MiB");
        assert_eq!(format_bytes(125_934_387), "120.1 MiB");
        assert_eq!(format_bytes((1 << 20) - 1), "1.0 MiB");
        assert_eq!(format_bytes(1 << 40), "1.0 TiB");
        assert_eq!(parse_bytes(&format_bytes(1_572_864)), Ok(1_572_864));
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(format_thousands(0), "0");
        assert_eq!(format_thousands(999), "999");
        assert_eq!(format_thousands(1_000), "1,000");
        assert_eq!(format_thousands(1_234_567), "1,234,567");
        assert_eq!(format_thousands(u64::MAX), "18,446,744,073,709,551,615");
    }
}

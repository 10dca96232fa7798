//! Sizes and rates as people type and read them: the one parser and the one formatter the CLI,
//! the GUI, the status page and config files share.
//!
//! Before this module three conventions disagreed (`4MB` was 4 MiB in one place and 4,000,000
//! bytes in another; the CLI read `100M` as Mbit/s while the GUI showed and took MB/s and JSON
//! carried bytes/s). The units, decided once (README "Units"):
//!
//! - **Sizes**: a plain number is bytes. `K`, `M`, `G`, `T` and `KiB`, `MiB`, `GiB`, `TiB` are
//!   powers of 1024; `KB`, `MB`, `GB`, `TB` are powers of 1000. Letters are case-insensitive.
//! - **Rates are bytes per second**, shown with decimal prefixes (`12.5 MB/s`, [`human_rate`])
//!   wherever a person reads them, and a plain number is bytes per second, as in JSON. Input
//!   takes the shown form (`12.5MB/s`, `12MBps`, `12MiB/s`) or a link speed in **bits** spelled
//!   with a small `b` or `bit` (`100Mbit/s`, `100Mbps`, `100Mb/s`). A bare prefix (`100M`) is
//!   refused: it used to mean bits here and means bytes elsewhere, and a silent factor of 8 in a
//!   bandwidth limit is worse than one error that names both spellings. Prefixes are powers of
//!   1000, or of 1024 with an `i` (`Mi`, `MiB/s`). Only the `b`/`B` is case-sensitive.
//!
//! Numbers may have a decimal fraction (`1.5G`, `2.5MB/s`) and the arithmetic is exact: a size
//! must come out as a whole number of bytes, a rate is rounded down to whole bytes per second
//! and must be at least 1 byte per second. Input may come from a settings file or the settings
//! page, so nothing here panics on it and errors quote at most a few dozen characters of it.
//!
//! The `format_*` helpers print values that these parsers read back unchanged; the `human_*`
//! ones round for people (progress lines, the tray, the status page's script uses the same rule).

/// Why a size or rate could not be read. The message gives examples of what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitsError {
    #[error(
        "{input:?} is not a size: {why}; give bytes or a number with a unit, e.g. 4M or 4MiB (4 x 1024 x 1024 bytes), 4MB (4,000,000 bytes), 1.5G"
    )]
    Size { input: String, why: String },
    #[error(
        "{input:?} is not a rate: {why}; give bytes per second, e.g. 12MB/s or 12MiB/s, or a link speed in bits, e.g. 100Mbit/s or 100Mbps"
    )]
    Rate { input: String, why: String },
}

/// Longest piece of the input quoted back in an error.
const QUOTED: usize = 40;

/// Parse a size in bytes; see the module doc for the units.
pub fn parse_size(s: &str) -> Result<u64, UnitsError> {
    let err = |why: &str| UnitsError::Size { input: quote(s), why: why.to_string() };
    let (num, unit) = parse_number(s).map_err(|why| err(&why))?;
    let mult = size_multiplier(unit).ok_or_else(|| err(&format!("unknown unit {:?}", quote(unit))))?;
    let bytes = num.mantissa.checked_mul(mult).ok_or_else(|| err("it is too large"))?;
    if bytes % num.scale != 0 {
        return Err(err("it is not a whole number of bytes"));
    }
    u64::try_from(bytes / num.scale).map_err(|_| err("it is too large"))
}

/// Parse a rate and return it in **bytes** per second; see the module doc for the units.
pub fn parse_rate(s: &str) -> Result<u64, UnitsError> {
    let err = |why: &str| UnitsError::Rate { input: quote(s), why: why.to_string() };
    let (num, unit) = parse_number(s).map_err(|why| err(&why))?;
    let (mult, bits) = match rate_unit(unit) {
        RateUnit::Known { mult, bits } => (mult, bits),
        RateUnit::Ambiguous => {
            let n = quote(s.trim().trim_end_matches("/s").trim_end());
            return Err(err(&format!("it does not say bits or bytes (write {n}bit/s or {n}B/s)")));
        }
        RateUnit::Unknown => return Err(err(&format!("unknown unit {:?}", quote(unit)))),
    };
    let value = num.mantissa.checked_mul(mult).ok_or_else(|| err("it is too large"))?;
    let divisor = num.scale * if bits { 8 } else { 1 };
    let bytes = u64::try_from(value / divisor).map_err(|_| err("it is too large"))?;
    if bytes == 0 {
        return Err(err("it is below 1 byte (8 bits) per second"));
    }
    Ok(bytes)
}

/// A size that [`parse_size`] reads back exactly: the largest binary unit that divides it
/// (`4 MiB`), else the largest decimal one (`4 MB`), else bytes (`4097 B`).
pub fn format_size(bytes: u64) -> String {
    const BINARY: [(u64, &str); 4] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    const DECIMAL: [(u64, &str); 4] = [(TERA, "TB"), (GIGA, "GB"), (MEGA, "MB"), (KILO, "KB")];
    for (unit, name) in BINARY.into_iter().chain(DECIMAL) {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{} {name}", bytes / unit);
        }
    }
    format!("{bytes} B")
}

/// A rate in bytes per second as [`parse_rate`] reads it back exactly, in the largest decimal
/// unit it reaches (`12.5 MB/s`; a decimal unit always gives a finite fraction).
pub fn format_rate(bytes_per_sec: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(TERA, "TB/s"), (GIGA, "GB/s"), (MEGA, "MB/s"), (KILO, "kB/s")];
    for (unit, name) in UNITS {
        if bytes_per_sec >= unit {
            let whole = bytes_per_sec / unit;
            let frac = bytes_per_sec % unit;
            if frac == 0 {
                return format!("{whole} {name}");
            }
            let digits = unit.ilog10() as usize;
            let frac = format!("{frac:0digits$}");
            return format!("{whole}.{} {name}", frac.trim_end_matches('0'));
        }
    }
    format!("{bytes_per_sec} B/s")
}

/// A rate in bytes per second rounded for people: decimal prefixes and three significant
/// digits (`12.5 MB/s`, `980 kB/s`, `0 B/s`). The status page's script (`fmtRate` in
/// `assets/web/app.js`) applies the same rule, so the page, the tray and the plain output agree.
pub fn human_rate(bytes_per_sec: f64) -> String {
    const UNITS: [&str; 6] = ["B/s", "kB/s", "MB/s", "GB/s", "TB/s", "PB/s"];
    if !bytes_per_sec.is_finite() || bytes_per_sec <= 0.0 {
        return "0 B/s".into();
    }
    let mut v = bytes_per_sec;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    let decimals = match (u, v) {
        (0, _) => 0,
        (_, v) if v < 10.0 => 2,
        (_, v) if v < 100.0 => 1,
        _ => 0,
    };
    format!("{v:.decimals$} {}", UNITS[u])
}

/// `1.50 GiB`-style rounding for summaries and logs (not for reading back).
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else if v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

const KILO: u64 = 1000;
const MEGA: u64 = KILO * KILO;
const GIGA: u64 = MEGA * KILO;
const TERA: u64 = GIGA * KILO;

/// A non-negative decimal number as `mantissa / scale`, kept exact.
struct Number {
    mantissa: u128,
    /// A power of ten.
    scale: u128,
}

/// Digits allowed in a number: enough for any u64 with a fraction, few enough for u128.
const MAX_DIGITS: usize = 30;

/// Split `s` into its leading decimal number and the unit after it (trimmed).
fn parse_number(s: &str) -> Result<(Number, &str), String> {
    let t = s.trim();
    let end = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (digits, unit) = t.split_at(end);
    if digits.is_empty() {
        return Err(if t.starts_with('-') {
            "it is negative".into()
        } else {
            "it does not start with a number".into()
        });
    }
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if frac.contains('.') || (int.is_empty() && frac.is_empty()) {
        return Err(format!("{:?} is not a number", quote(digits)));
    }
    // Trailing zeros of the fraction change nothing but would cost digits.
    let frac = frac.trim_end_matches('0');
    let all = format!("{int}{frac}");
    let all = all.trim_start_matches('0');
    if all.len() > MAX_DIGITS || frac.len() > MAX_DIGITS {
        return Err("it has too many digits".into());
    }
    let mantissa =
        if all.is_empty() { 0 } else { all.parse::<u128>().map_err(|_| "it is not a number".to_string())? };
    let scale = 10u128.pow(frac.len() as u32);
    Ok((Number { mantissa, scale }, unit.trim()))
}

/// Bytes per unit of a size, or `None` for an unknown unit.
fn size_multiplier(unit: &str) -> Option<u128> {
    let lower = unit.to_ascii_lowercase();
    let (prefix, rest) = split_prefix(&lower)?;
    let (binary, rest) = match rest.strip_prefix('i') {
        Some(r) if prefix > 0 => (true, r),
        _ => (false, rest),
    };
    let byte = match rest {
        "" => false,
        "b" => true,
        _ => return None,
    };
    // A bare prefix (`4M`) is binary, as in most tools that take sizes; `MB` is decimal.
    let base: u128 = if binary || !byte { 1024 } else { 1000 };
    Some(base.pow(prefix))
}

/// What a rate's unit says: units per second and whether they are bits.
enum RateUnit {
    Known {
        mult: u128,
        bits: bool,
    },
    /// A prefix without `B` or `bit` (`100M`): bits or bytes, nobody can tell.
    Ambiguous,
    Unknown,
}

fn rate_unit(unit: &str) -> RateUnit {
    let per_unit = unit.strip_suffix("/s").or_else(|| unit.strip_suffix("ps")).unwrap_or(unit);
    // "Mbps" with the "ps" taken off leaves "Mb"; a bare "/s" with nothing else is no unit.
    if per_unit.is_empty() && !unit.is_empty() {
        return RateUnit::Unknown;
    }
    let Some((prefix, rest)) = split_prefix(per_unit) else { return RateUnit::Unknown };
    let (binary, rest) = match rest.strip_prefix('i') {
        Some(r) if prefix > 0 => (true, r),
        _ => (false, rest),
    };
    let bits = match rest {
        "B" => false,
        // A plain number is bytes per second, as in JSON and `gui.json`.
        "" if prefix == 0 => false,
        "" => return RateUnit::Ambiguous,
        "b" => true,
        r if r.eq_ignore_ascii_case("bit") || r.eq_ignore_ascii_case("bits") => true,
        _ => return RateUnit::Unknown,
    };
    let base: u128 = if binary { 1024 } else { 1000 };
    RateUnit::Known { mult: base.pow(prefix), bits }
}

/// The power a leading `k`/`m`/`g`/`t` (any case) stands for, and what follows it.
fn split_prefix(unit: &str) -> Option<(u32, &str)> {
    let mut chars = unit.chars();
    let power = match chars.next().map(|c| c.to_ascii_lowercase()) {
        Some('k') => 1,
        Some('m') => 2,
        Some('g') => 3,
        Some('t') => 4,
        _ => return Some((0, unit)),
    };
    Some((power, chars.as_str()))
}

fn quote(s: &str) -> String {
    s.chars().take(QUOTED).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    const GIB: u64 = 1024 * MIB;

    #[test]
    fn sizes_bare_prefixes_and_iec_are_binary_si_is_decimal() {
        assert_eq!(parse_size("65536").unwrap(), 65536);
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("12B").unwrap(), 12);
        assert_eq!(parse_size("4M").unwrap(), 4 * MIB);
        assert_eq!(parse_size("4MiB").unwrap(), 4 * MIB);
        assert_eq!(parse_size("4 mib").unwrap(), 4 * MIB);
        assert_eq!(parse_size("4MB").unwrap(), 4_000_000);
        assert_eq!(parse_size("4mb").unwrap(), 4_000_000);
        assert_eq!(parse_size("512k").unwrap(), 512 * KIB);
        assert_eq!(parse_size("512KB").unwrap(), 512_000);
        assert_eq!(parse_size("1G").unwrap(), GIB);
        assert_eq!(parse_size("1GB").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("1T").unwrap(), 1024 * GIB);
        assert_eq!(parse_size("1TiB").unwrap(), 1024 * GIB);
        assert_eq!(parse_size("1TB").unwrap(), 1_000_000_000_000);
        assert_eq!(parse_size("1.5G").unwrap(), 3 * GIB / 2);
        assert_eq!(parse_size(" 2.50MB ").unwrap(), 2_500_000);
    }

    #[test]
    fn sizes_refuse_what_is_not_a_whole_number_of_bytes() {
        for bad in ["", "M", "4X", "4Mbit", "-1", "-1M", "1.5", "0.1K", "1.2.3M", "4 M B", "99999999999999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
        let e = parse_size("4X").unwrap_err().to_string();
        assert!(e.contains("unknown unit \"X\"") && e.contains("e.g. 4M"), "{e}");
        assert!(parse_size("-1M").unwrap_err().to_string().contains("negative"));
        assert!(parse_size(&"9".repeat(500)).unwrap_err().to_string().len() < 300, "long input is not echoed whole");
    }

    #[test]
    fn rates_with_a_small_b_or_bit_are_bits() {
        for bits in ["100Mbit", "100Mbit/s", "100Mbits/s", "100Mbps", "100Mb/s", "100 Mbit/s", "100mbit/s"] {
            assert_eq!(parse_rate(bits).unwrap(), 12_500_000, "{bits}");
        }
        assert_eq!(parse_rate("8kbit/s").unwrap(), 1000);
        assert_eq!(parse_rate("1Gbps").unwrap(), 125_000_000);
        assert_eq!(parse_rate("1Tbit/s").unwrap(), 125_000_000_000);
        assert_eq!(parse_rate("800bit/s").unwrap(), 100);
        assert_eq!(parse_rate("2.5Mbit/s").unwrap(), 312_500);
        assert_eq!(parse_rate("8Mibit/s").unwrap(), MIB);
    }

    #[test]
    fn rates_with_a_capital_b_or_no_unit_are_bytes() {
        assert_eq!(parse_rate("12MB/s").unwrap(), 12_000_000);
        assert_eq!(parse_rate("12MBps").unwrap(), 12_000_000);
        assert_eq!(parse_rate("12MB").unwrap(), 12_000_000);
        assert_eq!(parse_rate("12MiB/s").unwrap(), 12 * MIB);
        assert_eq!(parse_rate("2.5 MB/s").unwrap(), 2_500_000);
        assert_eq!(parse_rate("100B/s").unwrap(), 100);
        assert_eq!(parse_rate("1TB/s").unwrap(), 1_000_000_000_000);
        // A plain number is bytes per second, as the JSON fields and gui.json hold it.
        assert_eq!(parse_rate("800").unwrap(), 800);
        assert_eq!(parse_rate("7").unwrap(), 7);
    }

    #[test]
    fn a_bare_prefix_is_refused_with_both_spellings() {
        for bare in ["100M", "100m", "8k", "1G", "2.5M", "100M/s", "100 Mi"] {
            let e = parse_rate(bare).unwrap_err().to_string();
            assert!(e.contains("does not say bits or bytes"), "{bare:?}: {e}");
        }
        let e = parse_rate("100M").unwrap_err().to_string();
        assert!(e.contains("100Mbit/s") && e.contains("100MB/s"), "{e}");
        assert!(parse_rate("100M/s").unwrap_err().to_string().contains("write 100Mbit/s or 100MB/s"));
    }

    #[test]
    fn rates_refuse_nonsense_and_zero() {
        for bad in ["fast", "10X", "0", "7bit/s", "0MB/s", "/s", "M/s", "-1M", "12MB/h", "1e9", ""] {
            assert!(parse_rate(bad).is_err(), "{bad:?} accepted");
        }
        let e = parse_rate("10X").unwrap_err().to_string();
        assert!(e.contains("100Mbit/s") && e.contains("12MB/s"), "{e}");
        assert!(parse_rate("0").unwrap_err().to_string().contains("below 1 byte"));
    }

    #[test]
    fn formatted_values_read_back_unchanged() {
        assert_eq!(format_size(4 * MIB), "4 MiB");
        assert_eq!(format_size(4_000_000), "4 MB");
        assert_eq!(format_size(4097), "4097 B");
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_rate(12_500_000), "12.5 MB/s");
        assert_eq!(format_rate(1_000), "1 kB/s");
        assert_eq!(format_rate(999), "999 B/s");
        assert_eq!(format_rate(1_000_001), "1.000001 MB/s");
        for n in [0, 1, 999, 1024, 4097, 4 * MIB, 1_500_000, 3 * GIB / 2, u64::MAX] {
            assert_eq!(parse_size(&format_size(n)).unwrap(), n, "{}", format_size(n));
        }
        for n in [1, 999, 1000, 12_345_678, 125_000_000_000, u64::MAX] {
            assert_eq!(parse_rate(&format_rate(n)).unwrap(), n, "{}", format_rate(n));
        }
    }

    #[test]
    fn human_rates_are_decimal_bytes_with_three_digits() {
        assert_eq!(human_rate(0.0), "0 B/s");
        assert_eq!(human_rate(f64::NAN), "0 B/s");
        assert_eq!(human_rate(-3.0), "0 B/s");
        assert_eq!(human_rate(999.4), "999 B/s");
        assert_eq!(human_rate(12_500_000.0), "12.5 MB/s");
        assert_eq!(human_rate(2.5 * 1024.0 * 1024.0), "2.62 MB/s");
        assert_eq!(human_rate(980_000.0), "980 kB/s");
        assert_eq!(human_rate(1.25e9), "1.25 GB/s");
        // What a person reads is what they may type back (to the rounding shown).
        for shown in ["12.5 MB/s", "980 kB/s", "1.25 GB/s"] {
            assert!(parse_rate(shown).is_ok(), "{shown}");
        }
    }

    #[test]
    fn human_size_rounds() {
        assert_eq!(human_size(5), "5 B");
        assert_eq!(human_size(4 * MIB), "4 MiB");
        assert_eq!(human_size(1536 * MIB), "1.50 GiB");
    }
}

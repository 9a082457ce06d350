//! The value generators behind `${gen.NAME}`, each writing straight into the output buffer:
//! random alphanumeric strings (fast enough for 1 MiB bodies), v4 UUIDs, names and e-mail
//! addresses from small built-in lists, and the wall-clock timestamps.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::{Rng, RngExt};

use super::vu::VuRng;

/// First names for `${gen.first_name}`, `${gen.name}` and `${gen.email}` (ASCII, so they
/// work in e-mail addresses as they are).
pub(super) const FIRST_NAMES: &[&str] = &[
    "Ada", "Alan", "Amara", "Ana", "Arjun", "Ben", "Carlos", "Chen", "Chloe", "Daniel", "Diego",
    "Elena", "Emma", "Fatima", "Grace", "Hana", "Hugo", "Ines", "Ivan", "Jamal", "Jin", "Julia",
    "Kai", "Kenji", "Lars", "Layla", "Leo", "Lina", "Lucas", "Maria", "Mateo", "Mei", "Mia",
    "Noah", "Nora", "Omar", "Priya", "Rosa", "Sam", "Sara", "Sofia", "Tariq", "Theo", "Yara",
    "Yuki", "Zoe",
];

/// Last names for `${gen.last_name}`, `${gen.name}` and `${gen.email}`.
pub(super) const LAST_NAMES: &[&str] = &[
    "Adams", "Ahmed", "Alvarez", "Andersen", "Baker", "Chen", "Costa", "Dubois", "Fischer",
    "Garcia", "Gupta", "Hansen", "Ibrahim", "Ito", "Jensen", "Kim", "Kowalski", "Lee", "Lopez",
    "Martin", "Mensah", "Meyer", "Moreau", "Muller", "Nakamura", "Nguyen", "Novak", "Okafor",
    "Olsen", "Patel", "Perez", "Rossi", "Santos", "Schmidt", "Silva", "Singh", "Smith", "Tanaka",
    "Taylor", "Wang", "Weber", "Williams", "Wilson", "Yilmaz", "Zhang",
];

/// Domains reserved for documentation (RFC 2606): generated addresses never reach anyone.
const EMAIL_DOMAINS: &[&str] = &["example.com", "example.net", "example.org"];

/// The 62 characters of `${gen.string(N)}`.
const ALPHANUMERIC: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Writes formatted text into `out`. `Vec<u8>`'s `io::Write` cannot fail.
pub(super) fn put(out: &mut Vec<u8>, args: std::fmt::Arguments<'_>) {
    out.write_fmt(args)
        .expect("writing to a Vec<u8> cannot fail");
}

pub(super) fn pick<'a>(list: &[&'a str], rng: &mut VuRng) -> &'a str {
    list[rng.random_range(0..list.len())]
}

/// Appends `len` random alphanumeric bytes.
///
/// Random bytes are drawn in bulk and mapped onto the 62 characters by multiply-shift
/// (`b * 62 >> 8`), so each character comes from 4 or 5 of the 256 byte values: slightly
/// uneven, which does not matter for padding and payloads, and several times faster than a
/// rejection-sampled draw per character (`rand::distr::Alphanumeric`), which matters when
/// every request carries a 1 MiB body.
pub(super) fn alphanumeric(out: &mut Vec<u8>, len: usize, rng: &mut VuRng) {
    let start = out.len();
    out.resize(start + len, 0);
    let tail = &mut out[start..];
    rng.fill_bytes(tail);
    for b in tail {
        *b = ALPHANUMERIC[(usize::from(*b) * ALPHANUMERIC.len()) >> 8];
    }
}

/// Appends a random (version 4) UUID in lower-case hyphenated form.
pub(super) fn uuid_v4(out: &mut Vec<u8>, rng: &mut VuRng) {
    let bytes: [u8; 16] = rng.random();
    let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
}

/// Appends `first.last.N@example.org`-style addresses: lower case, with a number so that
/// most addresses of a run differ.
pub(super) fn email(out: &mut Vec<u8>, rng: &mut VuRng) {
    let first = pick(FIRST_NAMES, rng);
    let last = pick(LAST_NAMES, rng);
    let n: u32 = rng.random_range(0..100_000);
    let domain = pick(EMAIL_DOMAINS, rng);
    let at = out.len();
    put(out, format_args!("{first}.{last}.{n}@{domain}"));
    out[at..].make_ascii_lowercase();
}

fn since_epoch() -> std::time::Duration {
    // A clock before 1970 is a broken clock; report the epoch rather than fail a request.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Unix seconds.
pub(super) fn timestamp(out: &mut Vec<u8>) {
    put(out, format_args!("{}", since_epoch().as_secs()));
}

/// Unix milliseconds.
pub(super) fn timestamp_ms(out: &mut Vec<u8>) {
    put(out, format_args!("{}", since_epoch().as_millis()));
}

/// RFC 3339 UTC with milliseconds, like `2025-01-31T12:34:56.789Z`.
pub(super) fn iso8601(out: &mut Vec<u8>) {
    put(
        out,
        format_args!("{}", humantime::format_rfc3339_millis(SystemTime::now())),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn alphanumeric_has_the_length_and_every_character() {
        let mut rng = VuRng::seed_from_u64(1);
        let mut out = b"prefix".to_vec();
        alphanumeric(&mut out, 1 << 20, &mut rng);
        assert_eq!(out.len(), 6 + (1 << 20));
        assert_eq!(&out[..6], b"prefix", "appends");
        let body = &out[6..];
        assert!(body.iter().all(u8::is_ascii_alphanumeric));
        let mut counts = [0usize; 256];
        body.iter().for_each(|&b| counts[usize::from(b)] += 1);
        for &c in ALPHANUMERIC {
            // Expected 1 MiB / 62 = 16,912; 4/256 and 5/256 give 16,384 and 20,480.
            let n = counts[usize::from(c)];
            assert!(
                (15_500..21_500).contains(&n),
                "{} seen {n} times",
                c as char
            );
        }
        alphanumeric(&mut out, 0, &mut rng);
        assert_eq!(out.len(), 6 + (1 << 20));
    }

    #[test]
    fn uuid_is_version_4_and_random() {
        let mut rng = VuRng::seed_from_u64(2);
        let mut out = Vec::new();
        uuid_v4(&mut out, &mut rng);
        let s = std::str::from_utf8(&out).unwrap();
        let id = uuid::Uuid::parse_str(s).unwrap();
        assert_eq!(id.get_version_num(), 4);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(s.len(), 36);
        assert_eq!(s, s.to_lowercase());
        let mut other = Vec::new();
        uuid_v4(&mut other, &mut rng);
        assert_ne!(out, other);
    }

    #[test]
    fn email_is_lower_case_at_a_reserved_domain() {
        let mut rng = VuRng::seed_from_u64(3);
        for _ in 0..200 {
            let mut out = Vec::new();
            email(&mut out, &mut rng);
            let s = String::from_utf8(out).unwrap();
            let (local, domain) = s.split_once('@').unwrap();
            assert!(EMAIL_DOMAINS.contains(&domain), "{s}");
            let parts: Vec<&str> = local.split('.').collect();
            assert_eq!(parts.len(), 3, "{s}");
            assert!(
                FIRST_NAMES.iter().any(|f| f.to_lowercase() == parts[0]),
                "{s}"
            );
            assert!(
                LAST_NAMES.iter().any(|l| l.to_lowercase() == parts[1]),
                "{s}"
            );
            assert!(parts[2].parse::<u32>().unwrap() < 100_000);
        }
    }

    #[test]
    fn timestamps_agree_with_the_clock() {
        let before = since_epoch();
        let (mut s, mut ms, mut iso) = (Vec::new(), Vec::new(), Vec::new());
        timestamp(&mut s);
        timestamp_ms(&mut ms);
        iso8601(&mut iso);
        let after = since_epoch();
        let s: u64 = String::from_utf8(s).unwrap().parse().unwrap();
        let ms: u128 = String::from_utf8(ms).unwrap().parse().unwrap();
        assert!((before.as_secs()..=after.as_secs()).contains(&s));
        assert!((before.as_millis()..=after.as_millis()).contains(&ms));
        let iso = String::from_utf8(iso).unwrap();
        let parsed = humantime::parse_rfc3339(&iso).unwrap();
        let at = parsed.duration_since(UNIX_EPOCH).unwrap();
        assert!(
            at.as_millis() + 1 >= before.as_millis() && at <= after,
            "{iso}"
        );
        assert_eq!(iso.len(), "2025-01-31T12:34:56.789Z".len(), "{iso}");
        assert!(iso.ends_with('Z'));
    }

    #[test]
    fn lists_are_ascii_names() {
        for n in FIRST_NAMES.iter().chain(LAST_NAMES) {
            assert!(n.chars().all(|c| c.is_ascii_alphabetic()), "{n}");
            assert!(n.chars().next().unwrap().is_ascii_uppercase(), "{n}");
        }
    }
}

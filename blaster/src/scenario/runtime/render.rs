//! Filling a [`Template`] for one VU: literals, `${data.SOURCE.FIELD}` (the iteration's row,
//! or the VU's geo-walk position), `${vars.NAME}` and `${gen.…}`. Output is appended to the
//! caller's buffer; nothing is allocated beyond what the output needs.

use rand::RngExt;

use super::generate::{self, put};
use super::{Shared, VuState};
use crate::scenario::model::{DataKind, Generator, Segment, Template};

impl VuState {
    /// Renders `t` and APPENDS it to `out`. An unset `${vars.NAME}` renders as "" and is
    /// counted ([`VuState::unset_vars`]). A geo walk read here moves once for this call, so
    /// `lat` and `lon` in one template are one position.
    pub fn render(&mut self, t: &Template, shared: &Shared, out: &mut Vec<u8>) {
        self.renders += 1;
        for seg in &t.segments {
            match seg {
                Segment::Literal(s) => out.extend_from_slice(s.as_bytes()),
                Segment::Data { source, field } => self.data(source, field, shared, out),
                Segment::Var(name) => match self.var(name) {
                    Some(v) => out.extend_from_slice(v.as_bytes()),
                    None => self.unset_vars += 1,
                },
                Segment::Gen(g) => self.generate(g, shared, out),
            }
        }
    }

    /// Renders `t` into a new string.
    pub fn render_string(&mut self, t: &Template, shared: &Shared) -> String {
        let mut out = Vec::new();
        self.render(t, shared, &mut out);
        // Every part is UTF-8: literals and data are `String`s, variables are set from
        // `&str`, generators write ASCII.
        String::from_utf8(out).expect("rendered templates are UTF-8")
    }

    fn data(&mut self, source: &str, field: &str, shared: &Shared, out: &mut Vec<u8>) {
        // The parser checked every reference against the file; a template from elsewhere
        // naming something unknown renders as nothing.
        let Some((slot, ds)) = shared.source(source) else {
            return;
        };
        match &ds.kind {
            DataKind::Table { columns, rows, .. } => {
                let Some(col) = columns.iter().position(|c| c == field) else {
                    return;
                };
                let row = self.row(slot, ds, shared);
                if let Some(value) = rows.get(row).and_then(|r| r.get(col)) {
                    out.extend_from_slice(value.as_bytes());
                }
            }
            DataKind::GeoWalk(g) => {
                let Some(walker) = self.geo[slot].as_mut() else {
                    return;
                };
                if walker.last_render != self.renders {
                    walker.step(g, &mut self.rng);
                    walker.last_render = self.renders;
                }
                let (lat, lon) = walker.position(g);
                // 7 decimals: about a centimetre, finer than any step.
                match field {
                    "lat" => put(out, format_args!("{lat:.7}")),
                    "lon" => put(out, format_args!("{lon:.7}")),
                    _ => {}
                }
            }
        }
    }

    fn generate(&mut self, g: &Generator, shared: &Shared, out: &mut Vec<u8>) {
        let rng = &mut self.rng;
        match g {
            Generator::Counter => put(out, format_args!("{}", shared.next_counter())),
            Generator::Vu => put(out, format_args!("{}", self.vu)),
            Generator::Iteration => put(out, format_args!("{}", self.iteration)),
            Generator::Uuid => generate::uuid_v4(out, rng),
            Generator::Int { min, max } => {
                put(out, format_args!("{}", rng.random_range(*min..=*max)))
            }
            Generator::Float { min, max } => {
                let v = if max > min {
                    rng.random_range(*min..*max)
                } else {
                    *min
                };
                put(out, format_args!("{v}"));
            }
            Generator::String { len } => {
                let len = usize::try_from(*len).unwrap_or(usize::MAX);
                generate::alphanumeric(out, len, rng);
            }
            Generator::FirstName => {
                out.extend_from_slice(generate::pick(generate::FIRST_NAMES, rng).as_bytes())
            }
            Generator::LastName => {
                out.extend_from_slice(generate::pick(generate::LAST_NAMES, rng).as_bytes())
            }
            Generator::Name => {
                let first = generate::pick(generate::FIRST_NAMES, rng);
                let last = generate::pick(generate::LAST_NAMES, rng);
                put(out, format_args!("{first} {last}"));
            }
            Generator::Email => generate::email(out, rng),
            Generator::Timestamp => generate::timestamp(out),
            Generator::TimestampMs => generate::timestamp_ms(out),
            Generator::Iso8601 => generate::iso8601(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use super::super::generate::{FIRST_NAMES, LAST_NAMES};
    use super::super::geo::tests::haversine;
    use super::*;
    use crate::scenario::runtime::testing::{file_with, parse, tpl, vu_for};

    #[test]
    fn literals_vars_and_unset_vars() {
        let (shared, mut vu) = vu_for(file_with(""));
        let t = tpl("Bearer ${vars.token}!");
        assert_eq!(vu.render_string(&t, &shared), "Bearer !");
        assert_eq!(vu.unset_vars(), 1);
        vu.set_var("token", "t0k");
        assert_eq!(vu.render_string(&t, &shared), "Bearer t0k!");
        assert_eq!(vu.unset_vars(), 1);
        // Appends to what the buffer holds.
        let mut out = b"GET ".to_vec();
        vu.render(&tpl("/a/${vars.token}"), &shared, &mut out);
        assert_eq!(out, b"GET /a/t0k");
        assert_eq!(vu.render_string(&tpl("$${literal}"), &shared), "${literal}");
    }

    #[test]
    fn counter_is_run_wide_from_one() {
        let shared = Shared::new(Arc::new(file_with(""))).unwrap();
        let mut a = VuState::new(1, 0, 1, &shared).unwrap();
        let mut b = VuState::new(2, 0, 1, &shared).unwrap();
        let t = tpl("${gen.counter}");
        let seen = [
            a.render_string(&t, &shared),
            b.render_string(&t, &shared),
            a.render_string(&tpl("${gen.counter},${gen.counter}"), &shared),
        ];
        assert_eq!(seen, ["1", "2", "3,4"]);
    }

    #[test]
    fn vu_number() {
        let shared = Shared::new(Arc::new(file_with(""))).unwrap();
        let mut vu = VuState::new(17, 0, 1, &shared).unwrap();
        assert_eq!(vu.render_string(&tpl("vu=${gen.vu}"), &shared), "vu=17");
    }

    #[test]
    fn int_covers_its_closed_range() {
        let (shared, mut vu) = vu_for(file_with(""));
        let t = tpl("${gen.int(-2,2)}");
        let seen: HashSet<i64> = (0..500)
            .map(|_| vu.render_string(&t, &shared).parse().unwrap())
            .collect();
        assert_eq!(seen, HashSet::from([-2, -1, 0, 1, 2]));
        assert_eq!(vu.render_string(&tpl("${gen.int(7,7)}"), &shared), "7");
    }

    #[test]
    fn float_stays_in_its_half_open_range() {
        let (shared, mut vu) = vu_for(file_with(""));
        let t = tpl("${gen.float(1.5,2.5)}");
        let values: Vec<f64> = (0..2000)
            .map(|_| vu.render_string(&t, &shared).parse().unwrap())
            .collect();
        assert!(values.iter().all(|v| (1.5..2.5).contains(v)));
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert!((mean - 2.0).abs() < 0.03, "mean {mean}");
        assert_eq!(vu.render_string(&tpl("${gen.float(3,3)}"), &shared), "3");
    }

    #[test]
    fn string_of_one_mebibyte_is_written_in_place() {
        let (shared, mut vu) = vu_for(file_with(""));
        let mut out = Vec::with_capacity((1 << 20) + 16);
        let ptr = out.as_ptr();
        vu.render(&tpl(r#"{"pad":"${gen.string(1MiB)}"}"#), &shared, &mut out);
        assert_eq!(out.len(), (1 << 20) + 10);
        assert_eq!(out.as_ptr(), ptr, "no reallocation of a big enough buffer");
        assert!(out[8..out.len() - 2].iter().all(u8::is_ascii_alphanumeric));
        assert_eq!(
            vu.render_string(&tpl("${gen.string(16)}"), &shared).len(),
            16
        );
    }

    #[test]
    fn names_and_emails_come_from_the_lists() {
        let (shared, mut vu) = vu_for(file_with(""));
        for _ in 0..100 {
            let first = vu.render_string(&tpl("${gen.first_name}"), &shared);
            assert!(FIRST_NAMES.contains(&first.as_str()), "{first}");
            let last = vu.render_string(&tpl("${gen.last_name}"), &shared);
            assert!(LAST_NAMES.contains(&last.as_str()), "{last}");
            let name = vu.render_string(&tpl("${gen.name}"), &shared);
            let (f, l) = name.split_once(' ').unwrap();
            assert!(
                FIRST_NAMES.contains(&f) && LAST_NAMES.contains(&l),
                "{name}"
            );
            let email = vu.render_string(&tpl("${gen.email}"), &shared);
            assert!(
                email.contains('@') && email == email.to_lowercase(),
                "{email}"
            );
        }
        let names: HashSet<String> = (0..50)
            .map(|_| vu.render_string(&tpl("${gen.name}"), &shared))
            .collect();
        assert!(names.len() > 30, "names vary: {}", names.len());
    }

    #[test]
    fn uuid_and_timestamps() {
        let (shared, mut vu) = vu_for(file_with(""));
        let s = vu.render_string(
            &tpl("${gen.uuid}|${gen.timestamp}|${gen.timestamp_ms}|${gen.iso8601}"),
            &shared,
        );
        let parts: Vec<&str> = s.split('|').collect();
        assert_eq!(
            uuid::Uuid::parse_str(parts[0]).unwrap().get_version_num(),
            4
        );
        let secs: u64 = parts[1].parse().unwrap();
        let ms: u64 = parts[2].parse().unwrap();
        assert!(ms / 1000 >= secs && ms / 1000 <= secs + 1);
        let iso = humantime::parse_rfc3339(parts[3]).unwrap();
        let iso_secs = iso.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert!(iso_secs >= secs && iso_secs <= secs + 1);
    }

    #[test]
    fn same_seed_same_values() {
        let shared = Shared::new(Arc::new(file_with(""))).unwrap();
        let t = tpl("${gen.uuid} ${gen.int(0,1000000)} ${gen.name} ${gen.string(8)}");
        let run = |vu: u64, seed: u64| {
            let mut v = VuState::new(vu, 0, seed, &shared).unwrap();
            (0..3)
                .map(|_| v.render_string(&t, &shared))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1, 5), run(1, 5));
        assert_ne!(run(1, 5), run(2, 5), "the VU number is mixed into the seed");
        assert_ne!(run(1, 5), run(1, 6));
    }

    #[test]
    fn table_fields_from_csv_and_json() {
        let file = parse(
            r#"
[data.users]
file = "data/users.csv"
[data.events]
file = "data/webhook-events.json"
[scenarios.a]
executor = "constant-vus"
vus = 1
duration = "1s"
[[scenarios.a.steps]]
request = "POST http://127.0.0.1/${data.users.email}"
body = '${data.users.password} ${data.events.type} ${data.events.amount}'
"#,
        );
        let (shared, mut vu) = vu_for(file);
        vu.begin_iteration(&shared);
        let t = tpl(
            "${data.users.email} ${data.users.password} ${data.events.type} ${data.events.amount}",
        );
        assert_eq!(
            vu.render_string(&t, &shared),
            "free-tier@example.com secret1 checkout.session.completed 4900"
        );
        vu.begin_iteration(&shared);
        assert_eq!(
            vu.render_string(&t, &shared),
            "starter-tier@example.com secret2 invoice.paid 9900"
        );
    }

    fn geo_file() -> crate::scenario::model::ScenarioFile {
        parse(
            r#"
[data.pos]
kind = "geo-walk"
lat = 52.52
lon = 13.405
radius_m = 300.0
step_m = 7.0
[scenarios.a]
executor = "constant-vus"
vus = 1
duration = "1s"
[[scenarios.a.steps]]
ws_connect = "ws://127.0.0.1/"
[[scenarios.a.steps]]
ws_send = '${data.pos.lat},${data.pos.lon}'
"#,
        )
    }

    fn latlon(s: &str) -> (f64, f64) {
        let (a, b) = s.split_once(',').unwrap();
        (a.parse().unwrap(), b.parse().unwrap())
    }

    #[test]
    fn geo_walk_moves_once_per_render_within_bounds() {
        let (shared, mut vu) = vu_for(geo_file());
        let t = tpl("${data.pos.lat},${data.pos.lon}");
        let centre = (52.52, 13.405);
        let mut prev = latlon(&vu.render_string(&t, &shared));
        let mut far = 0.0f64;
        let mut moved_total = 0.0;
        for _ in 0..10_000 {
            let p = latlon(&vu.render_string(&t, &shared));
            let moved = haversine(prev, p);
            // 7 decimals round to about 1 cm on each axis.
            assert!(moved <= 7.0 + 0.03, "moved {moved} m in one render");
            moved_total += moved;
            far = far.max(haversine(centre, p));
            prev = p;
        }
        assert!(far <= 300.0 + 0.03, "{far} m from the centre");
        // Each step is 3.5..7 m.
        assert!(moved_total > 10_000.0 * 3.4, "moved {moved_total} m in all");
        // Reading lat and lon in separate renders moves twice; within one, once.
        let lat1 = vu.render_string(&tpl("${data.pos.lat}"), &shared);
        let lat2 = vu.render_string(&tpl("${data.pos.lat}"), &shared);
        assert_ne!(lat1, lat2);
    }

    #[test]
    fn geo_walk_is_per_vu() {
        let shared = Shared::new(Arc::new(geo_file())).unwrap();
        let t = tpl("${data.pos.lat},${data.pos.lon}");
        let mut a = VuState::new(1, 0, 9, &shared).unwrap();
        let mut b = VuState::new(2, 0, 9, &shared).unwrap();
        assert_ne!(a.render_string(&t, &shared), b.render_string(&t, &shared));
    }
}

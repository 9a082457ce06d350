//! [`VuState`]: one virtual user's state: its number, iteration, PRNG, captured variables,
//! the data rows it holds this iteration and its position on each geo walk. Created once per
//! VU; rendering and captures reuse its buffers (see `render.rs` and `check.rs`).

use std::sync::Arc;

use rand::{RngExt, SeedableRng};

use super::geo::GeoWalker;
use super::{RuntimeError, Shared};
use crate::scenario::model::{DataKind, DataSource, PickMode};

/// The per-VU pseudo-random generator: rand's `SmallRng` (xoshiro256++; fast, small, not
/// cryptographic, reproducible for a seed on 64-bit targets).
pub type VuRng = rand::rngs::SmallRng;

/// The row a VU picked from one table source, and in which iteration.
#[derive(Debug, Clone, Copy)]
struct Pick {
    /// [`VuState::epoch`] of the pick; `u64::MAX`: never picked.
    epoch: u64,
    row: usize,
}

/// One virtual user's state.
#[derive(Debug)]
pub struct VuState {
    /// 1-based, global across scenarios.
    pub(super) vu: u64,
    /// `${gen.iteration}`: 0 in the first iteration.
    pub(super) iteration: u64,
    /// Iterations begun; rows picked in an earlier epoch are stale.
    epoch: u64,
    pub(super) rng: VuRng,
    /// Names of the variables captures set (the run's list), and this VU's values.
    var_names: Arc<[Box<str>]>,
    vars: Vec<Option<String>>,
    /// Variables set that no capture of the file names.
    extra_vars: Vec<(String, String)>,
    pub(super) unset_vars: u64,
    /// Per data source slot.
    picks: Vec<Pick>,
    /// Per data source slot: the walk of a geo-walk source.
    pub(super) geo: Vec<Option<GeoWalker>>,
    /// Render calls so far: a geo walk steps once per render call that reads it.
    pub(super) renders: u64,
    /// Buffer for rendered check values and expected message contents.
    pub(super) scratch: Vec<u8>,
}

/// Mixes the run seed with the VU number so every VU gets its own stream.
fn vu_seed(seed: u64, vu: u64) -> u64 {
    seed ^ vu.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl VuState {
    /// The state of VU `vu` (1-based, global across scenarios) of scenario `scenario` (an
    /// index into the file's scenarios). `seed` may be one run-wide seed: it is mixed with
    /// `vu`. Fails when a `unique-per-vu` source the scenario reads has fewer than `vu` rows.
    pub fn new(
        vu: u64,
        scenario: usize,
        seed: u64,
        shared: &Shared,
    ) -> Result<VuState, RuntimeError> {
        let file = shared.file();
        // Plans built without a file's scenarios (`blaster run ws://…`) read no data.
        let reads: &[usize] = if file.scenarios.is_empty() {
            &[]
        } else {
            shared
                .unique_reads(scenario)
                .ok_or(RuntimeError::NoSuchScenario {
                    index: scenario,
                    count: file.scenarios.len(),
                })?
        };
        for (slot, ds) in shared.sources().enumerate() {
            if let DataKind::Table { path, rows, .. } = &ds.kind
                && reads.contains(&slot)
                && vu > rows.len() as u64
            {
                return Err(RuntimeError::NotEnoughRows {
                    data: ds.name.clone(),
                    path: path.display().to_string(),
                    rows: rows.len(),
                    vu,
                    scenario: file.scenarios[scenario].name.clone(),
                });
            }
        }
        let mut rng = VuRng::seed_from_u64(vu_seed(seed, vu));
        let geo = shared
            .sources()
            .map(|ds| match &ds.kind {
                DataKind::GeoWalk(g) => Some(GeoWalker::new(g, &mut rng)),
                DataKind::Table { .. } => None,
            })
            .collect();
        let var_names = Arc::clone(shared.var_names());
        Ok(VuState {
            vu,
            iteration: 0,
            epoch: 0,
            rng,
            vars: vec![None; var_names.len()],
            var_names,
            extra_vars: Vec::new(),
            unset_vars: 0,
            picks: vec![
                Pick {
                    epoch: u64::MAX,
                    row: 0
                };
                shared.slot_count()
            ],
            geo,
            renders: 0,
            scratch: Vec::new(),
        })
    }

    /// The VU number (1-based).
    pub fn vu(&self) -> u64 {
        self.vu
    }

    /// The current iteration (0 in the first).
    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    /// Starts an iteration: `${gen.iteration}` counts up (the first is 0) and each table
    /// source gets a new row at its first read in this iteration (sequential: the next row of
    /// the shared cursor; random: a uniformly random row; unique-per-vu: row `vu - 1`).
    pub fn begin_iteration(&mut self, _shared: &Shared) {
        if self.epoch > 0 {
            self.iteration += 1;
        }
        self.epoch += 1;
    }

    /// The row of table source `ds` (in `slot`) for the current iteration, picked at the
    /// first read.
    pub(super) fn row(&mut self, slot: usize, ds: &DataSource, shared: &Shared) -> usize {
        let DataKind::Table { rows, .. } = &ds.kind else {
            return 0;
        };
        let pick = &mut self.picks[slot];
        if pick.epoch != self.epoch {
            let n = rows.len().max(1);
            pick.row = match ds.mode {
                PickMode::Sequential => shared.next_row(slot, n),
                PickMode::Random => self.rng.random_range(0..n),
                // Checked in `new` for the scenario's own reads; wraps for any other.
                PickMode::UniquePerVu => (self.vu.saturating_sub(1) % n as u64) as usize,
            };
            pick.epoch = self.epoch;
        }
        pick.row
    }

    /// The value of variable `name`, if a capture (or [`VuState::set_var`]) set it.
    pub fn var(&self, name: &str) -> Option<&str> {
        match self.var_names.iter().position(|n| **n == *name) {
            Some(i) => self.vars[i].as_deref(),
            None => self
                .extra_vars
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str()),
        }
    }

    /// Sets variable `name` (reusing the buffer of its previous value).
    pub fn set_var(&mut self, name: &str, value: &str) {
        let slot = match self.var_names.iter().position(|n| **n == *name) {
            Some(i) => &mut self.vars[i],
            None => match self.extra_vars.iter_mut().find(|(n, _)| n == name) {
                Some((_, v)) => {
                    v.clear();
                    v.push_str(value);
                    return;
                }
                None => {
                    self.extra_vars.push((name.to_owned(), value.to_owned()));
                    return;
                }
            },
        };
        match slot {
            Some(v) => {
                v.clear();
                v.push_str(value);
            }
            None => *slot = Some(value.to_owned()),
        }
    }

    /// How many times an unset `${vars.NAME}` was rendered (as "") by this VU.
    pub fn unset_vars(&self) -> u64 {
        self.unset_vars
    }

    /// The VU's pseudo-random generator.
    pub fn rng(&mut self) -> &mut VuRng {
        &mut self.rng
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::runtime::testing::{file_with, parse, parse_with_files, tpl};

    fn csv(rows: usize) -> String {
        let mut s = "id,name\n".to_owned();
        for i in 0..rows {
            s.push_str(&format!("{i},user{i}\n"));
        }
        s
    }

    fn table_file(mode: &str) -> Shared {
        let file = parse_with_files(
            &format!(
                r#"
[data.t]
file = "t.csv"
mode = "{mode}"
[scenarios.reader]
executor = "constant-vus"
vus = 1
duration = "1s"
[[scenarios.reader.steps]]
request = "GET http://127.0.0.1/${{data.t.id}}"
[scenarios.other]
executor = "constant-vus"
vus = 1
duration = "1s"
[[scenarios.other.steps]]
request = "GET http://127.0.0.1/"
"#
            ),
            &[("t.csv", &csv(4))],
        );
        Shared::new(Arc::new(file)).unwrap()
    }

    fn ids(vu: &mut VuState, shared: &Shared, iterations: usize) -> Vec<String> {
        let t = tpl("${data.t.id}:${data.t.id}");
        (0..iterations)
            .map(|_| {
                vu.begin_iteration(shared);
                let s = vu.render_string(&t, shared);
                let (a, b) = s.split_once(':').unwrap();
                assert_eq!(a, b, "one row per iteration");
                a.to_owned()
            })
            .collect()
    }

    #[test]
    fn sequential_rows_come_from_a_shared_cursor() {
        let shared = table_file("sequential");
        let mut a = VuState::new(1, 0, 7, &shared).unwrap();
        let mut b = VuState::new(2, 0, 7, &shared).unwrap();
        let mut seen = ids(&mut a, &shared, 3);
        seen.extend(ids(&mut b, &shared, 3));
        assert_eq!(seen, ["0", "1", "2", "3", "0", "1"]);
    }

    #[test]
    fn a_source_not_read_does_not_advance_the_cursor() {
        let shared = table_file("sequential");
        let mut a = VuState::new(1, 0, 7, &shared).unwrap();
        for _ in 0..5 {
            a.begin_iteration(&shared);
            a.render_string(&tpl("no data here"), &shared);
        }
        assert_eq!(ids(&mut a, &shared, 2), ["0", "1"]);
    }

    #[test]
    fn random_rows_are_uniform_and_seeded() {
        let shared = table_file("random");
        let mut a = VuState::new(1, 0, 7, &shared).unwrap();
        let seen = ids(&mut a, &shared, 4000);
        for row in ["0", "1", "2", "3"] {
            let n = seen.iter().filter(|s| *s == row).count();
            assert!((850..1150).contains(&n), "row {row}: {n} of 4000");
        }
        let mut again = VuState::new(1, 0, 7, &shared).unwrap();
        assert_eq!(ids(&mut again, &shared, 4000), seen, "same seed, same rows");
        let mut other = VuState::new(2, 0, 7, &shared).unwrap();
        assert_ne!(ids(&mut other, &shared, 50), seen[..50], "VUs differ");
    }

    #[test]
    fn unique_per_vu_keeps_one_row_and_fails_beyond_the_rows() {
        let shared = table_file("unique-per-vu");
        let mut third = VuState::new(3, 0, 7, &shared).unwrap();
        assert_eq!(ids(&mut third, &shared, 3), ["2", "2", "2"]);
        let err = VuState::new(5, 0, 7, &shared).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("data source \"t\" (/"),
            "names the source and path: {msg}"
        );
        assert!(
            msg.contains("t.csv) has 4 row(s), but VU 5 of scenario \"reader\" needs a row of its own (mode = \"unique-per-vu\"); add rows to the file, run at most 4 VU(s)"),
            "{msg}"
        );
        // The other scenario never reads the source: any VU number is fine there.
        assert!(VuState::new(500, 1, 7, &shared).is_ok());
        assert_eq!(
            VuState::new(1, 2, 7, &shared).unwrap_err(),
            RuntimeError::NoSuchScenario { index: 2, count: 2 }
        );
    }

    #[test]
    fn unique_per_vu_read_through_global_headers_counts_for_every_scenario() {
        let file = parse(
            r#"
[options]
headers = { X-User = "${data.users.email}" }
[data.users]
file = "data/users.csv"
mode = "unique-per-vu"
[scenarios.a]
executor = "constant-vus"
vus = 1
duration = "1s"
[[scenarios.a.steps]]
request = "GET http://127.0.0.1/"
"#,
        );
        let shared = Shared::new(Arc::new(file)).unwrap();
        // data/users.csv has 100 rows (ramp-sustain.toml runs 100 VUs).
        assert!(VuState::new(100, 0, 1, &shared).is_ok());
        assert!(matches!(
            VuState::new(101, 0, 1, &shared),
            Err(RuntimeError::NotEnoughRows {
                rows: 100,
                vu: 101,
                ..
            })
        ));
    }

    #[test]
    fn iteration_counts_from_zero() {
        let shared = Shared::new(Arc::new(file_with(""))).unwrap();
        let mut vu = VuState::new(1, 0, 7, &shared).unwrap();
        let t = tpl("${gen.iteration}");
        let mut seen = Vec::new();
        for _ in 0..3 {
            vu.begin_iteration(&shared);
            seen.push(vu.render_string(&t, &shared));
        }
        assert_eq!(seen, ["0", "1", "2"]);
        assert_eq!(vu.iteration(), 2);
    }

    #[test]
    fn vars_set_get_and_overwrite() {
        let shared = Shared::new(Arc::new(file_with(""))).unwrap();
        let mut vu = VuState::new(1, 0, 7, &shared).unwrap();
        assert_eq!(vu.var("token"), None);
        vu.set_var("token", "abc");
        assert_eq!(vu.var("token"), Some("abc"));
        vu.set_var("token", "a-longer-value");
        assert_eq!(vu.var("token"), Some("a-longer-value"));
        // A name no capture sets still works.
        vu.set_var("extra", "1");
        vu.set_var("extra", "2");
        assert_eq!(vu.var("extra"), Some("2"));
        assert_eq!(vu.var("id"), None);
    }
}

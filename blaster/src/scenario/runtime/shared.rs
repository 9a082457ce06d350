//! [`Shared`]: the per-run state every worker thread reads: the scenario file, the compiled
//! capture regexes, the run-wide `${gen.counter}` and the sequential cursors of the data
//! sources. Built once before the first VU starts; afterwards only atomics change (one
//! `fetch_add` per use, relaxed: they hand out numbers, they order nothing).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use regex::bytes::Regex;

use super::RuntimeError;
use crate::scenario::model::{
    Capture, CaptureSource, CheckCondition, DataSource, PickMode, ScenarioFile, Segment, Step,
    StepKind, Template,
};

/// Per-run state shared (in an `Arc`) by all worker threads.
#[derive(Debug)]
pub struct Shared {
    file: Arc<ScenarioFile>,
    /// Slot of each data source by name: its position in the file's (name-sorted) order.
    slots: BTreeMap<String, usize>,
    /// Sequential cursor of each slot (only used by `sequential` table sources).
    cursors: Vec<AtomicU64>,
    /// `${gen.counter}`: values handed out so far.
    counter: AtomicU64,
    /// Every `regex:` capture pattern of the file, compiled.
    regexes: HashMap<String, Regex>,
    /// Every variable some capture sets, so a VU can keep its values by index.
    var_names: Arc<[Box<str>]>,
    /// Per scenario: the slots of the `unique-per-vu` sources its templates read.
    unique_reads: Vec<Vec<usize>>,
}

impl Shared {
    /// Prepares a run of `file`: compiles every capture regex (an invalid one is an error that
    /// names its variable and pattern) and works out which data sources each scenario reads.
    pub fn new(file: Arc<ScenarioFile>) -> Result<Shared, RuntimeError> {
        let slots: BTreeMap<String, usize> = file
            .data
            .keys()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect();
        let cursors = file.data.keys().map(|_| AtomicU64::new(0)).collect();

        let mut regexes = HashMap::new();
        let mut var_names: Vec<Box<str>> = Vec::new();
        let mut unique_reads = Vec::new();
        for sc in &file.scenarios {
            let mut captures = Vec::new();
            let mut reads = Vec::new();
            let mut on_template = |t: &Template| {
                for seg in &t.segments {
                    if let Segment::Data { source, .. } = seg
                        && let Some(&slot) = slots.get(source)
                        && !reads.contains(&slot)
                    {
                        reads.push(slot);
                    }
                }
            };
            for (_, t) in &file.options.headers {
                on_template(t);
            }
            for flow in &sc.flows {
                walk(&flow.steps, &mut on_template, &mut |c| {
                    captures.push(c.clone())
                });
            }
            for c in captures {
                if !var_names.iter().any(|v| **v == *c.var) {
                    var_names.push(c.var.as_str().into());
                }
                if let CaptureSource::Regex(pattern) = &c.source
                    && !regexes.contains_key(pattern)
                {
                    let re = Regex::new(pattern).map_err(|e| RuntimeError::BadRegex {
                        var: c.var.clone(),
                        pattern: pattern.clone(),
                        message: e.to_string(),
                    })?;
                    regexes.insert(pattern.clone(), re);
                }
            }
            reads.retain(|slot| {
                file.data
                    .values()
                    .nth(*slot)
                    .is_some_and(|d| d.mode == PickMode::UniquePerVu)
            });
            unique_reads.push(reads);
        }
        Ok(Shared {
            file,
            slots,
            cursors,
            counter: AtomicU64::new(0),
            regexes,
            var_names: var_names.into(),
            unique_reads,
        })
    }

    /// The scenario file of the run.
    pub fn file(&self) -> &ScenarioFile {
        &self.file
    }

    /// The data source named `name` and its slot.
    pub(super) fn source(&self, name: &str) -> Option<(usize, &DataSource)> {
        let slot = *self.slots.get(name)?;
        Some((slot, self.file.data.get(name)?))
    }

    /// The data sources by slot.
    pub(super) fn sources(&self) -> impl Iterator<Item = &DataSource> {
        self.file.data.values()
    }

    pub(super) fn slot_count(&self) -> usize {
        self.cursors.len()
    }

    /// The next value of the run-wide `${gen.counter}` (1, 2, 3, ... across all VUs).
    pub(super) fn next_counter(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The next row of a sequential source with `rows` rows (the shared cursor, wrapping).
    pub(super) fn next_row(&self, slot: usize, rows: usize) -> usize {
        let n = self.cursors[slot].fetch_add(1, Ordering::Relaxed);
        (n % rows.max(1) as u64) as usize
    }

    /// The compiled form of a capture pattern of this file.
    pub(super) fn regex(&self, pattern: &str) -> Option<&Regex> {
        self.regexes.get(pattern)
    }

    pub(super) fn var_names(&self) -> &Arc<[Box<str>]> {
        &self.var_names
    }

    /// The `unique-per-vu` sources scenario `index` reads (`None`: no such scenario).
    pub(super) fn unique_reads(&self, index: usize) -> Option<&[usize]> {
        self.unique_reads.get(index).map(Vec::as_slice)
    }
}

/// Calls `on_template` for every template and `on_capture` for every capture in `steps`,
/// groups and loops included.
pub(crate) fn walk(
    steps: &[Step],
    on_template: &mut dyn FnMut(&Template),
    on_capture: &mut dyn FnMut(&Capture),
) {
    for step in steps {
        match &step.kind {
            StepKind::Http(h) => {
                on_template(&h.url);
                h.headers.iter().for_each(|(_, t)| on_template(t));
                if let Some(b) = &h.body {
                    on_template(b);
                }
                for c in &h.checks {
                    for cond in &c.conditions {
                        match cond {
                            CheckCondition::BodyContains(t)
                            | CheckCondition::JsonEquals { value: t, .. }
                            | CheckCondition::HeaderEquals { value: t, .. } => on_template(t),
                            CheckCondition::StatusIn(_)
                            | CheckCondition::LatencyBelow(_)
                            | CheckCondition::RetryAfterHonoured => {}
                        }
                    }
                }
                h.captures.iter().for_each(&mut *on_capture);
            }
            StepKind::WsConnect { url, headers, .. } => {
                on_template(url);
                headers.iter().for_each(|(_, t)| on_template(t));
            }
            StepKind::WsSend { body, .. } | StepKind::WsSubscribe { body, .. } => on_template(body),
            StepKind::WsExpect {
                contains, captures, ..
            } => {
                if let Some(c) = contains {
                    on_template(c);
                }
                captures.iter().for_each(&mut *on_capture);
            }
            StepKind::Group { steps, .. } | StepKind::Loop { steps, .. } => {
                walk(steps, on_template, on_capture)
            }
            StepKind::SleepFor(t) => on_template(t),
            StepKind::WsClose { .. } | StepKind::Sleep(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::runtime::testing::parse;

    #[test]
    fn compiles_every_regex_and_names_a_bad_one() {
        let ok = parse(
            r#"
[scenarios.a]
executor = "constant-vus"
vus = 1
duration = "1s"
[[scenarios.a.steps]]
request = "GET http://127.0.0.1/"
capture = { order = 'regex:"order":"(\w+)"' }
[[scenarios.a.steps]]
group = "g"
[[scenarios.a.steps.steps]]
ws_connect = "ws://127.0.0.1/"
[[scenarios.a.steps.steps]]
ws_expect = "x"
capture = { seq = 'regex:seq=(\d+)' }
"#,
        );
        let shared = Shared::new(Arc::new(ok.clone())).unwrap();
        assert!(shared.regex(r#""order":"(\w+)""#).is_some());
        assert!(shared.regex(r"seq=(\d+)").is_some(), "nested in a group");
        assert_eq!(&*shared.var_names, &["order".into(), "seq".into()]);

        // The parser rejects a bad pattern too; a model built another way reaches this check.
        let mut bad = ok.clone();
        let StepKind::Http(h) = &mut bad.scenarios[0].flows[0].steps[0].kind else {
            panic!("a request step");
        };
        h.captures[0].source = CaptureSource::Regex(r#""order":"(\w+""#.into());
        let err = Shared::new(Arc::new(bad)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                r#"capture "order": invalid regex "\"order\":\"(\\w+\"": regex parse error"#
            ),
            "{msg}"
        );
        assert!(msg.contains("unclosed group"), "{msg}");
        assert!(
            msg.ends_with(
                "fix the pattern in the scenario file (regex crate syntax, no look-around)"
            ),
            "{msg}"
        );
    }

    #[test]
    fn counter_and_cursors_count_from_the_start() {
        let shared = Shared::new(Arc::new(parse(
            r#"
[data.q]
file = "data/queries.csv"
[scenarios.a]
executor = "constant-vus"
vus = 1
duration = "1s"
[[scenarios.a.steps]]
request = "GET http://127.0.0.1/?q=${data.q.q}"
"#,
        )))
        .unwrap();
        assert_eq!(
            (1..=3).map(|_| shared.next_counter()).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        let (slot, _) = shared.source("q").unwrap();
        let rows: Vec<usize> = (0..7).map(|_| shared.next_row(slot, 3)).collect();
        assert_eq!(rows, [0, 1, 2, 0, 1, 2, 0]);
    }
}

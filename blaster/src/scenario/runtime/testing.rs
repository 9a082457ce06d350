//! Test helpers for the run-time modules: scenario files from TOML text, templates from
//! strings, data files in a fresh temporary directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Shared, VuState};
use crate::scenario::model::{ScenarioFile, Template};
use crate::scenario::parse_str;
use crate::scenario::template::{RefCheck, VarLookup};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/scenarios")
}

/// Parses `src` as if it were a file in examples/scenarios (so `data/users.csv` resolves).
pub(crate) fn parse(src: &str) -> ScenarioFile {
    parse_str(
        src,
        &examples_dir().join("runtime-test.toml"),
        &BTreeMap::new(),
        false,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Parses `src` in a new temporary directory holding `files` (name, content).
pub(crate) fn parse_with_files(src: &str, files: &[(&str, &str)]) -> ScenarioFile {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "blaster-runtime-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, content) in files {
        std::fs::write(dir.join(name), content).unwrap();
    }
    let file = parse_str(src, &dir.join("plan.toml"), &BTreeMap::new(), false)
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_dir_all(&dir).unwrap();
    file
}

/// A one-scenario file (`constant-vus`, one request) with `extra` TOML before it.
pub(crate) fn file_with(extra: &str) -> ScenarioFile {
    parse(&format!(
        "{extra}\n[scenarios.a]\nexecutor = \"constant-vus\"\nvus = 1\nduration = \"1s\"\n[[scenarios.a.steps]]\nrequest = \"GET http://127.0.0.1/\"\ncapture = {{ token = \"json:$.token\", id = \"json:$.id\" }}\n"
    ))
}

struct NoVars;
impl VarLookup for NoVars {
    fn var(&self, _: &str) -> Option<String> {
        None
    }
}

struct AnyRef;
impl RefCheck for AnyRef {
    fn data(&self, _: &str, _: &str) -> Result<(), String> {
        Ok(())
    }
    fn var(&self, _: &str) -> Result<(), String> {
        Ok(())
    }
}

/// A template from `text` (any data or var reference accepted).
pub(crate) fn tpl(text: &str) -> Template {
    crate::scenario::template::template(text, &NoVars, &AnyRef)
        .unwrap_or_else(|(at, m)| panic!("{text:?} at {at}: {m}"))
}

/// A shared state and VU 1 of scenario 0 for `file`.
pub(crate) fn vu_for(file: ScenarioFile) -> (Shared, VuState) {
    let shared = Shared::new(Arc::new(file)).unwrap();
    let vu = VuState::new(1, 0, 42, &shared).unwrap();
    (shared, vu)
}

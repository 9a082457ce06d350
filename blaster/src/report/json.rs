//! `--json` renderer: the report as pretty JSON (the schema is `report-schema.json`, explained
//! in docs/report-schema.md), and an atomic writer so an interrupted write never leaves a
//! half-written file behind.

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use super::Report;

/// The JSON report could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the JSON report to {}: {error}", path.display())]
pub struct WriteJsonError {
    /// The file that was to be written.
    pub path: PathBuf,
    /// What went wrong (already part of the message, so not a `source()`).
    pub error: io::Error,
}

/// The report as pretty-printed JSON (no trailing newline).
pub fn to_json(report: &Report) -> String {
    // The report is plain data with string map keys, which serde_json always serializes
    // (non-finite floats become `null`, they do not fail).
    serde_json::to_string_pretty(report).expect("a Report always serializes to JSON")
}

/// Writes the report as pretty JSON (with a trailing newline) to `path`, atomically: the
/// JSON goes to `<path>.tmp` first, which is synced and then renamed over `path`, so readers
/// (and a Ctrl-C mid-write) see either the old file or the complete new one.
pub fn write_json(report: &Report, path: &Path) -> Result<(), WriteJsonError> {
    let err = |error| WriteJsonError {
        path: path.to_owned(),
        error,
    };
    let mut json = to_json(report);
    json.push('\n');
    write_atomic(path, json.as_bytes()).map_err(err)
}

/// Writes `contents` to `path` atomically (through `<path>.tmp`, synced, then renamed): every
/// report file (JSON, HTML, markdown, JUnit) goes through here, so none is ever half-written.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(path);
    let written = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()
    })();
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// `path` with `.tmp` appended to its file name (`report.json` -> `report.json.tmp`), in the
/// same directory so the rename stays on one file system.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_owned()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LoadModel;
    use crate::report::tests::{config, outcome};

    fn report() -> Report {
        Report::from_run(&config(LoadModel::Open { rate: 2_000.0 }), &outcome())
    }

    fn scratch_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("blaster-report-json-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn json_round_trips_and_flattens_errors() {
        let r = report();
        let json = to_json(&r);
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["errors"]["total"], 5);
        assert_eq!(v["errors"]["timeout"], 3);
        assert!(v["errors"].get("by_kind").is_none());
        assert_eq!(v["status_codes"]["200"], 990);
        assert_eq!(v["target_rate"], 2_000.0);
        assert_eq!(v["latency_us"]["p999"], r.latency_us.p999);
    }

    #[test]
    fn closed_model_target_rate_is_null() {
        let r = Report::from_run(&config(LoadModel::Closed), &outcome());
        let v: serde_json::Value = serde_json::from_str(&to_json(&r)).unwrap();
        assert!(v["target_rate"].is_null());
    }

    #[test]
    fn write_json_replaces_the_file_atomically() {
        let dir = scratch_dir("write");
        let path = dir.join("report.json");
        fs::write(&path, "old").unwrap();
        let r = report();
        write_json(&r, &path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("}\n"));
        assert_eq!(serde_json::from_str::<Report>(&text).unwrap(), r);
        assert!(!dir.join("report.json.tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_errors_name_the_path() {
        let dir = scratch_dir("missing");
        let path = dir.join("no-such-dir").join("report.json");
        let e = write_json(&report(), &path).unwrap_err();
        assert_eq!(e.path, path);
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tmp_path_is_next_to_the_target() {
        assert_eq!(
            tmp_path(Path::new("out/r.json")),
            Path::new("out/r.json.tmp")
        );
        assert_eq!(tmp_path(Path::new("r.json")), Path::new("r.json.tmp"));
    }
}

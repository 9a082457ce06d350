//! `--json` renderer.

//! blaster: a thread-per-core io_uring load and stress testing tool.
//!
//! Layout (see docs/ARCHITECTURE.md):
//! - [`cli`]: clap flags, turned into validated plain [`config`] values; unit parsers.
//! - [`config`]: the validated run configuration every other module receives.
//! - [`proto`]: sans-IO protocol codecs (bytes in, bytes out; no sockets, no clocks).
//! - [`engine`]: pinned workers, one io_uring each, the connection state machines, pacing.
//! - [`metrics`]: per-worker histograms and counters, merged after the run.
//! - [`report`]: plain report data and its renderers (text, JSON).
//! - [`target`]: the built-in io_uring HTTP/1.1 target server (`blaster serve`).
//! - [`demo`]: `blaster demo`, the built-in target plus a short load, no setup.

pub mod cli;
pub mod config;
pub mod demo;
pub mod doctor;
pub mod engine;
pub mod metrics;
pub mod probe;
pub mod proto;
pub mod report;
pub mod scenario;
pub mod target;

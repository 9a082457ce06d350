//! The socket-free run-time of scenario files: what the engine calls between sends and
//! receives to fill templates, pick data rows, flows and think times, read responses, run
//! checks and captures.
//!
//! Boundary: nothing here opens sockets, reads clocks for pacing or keeps metrics. The engine
//! owns the connections and the counting; it hands this module bytes and durations and gets
//! bytes, booleans and durations back. Everything is deterministic for a given seed except
//! `${gen.timestamp*}` / `${gen.iso8601}` (the wall clock) and the order in which VUs on
//! different threads draw from shared sequential cursors and the run-wide counter.
//!
//! # API
//!
//! Per run, once: [`Shared::new`] (an `Arc<Shared>` for every worker thread) compiles every
//! capture regex and holds the run-wide `${gen.counter}` and the sequential cursors of data
//! sources (atomics: one `fetch_add` per use, nothing else shared).
//!
//! Per virtual user, once: [`VuState::new`]`(vu, scenario, seed, &shared)`, then per
//! iteration [`VuState::begin_iteration`], and per template [`VuState::render`] (appends to
//! the caller's buffer; no allocation beyond what the output needs) or
//! [`VuState::render_string`]. Variables: [`VuState::var`], [`VuState::set_var`],
//! [`VuState::unset_vars`] (how often an unset `${vars.X}` rendered as ""). The VU's PRNG:
//! [`VuState::rng`] (a [`VuRng`], rand's `SmallRng`).
//!
//! Randomness for the flow: [`think_time`], [`chance`] (per-step probability),
//! [`pick_weighted`] (flows by weight).
//!
//! Responses: [`parse_response`] turns a complete HTTP/1.1 response's raw bytes into a
//! [`ResponseView`] (chunked bodies de-chunked into a scratch buffer);
//! [`needs_response_bytes`] says whether a step needs them at all (not when its checks only
//! use status and latency and it has no captures). [`run_check`], [`capture`] (HTTP bodies and
//! WebSocket messages alike) and [`message_matches`] (for `ws_expect`).
//!
//! # Refinements of the API the engine asked for
//!
//! - [`VuState::new`] takes the scenario index (into `ScenarioFile::scenarios`): a
//!   `unique-per-vu` source only limits the VU numbers of scenarios that read it (VU numbers
//!   are global, so another scenario's VU 500 must not fail because `users.csv` has 100 rows).
//! - Rows are picked lazily: [`VuState::begin_iteration`] only starts a new iteration, and
//!   the first read of a table source in that iteration picks its row (which the rest of the
//!   iteration keeps). A source the flow never reads does not advance its shared sequential
//!   cursor, so scenarios that do read it walk the rows in order without gaps.
//! - The `seed` of [`VuState::new`] is mixed with the VU number, so the engine may pass one
//!   run-wide seed to every VU and still get a different stream per VU.
//! - A failed capture leaves the variable as it was and returns `false` (the engine counts
//!   it); a variable never set renders as "" and is counted in [`VuState::unset_vars`].

mod check;
mod generate;
mod geo;
mod json;
mod random;
mod render;
mod response;
mod shared;
mod vu;

#[cfg(test)]
mod testing;

pub use check::{capture, message_matches, run_check};
pub(crate) use json::lookup as json_lookup;
pub use random::{chance, pick_weighted, rendered_sleep, think_time};
pub use response::{ResponseView, needs_response_bytes, parse_response};
pub use shared::Shared;
pub(crate) use shared::walk;
pub use vu::{VuRng, VuState};

/// Why the run-time cannot start, or a response cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// A `regex:` capture whose pattern does not compile.
    #[error(
        "capture \"{var}\": invalid regex {pattern:?}: {message}; fix the pattern in the scenario file (regex crate syntax, no look-around)"
    )]
    BadRegex {
        var: String,
        pattern: String,
        message: String,
    },
    /// A `unique-per-vu` data source with fewer rows than the VUs that read it.
    #[error(
        "data source \"{data}\" ({path}) has {rows} row(s), but VU {vu} of scenario \"{scenario}\" needs a row of its own (mode = \"unique-per-vu\"); add rows to the file, run at most {rows} VU(s) in the scenarios that read it, or use mode = \"sequential\""
    )]
    NotEnoughRows {
        data: String,
        path: String,
        rows: usize,
        vu: u64,
        scenario: String,
    },
    /// [`VuState::new`] was given a scenario index the file does not have.
    #[error("scenario index {index} is out of range: the file has {count} scenario(s)")]
    NoSuchScenario { index: usize, count: usize },
    /// The bytes are not a complete, well-formed HTTP/1.1 response.
    #[error("cannot read the response for checks and captures: {0}")]
    Response(String),
}

//! Sans-IO protocol codecs: they take and return bytes only (no sockets, clocks or
//! per-request allocation), so they can be unit-tested byte by byte, fuzzed and benchmarked.

pub mod http1;
pub mod ws;

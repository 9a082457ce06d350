//! End-of-run text summary.

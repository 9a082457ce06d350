//! Benchmark helpers. `src/bin/uring-floor.rs` is the yardstick client the
//! `scripts/bench-*.sh` scripts run beside blaster and its peers.

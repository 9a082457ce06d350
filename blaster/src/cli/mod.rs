//! Command line: clap flags turned into validated [`crate::config`] values.

pub mod units;

/// Entry point of the binary; returns the process exit code.
pub fn main() -> i32 {
    0
}

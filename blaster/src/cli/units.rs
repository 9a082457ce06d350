//! Unit parsers for durations, counts, rates and byte sizes.

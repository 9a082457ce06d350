//! Shared helpers for blaster's end-to-end tests: locating the binary, fixture servers that
//! listen on loopback port 0, and skip macros for tests that need a kernel feature.

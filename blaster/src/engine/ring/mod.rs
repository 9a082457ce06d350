//! The io_uring facade.

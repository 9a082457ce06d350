//! The built-in io_uring HTTP/1.1 target server (`blaster serve`).

//! HTTP/1.1 client codec: request encoding and a streaming response parser.
//!
//! Sans-IO: [`encode_request`] renders a request's bytes once (the engine resends them), and a
//! [`ResponseParser`] per connection turns received bytes into [`Response`]s (status, body
//! length, whether the connection closes). No sockets, clocks or per-response allocation;
//! bodies are counted and skipped, never stored. Heads are parsed with `httparse`; body framing
//! (Content-Length, chunked, read-until-close) is done by hand.
//!
//! - [`request`]: request validation and encoding.
//! - [`response`]: the response parser and its limits.
//! - `head`: one head from httparse to status, close flag and body framing.
//! - `chunked`: the chunked transfer coding decoder.
//! - `error`: [`ResponseError`] and its stable [`ResponseError::kind`] names.

mod chunked;
mod error;
mod head;
pub mod request;
pub mod response;

pub use error::ResponseError;
pub use request::{EncodeError, encode_request, is_head};
pub use response::{Limits, Progress, Response, ResponseParser};

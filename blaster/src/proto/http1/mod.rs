//! HTTP/1.1 client codec: request encoding and a streaming response parser.

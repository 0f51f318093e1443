//! A WHATWG event-stream (SSE) codec.

//! The rewrite engine and the API shapes, in process.

mod api_shapes;
mod fixtures;
mod json_fidelity;
mod props;
mod recorded;
mod sse;

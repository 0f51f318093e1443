//! sandgate: a reverse proxy for OpenAI-compatible APIs that finds the Python fenced code blocks in
//! every completion and replaces them with links, widgets or artifacts that run the code with Pyodide
//! inside the end user's browser sandbox.
//!
//! The crate is split by stage (see ARCHITECTURE.md):
//! - [`rewrite`]: pure text and JSON transforms (markdown fences, SSE, API shapes, restore);
//! - [`proxy`], [`server`]: the HTTP edge around them;
//! - [`sandbox`]: the page that runs the code, and the Pyodide assets;
//! - [`body`], [`error`], [`metrics`], [`config`]: what the edge shares.

pub mod body;
pub mod config;
pub mod demo;
pub mod error;
pub mod metrics;
pub mod playground;
pub mod proxy;
pub mod rewrite;
pub mod sandbox;
pub mod server;

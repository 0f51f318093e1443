//! sandgate's integration tests, in one test binary: `cargo test --test it` runs them all,
//! `cargo test --test it proxy::` one area, `cargo test --test it proxy::routes::` one file.
//!
//! - `engine`: the rewrite engine and the API shapes, in process (fixtures, properties, SSE,
//!   JSON fidelity, the recorded streams);
//! - `proxy`: a real sandgate on loopback in front of the scripted upstream (routes, faults,
//!   context, tools, TLS, the binary, the HTTP edge's limits);
//! - `browser`: the sandbox page, the runner and the playground in headless Chromium;
//! - `sdk`: the official openai SDKs as clients; `demo`: the demo's scripted model; `deploy`: deploy/.
//!
//! `support` holds what they share: the scripted upstream, the OpenAI shapes, the engine oracle,
//! the `sandgate` binary as a child process and the browser assets. The tests share one process:
//! none of them changes its environment, current directory or limits (the binary's `ulimit` is its
//! child's own), and they bind loopback port 0 only.

// A failing test stops loudly: tests and their helpers may unwrap, expect, panic and print, which
// Cargo.toml's [lints.clippy] denies to the library and the binary. (clippy.toml's
// allow-*-in-tests settings cover `#[test]` functions only, not the helpers beside them.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod browser;
mod demo;
mod deploy;
mod engine;
mod proxy;
mod sdk;
mod support;

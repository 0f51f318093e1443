//! The sandbox page, the runner and the playground in headless Chromium, fully offline. Every test
//! here holds [`crate::support::browser`]'s lock while its browser runs: one Chromium at a time.

mod cells;
mod page_hardening;
mod playground;
mod playground_tools;
mod readme_example;
mod runner;
mod sandbox;

//! What the browser tests share: one lock, so that one headless Chromium runs at a time.
//!
//! In one test binary the browser tests would otherwise run beside each other (and beside the
//! heavy proxy tests) on the test threads; each Chromium with Pyodide takes a core and hundreds of
//! MB, and the page's time limits are measured against the page, not the machine. Every browser
//! test holds [`lock`] (or [`lock_blocking`] in a plain `#[test]`) from its start to its end.

use tokio::sync::{Mutex, MutexGuard};

static BROWSER: Mutex<()> = Mutex::const_new(());

/// Waits for the browser; the guard releases it when dropped (a failed test releases it too).
pub async fn lock() -> MutexGuard<'static, ()> {
    BROWSER.lock().await
}

/// [`lock`] for a test outside an async runtime.
pub fn lock_blocking() -> MutexGuard<'static, ()> {
    BROWSER.blocking_lock()
}

//! How many clients the server takes at once, and what it does when it cannot take more.
//!
//! At start-up the open-files soft limit is raised to the hard limit. Every client connection may
//! hold a second descriptor (its upstream connection), and the process needs some for itself
//! (listener, pooled connections, static files, logs): `max_connections` (when 0) is what is left
//! after [`HEADROOM`], halved, and a configured value above that is lowered to it. A worker waits for
//! a permit of [`Limits::connections`] before it accepts: when all are taken, new clients wait in
//! the listen backlog rather than make `accept` fail with EMFILE. An `accept` that fails anyway
//! backs off ([`Backoff`]), and says so in the log once per [`Backoff::LOG_EVERY`]. The listen backlog
//! is [`LISTEN_BACKLOG`] (the kernel lowers it to `net.core.somaxconn`), since that is where clients
//! wait while every slot is taken, and a full backlog drops connection attempts (the client's
//! kernel retries after 1 s, 3 s, 7 s...).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;

/// Connections the kernel may hold for the listener before sandgate accepts them.
pub(crate) const LISTEN_BACKLOG: u32 = 4096;

/// Binds the listener (SO_REUSEADDR, as `TcpListener::bind` does) with [`LISTEN_BACKLOG`].
pub(crate) fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Descriptors kept for the process itself, besides two per client connection.
pub(crate) const HEADROOM: u64 = 64;

/// The most connections `max_connections = 0` allows, however high the open-files limit.
const AUTO_MAX: u64 = 32_768;

/// The connection cap, shared by every worker.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    pub(crate) connections: Arc<Semaphore>,
    pub(crate) max_connections: usize,
    /// The open-files limit in force (after raising it).
    pub(crate) open_files: u64,
}

impl Limits {
    /// Raises the open-files limit and works out the connection cap for `configured` (0: auto).
    pub(crate) fn new(configured: usize) -> Limits {
        let open_files = raise_open_files();
        let fit = (open_files.saturating_sub(HEADROOM) / 2).clamp(1, AUTO_MAX);
        let fit = usize::try_from(fit).unwrap_or(1);
        let max_connections = match configured {
            0 => fit,
            n if n > fit => {
                tracing::warn!(
                    max_connections = n,
                    open_files,
                    lowered_to = fit,
                    "max_connections is more than the open-files limit allows"
                );
                fit
            }
            n => n,
        };
        let max_connections = max_connections.min(Semaphore::MAX_PERMITS);
        Limits {
            connections: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            open_files,
        }
    }
}

/// Raises the soft open-files limit to the hard one; returns the soft limit in force.
fn raise_open_files() -> u64 {
    #[cfg(unix)]
    {
        let soft = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
            Ok((soft, hard)) => match rlimit::increase_nofile_limit(hard) {
                Ok(now) => now,
                Err(e) => {
                    tracing::warn!(error = %e, soft, hard, "cannot raise the open-files limit");
                    soft
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the open-files limit");
                1024
            }
        };
        // RLIM_INFINITY reads as u64::MAX.
        soft.min(1 << 20)
    }
    #[cfg(not(unix))]
    {
        1 << 14
    }
}

/// The wait after a failed `accept`: doubling from 10 ms to 1 s while failures go on, and a log
/// line at most once per [`Backoff::LOG_EVERY`] (with the count of failures in between).
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    failures: u32,
    last_log: Option<Instant>,
    unlogged: u64,
}

impl Backoff {
    pub(crate) const LOG_EVERY: Duration = Duration::from_secs(10);
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    /// Records a failure; returns how long to wait before accepting again.
    pub(crate) fn failed(&mut self, error: &std::io::Error) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.unlogged += 1;
        if self.last_log.is_none_or(|at| at.elapsed() >= Self::LOG_EVERY) {
            tracing::warn!(
                error = %error,
                failures = self.unlogged,
                "accept failed; backing off (logged at most every 10 s)"
            );
            self.last_log = Some(Instant::now());
            self.unlogged = 0;
        }
        Self::FIRST.saturating_mul(1 << self.failures.min(8).saturating_sub(1)).min(Self::MAX)
    }

    /// An `accept` succeeded: the next failure waits the shortest time again.
    pub(crate) fn succeeded(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_up_to_a_second_and_starts_over_after_a_success() {
        let e = std::io::Error::other("EMFILE");
        let mut b = Backoff::default();
        let waits: Vec<Duration> = (0..9).map(|_| b.failed(&e)).collect();
        assert_eq!(waits[0], Duration::from_millis(10));
        assert_eq!(waits[1], Duration::from_millis(20));
        assert_eq!(waits[6], Duration::from_millis(640));
        assert_eq!(waits[8], Duration::from_secs(1));
        b.succeeded();
        assert_eq!(b.failed(&e), Duration::from_millis(10));
    }

    #[test]
    fn the_cap_fits_the_open_files_limit() {
        let limits = super::Limits::new(0);
        assert!(limits.max_connections >= 1);
        assert!(limits.max_connections as u64 <= limits.open_files.max(super::HEADROOM + 2) / 2);
        assert_eq!(super::Limits::new(1).max_connections, 1);
    }
}

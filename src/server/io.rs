//! The write timeout on a client connection: [`WriteTimeout`] wraps the accepted stream (TCP or
//! TLS), under HTTP/1.1 and HTTP/2 alike, so it covers every response: streams, static files, errors.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A client connection whose writes may not wait longer than `limit`.
///
/// A write or flush that cannot go on (the client's receive window and the socket's send buffer
/// are full: the client stopped reading) starts a timer; any progress stops it. When it fires,
/// the write fails with `TimedOut`, which ends the connection and frees what its responses held.
pub(crate) struct WriteTimeout<IO> {
    io: IO,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
    /// The timer runs: a write is waiting.
    armed: bool,
}

impl<IO> WriteTimeout<IO> {
    pub(crate) fn new(io: IO, limit: Duration) -> Self {
        WriteTimeout { io, limit, timer: Box::pin(tokio::time::sleep(limit)), armed: false }
    }

    /// What to answer for a write that returned `poll`: `Pending` arms the timer (once) and fails
    /// when it has fired; anything else disarms it.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.armed = false;
            return poll;
        }
        if !self.armed {
            self.armed = true;
            self.timer.as_mut().reset(Instant::now() + self.limit);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing within the write timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteTimeout<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_flush(cx);
        this.watch(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_shutdown(cx);
        this.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::WriteTimeout;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_peer_that_stops_reading_fails_the_write_and_one_that_reads_does_not() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut w = WriteTimeout::new(a, Duration::from_secs(5));
        let chunk = vec![7u8; 4096];
        // The peer reads slowly but steadily: every wait is far shorter than the limit.
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut buf = [0u8; 512];
            while got < 8192 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                got += b.read(&mut buf).await.unwrap_or(0);
            }
            b
        });
        w.write_all(&chunk).await.unwrap();
        w.write_all(&chunk).await.unwrap();
        let _b = reader.await.unwrap();
        // Now nobody reads: the write fails once the limit has passed.
        let e = w.write_all(&chunk).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    }
}

//! The `http_body::Body` adapters between the upstream and the client.
//!
//! - [`SseBody`]: an upstream event stream, rewritten frame by frame as it arrives (never buffered
//!   whole), with the idle timeout, an in-band error event when the upstream fails after the stream
//!   began, and metrics; dropping it (the client went away) drops the upstream response at once,
//!   which closes or resets the upstream connection.
//! - [`IdleBody`]: any other upstream body, passed through unchanged with the idle timeout.
//! - [`ClientBody`]: a client's request body, cut off past the size limit or after a silence.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::error::{Error, TimeoutPhase};
use crate::metrics::Metrics;
use crate::rewrite::api::SseRewriter;

pub use crate::body::{full, BoxError, ProxyBody};

pin_project! {
    /// An upstream body passed through unchanged; fails when the upstream stays silent longer than
    /// the idle timeout.
    pub struct IdleBody {
        #[pin]
        inner: Incoming,
        #[pin]
        sleep: Sleep,
        idle: Duration,
    }
}

impl IdleBody {
    pub fn new(inner: Incoming, idle: Duration) -> Self {
        IdleBody { inner, sleep: tokio::time::sleep(idle), idle }
    }
}

impl Body for IdleBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let deadline = tokio::time::Instant::now() + *this.idle;
                this.sleep.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.sleep.poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(Error::UpstreamTimeout {
                    phase: TimeoutPhase::Idle,
                    after: *this.idle,
                })))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Counts a stream in the in-flight gauge while it lives; at the end records what it did, and
/// whether the client left before the end.
#[derive(Debug)]
pub struct StreamGuard {
    metrics: Arc<Metrics>,
    /// Time spent before the request went upstream, plus time spent rewriting.
    overhead: Duration,
    done: bool,
    /// The answer's terminal event (`[DONE]`, `response.completed`) went to the client: a client
    /// that leaves after it leaves a complete stream.
    delivered_end: bool,
    blocks: usize,
    log_content: bool,
}

impl StreamGuard {
    pub fn new(metrics: Arc<Metrics>, overhead_before: Duration, log_content: bool) -> Self {
        metrics.stream_started();
        StreamGuard {
            metrics,
            overhead: overhead_before,
            done: false,
            delivered_end: false,
            blocks: 0,
            log_content,
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.metrics.stream_ended();
        self.metrics.blocks_rewritten(self.blocks);
        self.metrics.overhead.observe(self.overhead);
        if !self.done && !self.delivered_end {
            self.metrics.stream_cancelled();
            tracing::info!("client went away mid-stream; upstream request dropped");
        }
    }
}

pin_project! {
    /// An upstream event stream on its way to the client, rewritten event by event.
    pub struct SseBody {
        #[pin]
        inner: Incoming,
        #[pin]
        sleep: Sleep,
        idle: Duration,
        rewriter: Option<SseRewriter>,
        // Holds the bytes of an event not yet complete, so that a failure never leaves half an event.
        framer: Framer,
        guard: StreamGuard,
    }
}

impl SseBody {
    /// `rewriter` is `None` when the mode is `off`: the events then pass through unchanged, still
    /// with the idle timeout and the in-band error.
    pub fn new(
        inner: Incoming,
        rewriter: Option<SseRewriter>,
        idle: Duration,
        guard: StreamGuard,
    ) -> Self {
        SseBody {
            inner,
            sleep: tokio::time::sleep(idle),
            idle,
            rewriter,
            framer: Framer::default(),
            guard,
        }
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if this.guard.done {
            return Poll::Ready(None);
        }
        loop {
            match this.inner.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        // Trailers cannot be carried to an HTTP/1.1 client of an event stream.
                        continue;
                    };
                    let deadline = tokio::time::Instant::now() + *this.idle;
                    this.sleep.as_mut().reset(deadline);
                    let out = match this.rewriter.as_mut() {
                        Some(rw) => {
                            let started = Instant::now();
                            let mut out = Vec::with_capacity(data.len() + 64);
                            rw.push(&data, &mut out);
                            this.guard.overhead += started.elapsed();
                            // Kept current, so that a stream the client leaves still counts
                            // the blocks it rewrote.
                            this.guard.blocks = rw.stats().blocks_rewritten;
                            this.framer.complete(Bytes::from(out))
                        }
                        None => this.framer.complete(data),
                    };
                    if out.is_empty() {
                        continue;
                    }
                    if this.guard.log_content {
                        tracing::debug!(chunk = %String::from_utf8_lossy(&out), "stream out");
                    }
                    if !this.guard.delivered_end && super::terminal::ends_answer(&out) {
                        this.guard.delivered_end = true;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                Poll::Ready(Some(Err(e))) => {
                    let err = Error::UpstreamBody(e.to_string());
                    tracing::warn!(error = %err, "upstream stream failed");
                    let out = finish(this.rewriter, this.framer, this.guard, Some(&err));
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                Poll::Ready(None) => {
                    let out = finish(this.rewriter, this.framer, this.guard, None);
                    if out.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                Poll::Pending => {
                    if this.sleep.as_mut().poll(cx).is_ready() {
                        let err =
                            Error::UpstreamTimeout { phase: TimeoutPhase::Idle, after: *this.idle };
                        tracing::warn!(error = %err, "upstream stream stalled");
                        let out = finish(this.rewriter, this.framer, this.guard, Some(&err));
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.guard.done
    }
}

/// Flushes what the rewriter holds and, after a failure, appends the in-band error event.
fn finish(
    rewriter: &mut Option<SseRewriter>,
    framer: &mut Framer,
    guard: &mut StreamGuard,
    error: Option<&Error>,
) -> Bytes {
    let mut out = Vec::new();
    if let Some(rw) = rewriter.as_mut() {
        let started = Instant::now();
        rw.finish(&mut out);
        guard.overhead += started.elapsed();
        guard.blocks = rw.stats().blocks_rewritten;
    }
    guard.done = true;
    let complete = framer.complete(Bytes::from(out));
    let mut out = complete.to_vec();
    match error {
        None => out.extend_from_slice(&framer.take_rest()),
        Some(err) => {
            let partial = framer.take_rest();
            if !partial.is_empty() {
                // A client's parser drops an unfinished event at the end of a stream; the in-band
                // error that follows says why it is missing.
                tracing::warn!(
                    bytes = partial.len(),
                    "dropped the unfinished event the upstream broke off"
                );
            }
            if framer.mid_event {
                // An oversized event was already partly sent: end it so that the error stands alone.
                out.extend_from_slice(b"\n\n");
            }
            out.extend_from_slice(&err.sse_event());
        }
    }
    Bytes::from(out)
}

/// Splits an event stream at event boundaries (blank lines, with LF, CR or CRLF line ends): bytes of
/// an event still incomplete are held until the event ends, up to [`Framer::MAX_HELD`].
#[derive(Debug)]
struct Framer {
    held: Vec<u8>,
    /// The current line has no characters yet.
    line_empty: bool,
    /// The last byte seen was a CR (a following LF belongs to it).
    after_cr: bool,
    /// Part of the current event was sent without its end, because it grew past the limit.
    mid_event: bool,
}

impl Default for Framer {
    fn default() -> Self {
        Framer { held: Vec::new(), line_empty: true, after_cr: false, mid_event: false }
    }
}

impl Framer {
    /// An event larger than this is passed on in pieces rather than held whole.
    const MAX_HELD: usize = 1 << 20;

    /// Takes more stream bytes; returns those that complete events (with anything held before).
    /// Without held bytes, the answer is a slice of the input: no copy.
    fn complete(&mut self, bytes: Bytes) -> Bytes {
        let mut boundary = None;
        for (i, &b) in bytes.iter().enumerate() {
            if self.after_cr && b == b'\n' {
                self.after_cr = false;
                if boundary == Some(i) {
                    boundary = Some(i + 1);
                }
                continue;
            }
            self.after_cr = b == b'\r';
            if b == b'\n' || b == b'\r' {
                if self.line_empty {
                    boundary = Some(i + 1);
                }
                self.line_empty = true;
            } else {
                self.line_empty = false;
            }
        }
        match boundary {
            Some(end) => {
                self.mid_event = false;
                let out = if self.held.is_empty() {
                    bytes.slice(..end)
                } else {
                    let mut out = std::mem::take(&mut self.held);
                    out.extend_from_slice(&bytes[..end]);
                    Bytes::from(out)
                };
                self.held.extend_from_slice(&bytes[end..]);
                out
            }
            None if self.held.len() + bytes.len() > Self::MAX_HELD => {
                self.mid_event = true;
                if self.held.is_empty() {
                    return bytes;
                }
                let mut out = std::mem::take(&mut self.held);
                out.extend_from_slice(&bytes);
                Bytes::from(out)
            }
            None => {
                self.held.extend_from_slice(&bytes);
                Bytes::new()
            }
        }
    }

    /// Whatever is held: the start of an event that has not ended.
    fn take_rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }
}

/// Why a client's request body was cut off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientFault {
    TooLarge,
    Idle,
}

/// What a [`ClientBody`] tells the handler: why it failed (for a 413 or 408 answer), and when it last
/// made progress (the upstream's time to first byte counts from then, so an upload that keeps
/// producing is never cut).
#[derive(Clone, Debug)]
pub struct UploadWatch(Arc<UploadShared>);

#[derive(Debug)]
struct UploadShared {
    fault: std::sync::atomic::AtomicU8,
    /// When the watch was made.
    base: Instant,
    /// Nanoseconds from `base` to the last piece of the body read.
    last: std::sync::atomic::AtomicU64,
}

impl Default for UploadWatch {
    fn default() -> Self {
        UploadWatch(Arc::new(UploadShared {
            fault: std::sync::atomic::AtomicU8::new(0),
            base: Instant::now(),
            last: std::sync::atomic::AtomicU64::new(0),
        }))
    }
}

impl UploadWatch {
    fn set(&self, fault: ClientFault) {
        let code = match fault {
            ClientFault::TooLarge => 1,
            ClientFault::Idle => 2,
        };
        self.0.fault.store(code, Ordering::Relaxed);
    }

    pub fn get(&self) -> Option<ClientFault> {
        match self.0.fault.load(Ordering::Relaxed) {
            1 => Some(ClientFault::TooLarge),
            2 => Some(ClientFault::Idle),
            _ => None,
        }
    }

    fn touch(&self) {
        let nanos = u64::try_from(self.0.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.0.last.fetch_max(nanos, Ordering::Relaxed);
    }

    /// When the body last made progress: the last piece read, or the watch's making.
    pub fn last_progress(&self) -> Instant {
        self.0.base + Duration::from_nanos(self.0.last.load(Ordering::Relaxed))
    }
}

pin_project! {
    /// A client's request body on its way upstream: fails past `limit` bytes, or when the client
    /// stays silent longer than the idle timeout, and records why in its [`UploadWatch`].
    pub struct ClientBody {
        #[pin]
        inner: Incoming,
        #[pin]
        sleep: Sleep,
        idle: Duration,
        seen: usize,
        limit: usize,
        upload: UploadWatch,
    }
}

impl ClientBody {
    pub fn new(inner: Incoming, limit: usize, idle: Duration, upload: UploadWatch) -> Self {
        ClientBody { inner, sleep: tokio::time::sleep(idle), idle, seen: 0, limit, upload }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.seen += data.len();
                    if *this.seen > *this.limit {
                        this.upload.set(ClientFault::TooLarge);
                        return Poll::Ready(Some(Err(Box::new(Error::BodyTooLarge {
                            limit: *this.limit,
                        }))));
                    }
                }
                this.upload.touch();
                let deadline = tokio::time::Instant::now() + *this.idle;
                this.sleep.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.upload.touch();
                Poll::Ready(None)
            }
            Poll::Pending => match this.sleep.poll(cx) {
                Poll::Ready(()) => {
                    this.upload.set(ClientFault::Idle);
                    Poll::Ready(Some(Err(Box::new(Error::ClientTimeout { after: *this.idle }))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An upstream body read for rewriting: whole, or (past the limit) the part read so far and the rest.
pub enum Collected {
    Whole(Bytes),
    TooLarge { head: Bytes, rest: Incoming },
}

/// Reads an upstream body whole, up to `limit` bytes, failing when it stays silent longer than `idle`.
pub async fn collect_up_to(
    mut body: Incoming,
    idle: Duration,
    limit: usize,
) -> Result<Collected, Error> {
    let hint = body.size_hint().exact().and_then(|n| usize::try_from(n).ok());
    let mut buf: Vec<u8> = Vec::with_capacity(hint.unwrap_or(0).min(limit));
    let sleep = tokio::time::sleep(idle);
    tokio::pin!(sleep);
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            () = &mut sleep => {
                return Err(Error::UpstreamTimeout { phase: TimeoutPhase::Idle, after: idle })
            }
        };
        match frame {
            None => return Ok(Collected::Whole(Bytes::from(buf))),
            Some(Err(e)) => return Err(Error::UpstreamBody(e.to_string())),
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    buf.extend_from_slice(data);
                    if buf.len() > limit {
                        return Ok(Collected::TooLarge { head: Bytes::from(buf), rest: body });
                    }
                }
                sleep.as_mut().reset(tokio::time::Instant::now() + idle);
            }
        }
    }
}

pin_project! {
    /// Bytes already read, then the rest of the body.
    pub struct Prefixed<B> {
        head: Option<Bytes>,
        #[pin]
        rest: B,
    }
}

impl<B> Prefixed<B> {
    pub fn new(head: Bytes, rest: B) -> Self {
        Prefixed { head: Some(head), rest }
    }
}

impl<B: Body<Data = Bytes>> Body for Prefixed<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        match this.head.take() {
            Some(head) => Poll::Ready(Some(Ok(Frame::data(head)))),
            None => this.rest.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.rest.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_framer_releases_whole_events_only() {
        let mut f = Framer::default();
        assert_eq!(&f.complete(Bytes::from_static(b"data: a\n"))[..], b"");
        assert_eq!(&f.complete(Bytes::from_static(b"\ndata: b"))[..], b"data: a\n\n");
        // A CR ends the blank line; the LF after it is part of the same line end.
        assert_eq!(&f.complete(Bytes::from_static(b"\r\n\r"))[..], b"data: b\r\n\r");
        assert_eq!(
            &f.complete(Bytes::from_static(b"\ndata: c\r\rdata: d\n"))[..],
            b"\ndata: c\r\r"
        );
        assert_eq!(f.take_rest(), b"data: d\n");
        let mut f = Framer::default();
        let big = vec![b'x'; Framer::MAX_HELD + 1];
        assert_eq!(f.complete(Bytes::from(big.clone())).len(), big.len());
        assert!(f.mid_event);
        assert_eq!(&f.complete(Bytes::from_static(b"\n\n"))[..], b"\n\n");
        assert!(!f.mid_event);
    }
}

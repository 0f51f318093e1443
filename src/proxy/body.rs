//! The `http_body::Body` wrappers between the upstream and the client. Each does one thing and is
//! generic over the body it wraps:
//!
//! - [`Idle`]: fails a body that stays silent longer than its timeout (the one idle timer: the
//!   upstream's answers, the client's upload, event streams and [`collect_up_to`] all run on it);
//! - [`ClientBody`]: a client's request body, cut off past the size limit, telling its
//!   [`UploadWatch`] why and when it last made progress;
//! - [`SseBody`]: an event stream on its way to the client, rewritten event by event as it arrives
//!   (never buffered whole) or only framed, ended by an in-band error event when the upstream fails
//!   after it began; it reports its end once, through its callback. Dropping it (the client went
//!   away) drops the upstream response at once, which closes or resets the upstream connection;
//! - [`Prefixed`]: bytes already read, then the rest of the body.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::error::{Error, TimeoutPhase};
use crate::rewrite::api::SseRewriter;
use crate::rewrite::sse::Framer;

pub use crate::body::{full, BoxError, ProxyBody};

pin_project! {
    /// A body that fails when it stays silent longer than `after`: its error is then the one
    /// `on_idle` makes. Frames, errors and the end pass as they are.
    pub struct Idle<B> {
        #[pin]
        inner: B,
        #[pin]
        sleep: Sleep,
        after: Duration,
        on_idle: fn(Duration) -> Error,
    }
}

impl<B> Idle<B> {
    pub fn new(inner: B, after: Duration, on_idle: fn(Duration) -> Error) -> Self {
        Idle { inner, sleep: tokio::time::sleep(after), after, on_idle }
    }

    /// An upstream body: silence is the upstream's idle timeout.
    pub fn upstream(inner: B, after: Duration) -> Self {
        Idle::new(inner, after, |after| Error::UpstreamTimeout { phase: TimeoutPhase::Idle, after })
    }
}

impl<B> Body for Idle<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let deadline = tokio::time::Instant::now() + *this.after;
                this.sleep.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.sleep.poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new((this.on_idle)(*this.after))))),
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

/// The error of an upstream body wrapped in [`Idle`]: its idle timeout, or the upstream's failure.
fn upstream_error(e: BoxError) -> Error {
    match e.downcast::<Error>() {
        Ok(e) => *e,
        Err(e) => Error::UpstreamBody(e),
    }
}

/// How an event stream ended, handed to its [`SseBody`]'s callback once, when the body is dropped.
#[derive(Clone, Copy, Debug)]
pub struct StreamEnd {
    /// Time spent rewriting the stream.
    pub rewriting: Duration,
    /// Python blocks rewritten.
    pub blocks: usize,
    /// The client left before the end: neither the upstream's end nor the answer's terminal event
    /// (`[DONE]`, `response.completed`, which a client may close right after) reached it.
    pub cancelled: bool,
}

/// The callback a stream reports its end to.
pub type OnEnd = Box<dyn FnOnce(StreamEnd) + Send>;

/// What an event stream goes through: the rewriter, or (not rewritten) the framer that only finds
/// where its events end. Either way every byte is scanned once, and a failure cuts between events.
#[derive(Debug)]
pub enum Events {
    Rewrite(Box<SseRewriter>),
    Pass(Framer),
}

pin_project! {
    /// An upstream event stream on its way to the client.
    pub struct SseBody<B> {
        #[pin]
        inner: Idle<B>,
        events: Events,
        rewriting: Duration,
        blocks: usize,
        done: bool,
        // The answer's terminal event went to the client: a client that leaves after it leaves a
        // complete stream.
        delivered_end: bool,
        log_content: bool,
        on_end: Option<OnEnd>,
    }

    impl<B> PinnedDrop for SseBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(on_end) = this.on_end.take() {
                let cancelled = !*this.done && !*this.delivered_end;
                on_end(StreamEnd { rewriting: *this.rewriting, blocks: *this.blocks, cancelled });
            }
        }
    }
}

impl<B> SseBody<B> {
    /// `on_end` is called once, when the body is dropped (the stream ended or the client left).
    pub fn new(inner: B, events: Events, idle: Duration, log_content: bool, on_end: OnEnd) -> Self {
        SseBody {
            inner: Idle::upstream(inner, idle),
            events,
            rewriting: Duration::ZERO,
            blocks: 0,
            done: false,
            delivered_end: false,
            log_content,
            on_end: Some(on_end),
        }
    }
}

impl<B> Body for SseBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        loop {
            let out = match this.inner.as_mut().poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        // Trailers cannot be carried to an HTTP/1.1 client of an event stream.
                        continue;
                    };
                    match this.events {
                        Events::Rewrite(rw) => {
                            let started = Instant::now();
                            let mut out = Vec::with_capacity(data.len() + 64);
                            rw.push(&data, &mut out);
                            *this.rewriting += started.elapsed();
                            // Kept current, so that a stream the client leaves still counts the
                            // blocks it rewrote.
                            *this.blocks = rw.stats().blocks_rewritten;
                            Bytes::from(out)
                        }
                        Events::Pass(framer) => framer.complete(data),
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let err = upstream_error(e);
                    if matches!(err, Error::UpstreamTimeout { .. }) {
                        tracing::warn!(error = %err, "upstream stream stalled");
                    } else {
                        tracing::warn!(error = %err, "upstream stream failed");
                    }
                    *this.done = true;
                    let out = finish(this.events, this.rewriting, this.blocks, Some(&err));
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                Poll::Ready(None) => {
                    *this.done = true;
                    let out = finish(this.events, this.rewriting, this.blocks, None);
                    if out.is_empty() {
                        return Poll::Ready(None);
                    }
                    out
                }
            };
            if out.is_empty() {
                continue;
            }
            if *this.log_content {
                tracing::debug!(chunk = %String::from_utf8_lossy(&out), "stream out");
            }
            if !*this.delivered_end && super::terminal::ends_answer(&out) {
                *this.delivered_end = true;
            }
            return Poll::Ready(Some(Ok(Frame::data(out))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// The end of a stream: what the rewriter or the framer still holds and, after a failure, the
/// in-band error event (the unfinished event the upstream broke off is dropped: a client's parser
/// would drop it, and the error says why it is missing).
fn finish(
    events: &mut Events,
    rewriting: &mut Duration,
    blocks: &mut usize,
    error: Option<&Error>,
) -> Bytes {
    let mut out = Vec::new();
    let dropped = match events {
        Events::Rewrite(rw) => {
            let started = Instant::now();
            let dropped = match error {
                None => {
                    rw.finish(&mut out);
                    0
                }
                Some(_) => rw.finish_broken(&mut out),
            };
            *rewriting += started.elapsed();
            *blocks = rw.stats().blocks_rewritten;
            dropped
        }
        Events::Pass(framer) => {
            let rest = framer.take_rest();
            match error {
                None => {
                    out.extend_from_slice(&rest);
                    0
                }
                Some(_) => {
                    if framer.is_mid_event() {
                        // An oversized event was already partly sent: end it so that the error
                        // stands alone.
                        out.extend_from_slice(b"\n\n");
                    }
                    rest.len()
                }
            }
        }
    };
    if let Some(err) = error {
        if dropped > 0 {
            tracing::warn!(bytes = dropped, "dropped the unfinished event the upstream broke off");
        }
        out.extend_from_slice(&err.sse_event());
    }
    Bytes::from(out)
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
    /// stays silent longer than the idle timeout (an [`Idle`] inside), and records why in its
    /// [`UploadWatch`].
    pub struct ClientBody<B> {
        #[pin]
        inner: Idle<B>,
        seen: usize,
        limit: usize,
        upload: UploadWatch,
    }
}

impl<B> ClientBody<B> {
    pub fn new(inner: B, limit: usize, idle: Duration, upload: UploadWatch) -> Self {
        let inner = Idle::new(inner, idle, |after| Error::ClientTimeout { after });
        ClientBody { inner, seen: 0, limit, upload }
    }
}

impl<B> Body for ClientBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.seen += data.len();
                    if *this.seen > *this.limit {
                        this.upload.set(ClientFault::TooLarge);
                        let err = Error::BodyTooLarge { limit: *this.limit };
                        return Poll::Ready(Some(Err(Box::new(err))));
                    }
                }
                this.upload.touch();
            }
            Poll::Ready(Some(Err(e))) => {
                if matches!(e.downcast_ref::<Error>(), Some(Error::ClientTimeout { .. })) {
                    this.upload.set(ClientFault::Idle);
                }
            }
            Poll::Ready(None) => this.upload.touch(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An upstream body read for rewriting: whole, or (past the limit) the part read so far and the rest,
/// still under its idle timeout.
pub enum Collected<B> {
    Whole(Bytes),
    TooLarge { head: Bytes, rest: Pin<Box<Idle<B>>> },
}

/// Reads an upstream body whole, up to `limit` bytes, failing when it stays silent longer than `idle`.
pub async fn collect_up_to<B>(body: B, idle: Duration, limit: usize) -> Result<Collected<B>, Error>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let hint = body.size_hint().exact().and_then(|n| usize::try_from(n).ok());
    let mut buf: Vec<u8> = Vec::with_capacity(hint.unwrap_or(0).min(limit));
    let mut body = Box::pin(Idle::upstream(body, idle));
    loop {
        match body.frame().await {
            None => return Ok(Collected::Whole(Bytes::from(buf))),
            Some(Err(e)) => return Err(upstream_error(e)),
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    buf.extend_from_slice(data);
                    if buf.len() > limit {
                        return Ok(Collected::TooLarge { head: Bytes::from(buf), rest: body });
                    }
                }
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
    use std::convert::Infallible;
    use std::sync::Mutex;

    use futures_util::stream::{self, StreamExt};
    use http_body_util::StreamBody;

    use super::*;

    type Frames = Vec<Result<Frame<Bytes>, Infallible>>;

    fn frames(parts: &[&'static [u8]]) -> Frames {
        parts.iter().map(|p| Ok(Frame::data(Bytes::from_static(p)))).collect()
    }

    /// The ends a stream reported, and the callback that records them.
    fn recorder() -> (Arc<Mutex<Vec<StreamEnd>>>, OnEnd) {
        let ends = Arc::new(Mutex::new(Vec::new()));
        let record = ends.clone();
        (ends, Box::new(move |end| record.lock().unwrap_or_else(|e| e.into_inner()).push(end)))
    }

    fn cancelled(ends: &Mutex<Vec<StreamEnd>>) -> Vec<bool> {
        ends.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|e| e.cancelled).collect()
    }

    #[tokio::test]
    async fn a_framed_stream_passes_whole_events_and_reports_its_end_once() {
        let (ends, on_end) = recorder();
        let upstream = StreamBody::new(stream::iter(frames(&[
            b"data: a\n",
            b"\ndata: b\n\n",
            b"data: [DONE]\n\n",
        ])));
        let events = Events::Pass(Framer::default());
        let body = SseBody::new(upstream, events, Duration::from_secs(60), false, on_end);
        let out = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        assert_eq!(&out[..], b"data: a\n\ndata: b\n\ndata: [DONE]\n\n");
        assert_eq!(cancelled(&ends), [false]);
    }

    #[tokio::test]
    async fn a_client_that_leaves_before_the_answer_ends_cancels_the_stream() {
        for (parts, want) in [
            (&[&b"data: a\n\n"[..]][..], true),
            (&[&b"data: a\n\n"[..], b"data: [DONE]\n\n"][..], false),
        ] {
            let (ends, on_end) = recorder();
            // The upstream then stays open: only the client leaving ends the stream.
            let upstream = StreamBody::new(stream::iter(frames(parts)).chain(stream::pending()));
            let events = Events::Pass(Framer::default());
            let mut body =
                Box::pin(SseBody::new(upstream, events, Duration::from_secs(60), false, on_end));
            for _ in parts {
                assert!(body.frame().await.is_some_and(|f| f.is_ok()));
            }
            assert!(cancelled(&ends).is_empty(), "nothing reported while the body lives");
            drop(body);
            assert_eq!(cancelled(&ends), [want], "{parts:?}");
        }
    }

    #[tokio::test]
    async fn a_stalled_stream_ends_between_events_with_the_in_band_error() {
        let (ends, on_end) = recorder();
        let upstream = StreamBody::new(
            stream::iter(frames(&[b"data: a\n\ndata: par"])).chain(stream::pending()),
        );
        let idle = Duration::from_millis(50);
        let body = SseBody::new(upstream, Events::Pass(Framer::default()), idle, false, on_end);
        let out = tokio::time::timeout(Duration::from_secs(30), body.collect()).await;
        let out = out.ok().and_then(Result::ok).map(|c| c.to_bytes()).unwrap_or_default();
        let mut want = b"data: a\n\n".to_vec();
        want.extend_from_slice(
            &Error::UpstreamTimeout { phase: TimeoutPhase::Idle, after: idle }.sse_event(),
        );
        assert_eq!(out, want, "the unfinished event is dropped, the error stands alone");
        assert_eq!(cancelled(&ends), [false]);
    }

    #[tokio::test]
    async fn an_upload_past_its_limit_or_silent_says_why() {
        let upload = UploadWatch::default();
        let client = StreamBody::new(stream::iter(frames(&[b"12345", b"678"])));
        let body = ClientBody::new(client, 6, Duration::from_secs(60), upload.clone());
        assert!(body.collect().await.is_err());
        assert_eq!(upload.get(), Some(ClientFault::TooLarge));

        let upload = UploadWatch::default();
        let client = StreamBody::new(stream::iter(frames(&[b"12"])).chain(stream::pending()));
        let body = ClientBody::new(client, 6, Duration::from_millis(50), upload.clone());
        let result = tokio::time::timeout(Duration::from_secs(30), body.collect()).await;
        assert!(matches!(result, Ok(Err(_))));
        assert_eq!(upload.get(), Some(ClientFault::Idle));
    }
}

//! A real sandgate on loopback (in process, or the binary as a child) in front of the scripted
//! upstream.

use std::time::Duration;

use crate::support::openai::{self, ORIGINALS};
use crate::support::{End, Reply, ScriptedUpstream};

mod binary;
mod context;
mod edge_limits;
mod faults;
mod mode_off;
mod recorded;
mod restore_trust;
mod routes;
mod stream_faults;
mod tls;
mod tools;

/// An upstream that answers every request with the first `1/part` of a chat stream of
/// `ORIGINALS[0]` (with the usage chunk when `usage`), in chunks of `chunk` bytes 1 ms apart, then
/// ends as `end` says (stalls or cuts the connection).
async fn partial_stream(part: usize, usage: bool, chunk: usize, end: End) -> ScriptedUpstream {
    let sse = openai::chat_sse(&ORIGINALS[..1], usage);
    let sent = sse.len() / part;
    ScriptedUpstream::start(move |_| {
        Reply::sse(sse[..sent].to_owned(), chunk, Duration::from_millis(1)).end(end)
    })
    .await
}

//! Whether the events sent to a client include the one that ends the answer: `data: [DONE]` (Chat
//! Completions, Completions) or a Responses event of type `response.completed`, `response.incomplete`
//! or `response.failed`. A client may close the connection right after it (openai-python does,
//! before the upstream body has ended): that stream is complete, not cancelled.
//!
//! Only whole events are looked at (the body's framer hands out complete events). A match must
//! start a line: text inside a JSON data line cannot, since JSON escapes its line breaks, and a
//! JSON string cannot hold an unescaped `"`, so `"type":"response.completed"` is the event itself.

use std::sync::LazyLock;

use memchr::memmem::Finder;

/// Whether `events` (one or more complete server-sent events) holds a terminal event.
pub(crate) fn ends_answer(events: &[u8]) -> bool {
    events.split(|&b| b == b'\n' || b == b'\r').any(|line| {
        let Some(value) = field(line, b"data") else {
            return field(line, b"event").is_some_and(is_terminal_type);
        };
        value == b"[DONE]" || terminal_json_type(value)
    })
}

/// The value of `name: value` (one optional space after the colon, as the SSE format says).
fn field<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let rest = line.strip_prefix(name)?.strip_prefix(b":")?;
    Some(rest.strip_prefix(b" ").unwrap_or(rest))
}

fn is_terminal_type(ty: &[u8]) -> bool {
    matches!(ty, b"response.completed" | b"response.incomplete" | b"response.failed")
}

/// The start of a Responses event's `type`; the finder is built once (building it for each event,
/// with its needles, was about 1% of the proxy's CPU on a chat stream, under perf).
static RESPONSE_TYPE: LazyLock<Finder<'static>> =
    LazyLock::new(|| Finder::new(b"\"type\":\"response."));

/// A Responses event sent without an `event:` line: its JSON's top-level `type`.
fn terminal_json_type(data: &[u8]) -> bool {
    if !data.starts_with(b"{") {
        return false;
    }
    let start = RESPONSE_TYPE.needle().len();
    RESPONSE_TYPE.find_iter(data).any(|at| {
        let rest = &data[at + start..];
        [&b"completed\""[..], b"incomplete\"", b"failed\""].iter().any(|ty| rest.starts_with(ty))
    })
}

#[cfg(test)]
mod tests {
    use super::ends_answer;

    #[test]
    fn done_and_terminal_responses_events_end_an_answer() {
        assert!(ends_answer(b"data: [DONE]\n\n"));
        assert!(ends_answer(b"data: {\"a\":1}\n\ndata:[DONE]\r\n\r\n"));
        assert!(ends_answer(
            b"event: response.completed\ndata: {\"type\":\"response.completed\"}\n\n"
        ));
        assert!(ends_answer(b"event: response.failed\ndata: {}\n\n"));
        assert!(ends_answer(b"data: {\"type\":\"response.incomplete\",\"response\":{}}\n\n"));
    }

    #[test]
    fn text_that_only_mentions_the_end_does_not() {
        assert!(!ends_answer(b"data: {\"content\":\"data: [DONE]\"}\n\n"));
        assert!(!ends_answer(b"data: {\"delta\":\"\\ndata: [DONE]\"}\n\n"));
        assert!(!ends_answer(b"data: {\"delta\":\"\\\"type\\\":\\\"response.completed\\\"\"}\n\n"));
        assert!(!ends_answer(b"event: response.output_text.delta\ndata: {}\n\n"));
        assert!(!ends_answer(b"data: {\"type\":\"response.created\",\"response\":{}}\n\n"));
        assert!(!ends_answer(b"data: {\"type\":\"response.failed_over\"}\n\n"));
        assert!(!ends_answer(b": data: [DONE]\n\n"));
        assert!(!ends_answer(b""));
    }
}

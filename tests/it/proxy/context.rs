//! The cells context through the proxy, against the scripted upstream on loopback: an answer's later
//! links carry its earlier blocks; with the conversation context (config `context` or the
//! `x-sandgate-context` header) the Python blocks of the earlier answers in the request's history
//! come first, in JSON answers and streams of Chat Completions and Responses; the history still
//! reaches the upstream byte-exact and the header does not; the budget holds; a bad header is a 400.

use crate::support::engine::{payload_blocks, payload_cx};
use crate::support::openai::{self, ORIGINALS};
use crate::support::{post_json, start_sandgate, ScriptedUpstream};
use serde_json::{json, Value};

/// The Python blocks of [`ORIGINALS`], in order.
const PLOT: &str = "import plotly.express as px\nfig = px.bar(x=[\"A\", \"B\", \"C\"], y=[10, 20, 15])\nfig.show()\n";
const SUM: &str = "print(sum(range(10)))\n";
const LOOP: &str = "for i in range(3):\n    print(i)\n";

type Cx = Option<(Vec<String>, usize)>;

fn cx(cells: &[&str], omitted: usize) -> Cx {
    Some((cells.iter().map(|c| (*c).to_owned()).collect(), omitted))
}

fn chat(messages: Value, n: u64, stream: bool) -> Value {
    json!({"model": "gpt-test", "n": n, "stream": stream, "messages": messages})
}

/// The texts of a chat answer, JSON or stream.
fn chat_texts(body: &[u8], stream: bool) -> Vec<String> {
    if stream {
        openai::chat_stream(&openai::parse_sse(body), "delta").texts
    } else {
        openai::json_texts(&serde_json::from_slice(body).unwrap(), "message")
    }
}

/// A first turn as a client sees it: the rewritten answers to a question.
async fn first_turn(addr: std::net::SocketAddr) -> Vec<String> {
    let question = json!([{"role": "user", "content": "plot A, B, C"}]);
    let (status, _, body) =
        post_json(addr, "/v1/chat/completions", &chat(question, 2, false), &[]).await;
    assert_eq!(status, 200);
    let texts = chat_texts(&body, false);
    // Within one answer, the later link carries the earlier block: the answer context.
    assert_eq!(payload_blocks(&texts[1]), [SUM, LOOP]);
    assert_eq!(payload_cx(&texts[1]), [None, cx(&[SUM], 0)]);
    assert_eq!(payload_cx(&texts[0]), [None]);
    texts
}

#[tokio::test]
async fn conversation_context_comes_from_the_history() {
    let up = ScriptedUpstream::start(openai::script).await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    let rewritten = first_turn(sg.addr()).await;

    // The second turn sends the first answer back as history, with a user message holding Python
    // (not an answer: not a cell).
    let history = json!([
        {"role": "user", "content": "plot A, B, C\n\n```python\nuser_code = 1\n```\n"},
        {"role": "assistant", "content": rewritten[0]},
        {"role": "user", "content": "and the sums?"}]);
    for stream in [false, true] {
        let request = chat(history.clone(), 2, stream);
        let header = [("x-sandgate-context", "conversation")];
        let (status, _, body) =
            post_json(sg.addr(), "/v1/chat/completions", &request, &header).await;
        assert_eq!(status, 200, "stream={stream}");
        let texts = chat_texts(&body, stream);
        assert_eq!(
            payload_cx(&texts[0]),
            [cx(&[PLOT], 0)],
            "stream={stream}: the earlier answer's block comes first"
        );
        assert_eq!(
            payload_cx(&texts[1]),
            [cx(&[PLOT], 0), cx(&[PLOT, SUM], 0)],
            "stream={stream}: then the answer's own, in each choice"
        );
        let got = up.last_request();
        assert!(got.header("x-sandgate-context").is_none(), "the header is not forwarded");
        assert_eq!(
            got.json()["messages"][1]["content"],
            ORIGINALS[0],
            "history restored byte-exact"
        );
    }

    // Without the header the configured context (answer) holds: no history in cx.
    let (_, _, body) =
        post_json(sg.addr(), "/v1/chat/completions", &chat(history.clone(), 2, false), &[]).await;
    let texts = chat_texts(&body, false);
    assert_eq!(payload_cx(&texts[0]), [None]);
    assert_eq!(payload_cx(&texts[1]), [None, cx(&[SUM], 0)]);

    // `off` gives version-1 links: no cx at all.
    let header = [("x-sandgate-context", "off")];
    let (_, _, body) =
        post_json(sg.addr(), "/v1/chat/completions", &chat(history, 2, true), &header).await;
    let texts = chat_texts(&body, true);
    assert_eq!(payload_blocks(&texts[1]), [SUM, LOOP]);
    assert!(!texts.concat().contains("&cx="), "{texts:?}");
}

#[tokio::test]
async fn configured_conversation_context_with_a_budget() {
    let up = ScriptedUpstream::start(openai::script).await;
    // Room for SUM and LOOP (22 + 32 bytes), not for PLOT (87) nor for three blocks.
    let sg = start_sandgate(&up.base_url(), |raw| {
        raw.set("context", "conversation").unwrap();
        raw.set("context_bytes", "60").unwrap();
    })
    .await;
    let rewritten = first_turn(sg.addr()).await;

    // Two earlier answers: one rewritten by sandgate, one as raw markdown (a client that never went
    // through sandgate, or a conversation from before): both are answers, both give cells, in order.
    let history = json!([
        {"role": "user", "content": "plot"},
        {"role": "assistant", "content": rewritten[0]},
        {"role": "user", "content": "sums"},
        {"role": "assistant", "content": [{"type": "text", "text": ORIGINALS[1]}]},
        {"role": "user", "content": "again"}]);
    let (status, _, body) =
        post_json(sg.addr(), "/v1/chat/completions", &chat(history, 2, true), &[]).await;
    assert_eq!(status, 200);
    let texts = chat_texts(&body, true);
    // History: PLOT, SUM, LOOP; PLOT does not fit: left out, counted.
    assert_eq!(payload_cx(&texts[0]), [cx(&[SUM, LOOP], 1)]);
    // The answer's own SUM pushes out the history's SUM, the oldest left.
    assert_eq!(payload_cx(&texts[1]), [cx(&[SUM, LOOP], 1), cx(&[LOOP, SUM], 2)]);

    // The header can turn it back to the answer alone.
    let history = json!([{"role": "assistant", "content": ORIGINALS[0]}]);
    let header = [("x-sandgate-context", "Answer")];
    let (_, _, body) =
        post_json(sg.addr(), "/v1/chat/completions", &chat(history, 1, false), &header).await;
    assert_eq!(payload_cx(&chat_texts(&body, false)[0]), [None]);
}

#[tokio::test]
async fn responses_history_gives_cells_too() {
    let up = ScriptedUpstream::start(openai::script).await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    let rewritten = first_turn(sg.addr()).await;
    let request = |stream: bool| {
        json!({"model": "gpt-test", "stream": stream, "input": [
            {"role": "user", "content": "sums"},
            {"type": "message", "role": "assistant",
             "content": [{"type": "output_text", "text": rewritten[1]}]},
            {"role": "user", "content": "plot"}]})
    };
    let header = [("x-sandgate-context", "conversation")];
    let (status, _, body) = post_json(sg.addr(), "/v1/responses", &request(false), &header).await;
    assert_eq!(status, 200);
    let text = openai::responses_text(&serde_json::from_slice(&body).unwrap());
    assert_eq!(payload_cx(&text), [cx(&[SUM, LOOP], 0)]);
    assert_eq!(up.last_request().json()["input"][1]["content"][0]["text"], ORIGINALS[1]);

    let (status, _, body) = post_json(sg.addr(), "/v1/responses", &request(true), &header).await;
    assert_eq!(status, 200);
    let s = openai::responses_stream(&openai::parse_sse(&body));
    assert_eq!(payload_cx(&s.deltas), [cx(&[SUM, LOOP], 0)]);
    assert_eq!(s.completed, s.deltas, "the full texts repeat the deltas, cx included");
    assert_eq!(s.text_done, s.deltas);
}

#[tokio::test]
async fn a_bad_context_header_is_refused() {
    let up = ScriptedUpstream::start(openai::script).await;
    let sg = start_sandgate(&up.base_url(), |_| {}).await;
    let question = json!([{"role": "user", "content": "hi"}]);
    for bad in ["notebook", "", "answer,conversation"] {
        let header = [("x-sandgate-context", bad)];
        let (status, _, body) = post_json(
            sg.addr(),
            "/v1/chat/completions",
            &chat(question.clone(), 1, false),
            &header,
        )
        .await;
        assert_eq!(status, 400, "{bad:?}");
        let (kind, code, message) = crate::support::error_of(&body);
        assert_eq!(
            (kind.as_str(), code.as_str()),
            ("invalid_request_error", "invalid_sandgate_context")
        );
        assert!(message.contains(&format!("{bad:?}")), "{message}");
        assert!(message.contains("off, answer, conversation"), "{message}");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["param"], "x-sandgate-context");
    }
    assert!(up.requests().is_empty(), "nothing went upstream");
}

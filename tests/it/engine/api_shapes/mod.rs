//! The OpenAI API shapes through the rewriter, JSON and SSE.
//!
//! The expectations are computed with the engine itself (`rewrite::rewrite`, the one-shot output),
//! so these tests hold for any engine whose streaming output, for every chunking, concatenates to
//! its one-shot output. The inputs contain Python blocks cut into many small deltas (fence lines
//! split too), several choices or parts with different texts, and events around them that must pass
//! untouched: a dropped, duplicated, reordered or misrouted delta changes a concatenated text and
//! fails the comparison.

use std::collections::BTreeMap;
use std::sync::Arc;

use sandgate::rewrite::api::{restore_request, rewrite_json, Endpoint, SseRewriter, Stats};
use sandgate::rewrite::sse::{Decoder, Event};
use sandgate::rewrite::{self, Mode, Options, Rewriter};
use serde_json::{json, Value};

/// Prose, a Python block, a bash block, and a tilde `py` block with non-ASCII text.
const MD_A: &str = "Here is a quick way to list primes:\n\n```python\ndef primes(n):\n    out = []\n    for k in range(2, n):\n        if all(k % p for p in out):\n            out.append(k)\n    return out\n\nprint(primes(30))\n```\n\nIt prints the primes below 30. In the shell:\n\n```bash\nseq 2 29 | factor\n```\n\nAnd squares — ✓ héllo 🐍:\n\n~~~py\nimport math\nprint([math.sqrt(i) for i in range(5)])\n~~~\n";

/// A Python block in a list item, then an unclosed block cut by max_tokens.
const MD_B: &str = "Steps:\n\n1. Install nothing.\n2. Run this:\n\n   ```python3\n   x = [i * i for i in range(5)]\n   print(x)\n   ```\n\n3. Then this one:\n\n```python\nfor i in range(3):\n    print(\"line\", i)\n";

/// No Python at all (inline code and a JavaScript block).
const MD_PROSE: &str =
    "Use `print()` to show a value.\n\n```js\nconsole.log(1)\n```\n\nThat is all. ✓\n";

/// The options the tests run with: every mode, the code shown or hidden.
fn all_opts() -> Vec<Arc<Options>> {
    let mut all = Vec::new();
    for mode in [Mode::Link, Mode::Widget, Mode::Artifact] {
        for show_code in [true, false] {
            all.push(Arc::new(Options { mode, show_code, ..Options::default() }));
        }
    }
    all
}

/// The engine's one-shot output and block count.
fn one_shot(opts: &Arc<Options>, text: &str) -> (String, usize) {
    let mut rewriter = Rewriter::new(Arc::clone(opts));
    let mut out = String::new();
    rewriter.push(text, &mut out);
    rewriter.finish(&mut out);
    assert_eq!(out, rewrite::rewrite(opts, text), "push+finish equals rewrite");
    (out, rewriter.blocks())
}

/// Cuts `text` into pieces of 1 to 6 characters, pseudo-randomly from `seed`.
fn split(text: &str, seed: u64) -> Vec<String> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let chars: Vec<char> = text.chars().collect();
    let mut pieces = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let len = 1 + ((state >> 33) % 6) as usize;
        let end = (at + len).min(chars.len());
        pieces.push(chars[at..end].iter().collect());
        at = end;
    }
    pieces
}

/// Cuts `text` so that every backtick and tilde is a delta of its own (fence lines split apart).
fn split_fences(text: &str) -> Vec<String> {
    let mut pieces: Vec<String> = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if c == '`' || c == '~' || c == '\n' {
            if !current.is_empty() {
                pieces.push(std::mem::take(&mut current));
            }
            pieces.push(c.to_string());
        } else {
            current.push(c);
            if current.len() >= 4 {
                pieces.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

/// The length in bytes of the longest common prefix of two texts.
fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or(a.len().min(b.len()), |((i, _), _)| i)
}

fn sse_bytes(datas: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for data in datas {
        out.extend_from_slice(format!("data: {data}\n\n").as_bytes());
    }
    out
}

/// Runs `input` through an [`SseRewriter`] fed in chunks of `chunk` bytes.
fn run(endpoint: Endpoint, opts: &Arc<Options>, input: &[u8], chunk: usize) -> (Vec<u8>, Stats) {
    let mut rewriter = SseRewriter::new(endpoint, Arc::clone(opts));
    let mut out = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        rewriter.push(piece, &mut out);
    }
    rewriter.finish(&mut out);
    (out, rewriter.stats())
}

/// Runs `input` in several chunkings (whole, 1, 2, 7, 64 and 1000 bytes) and checks that they all
/// give the same output and stats.
fn run_all(endpoint: Endpoint, opts: &Arc<Options>, input: &[u8]) -> (Vec<u8>, Stats) {
    let whole = run(endpoint, opts, input, input.len());
    for chunk in [1, 2, 7, 64, 1000] {
        let got = run(endpoint, opts, input, chunk);
        assert_eq!(
            String::from_utf8_lossy(&got.0),
            String::from_utf8_lossy(&whole.0),
            "chunks of {chunk} bytes give the same output"
        );
        assert_eq!(got.1, whole.1, "chunks of {chunk} bytes give the same stats");
    }
    whole
}

fn events(bytes: &[u8]) -> Vec<Event> {
    let mut decoder = Decoder::new();
    let mut events = Vec::new();
    decoder.push(bytes, &mut events);
    decoder.finish(&mut events);
    events
}

fn parse(event: &Event) -> Option<Value> {
    serde_json::from_str(event.data()?).ok()
}

// ---------------------------------------------------------------------------------------------
// Chat Completions and legacy Completions

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Chat,
    Legacy,
}

impl Kind {
    fn endpoint(self) -> Endpoint {
        match self {
            Kind::Chat => Endpoint::ChatCompletions,
            Kind::Legacy => Endpoint::Completions,
        }
    }
}

const CHAT_ID: &str = "chatcmpl-AZ3pQ7x1d0";

fn chat_chunk(choice: Value) -> String {
    json!({
        "id": CHAT_ID,
        "object": "chat.completion.chunk",
        "created": 1731000000,
        "model": "gpt-4o-2024-08-06",
        "service_tier": "default",
        "system_fingerprint": "fp_50cad350e4",
        "choices": [choice],
        "usage": null,
        "obfuscation": "x1"
    })
    .to_string()
}

fn legacy_chunk(choice: Value) -> String {
    json!({
        "id": "cmpl-8xYz01",
        "object": "text_completion",
        "created": 1731000002,
        "choices": [choice],
        "model": "gpt-3.5-turbo-instruct",
    })
    .to_string()
}

fn content_choice(kind: Kind, index: usize, text: &str, finish: Option<&str>) -> Value {
    match kind {
        Kind::Chat => {
            json!({"index": index, "delta": {"content": text}, "logprobs": null, "finish_reason": finish})
        }
        Kind::Legacy => {
            json!({"text": text, "index": index, "logprobs": null, "finish_reason": finish})
        }
    }
}

fn chunk_of(kind: Kind, choice: Value) -> String {
    match kind {
        Kind::Chat => chat_chunk(choice),
        Kind::Legacy => legacy_chunk(choice),
    }
}

/// How a generated stream ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Finish chunks, the usage chunk, `[DONE]`.
    Full,
    /// The last delta of each choice carries the finish reason itself; then `[DONE]`.
    FinishWithText,
    /// Cut off: no finish chunk, no `[DONE]`.
    Cut,
}

/// A chat or legacy stream: role chunks, the choices' deltas interleaved round-robin, a comment and
/// a keep-alive in the middle, then the given ending.
fn choice_stream(kind: Kind, choices: &[Vec<String>], ending: Ending) -> Vec<u8> {
    let mut datas = Vec::new();
    if kind == Kind::Chat {
        for index in 0..choices.len() {
            datas.push(chat_chunk(json!({"index": index, "delta": {"role": "assistant", "content": "", "refusal": null}, "logprobs": null, "finish_reason": null})));
        }
    }
    let longest = choices.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = sse_bytes(&datas);
    for step in 0..longest {
        let mut datas = Vec::new();
        for (index, deltas) in choices.iter().enumerate() {
            if let Some(delta) = deltas.get(step) {
                let last = step + 1 == deltas.len();
                let finish = (last && ending == Ending::FinishWithText).then_some("stop");
                datas.push(chunk_of(kind, content_choice(kind, index, delta, finish)));
            }
        }
        out.extend(sse_bytes(&datas));
        if step == longest / 2 {
            out.extend_from_slice(b": keep-alive\n\n\n");
        }
    }
    let mut datas = Vec::new();
    if ending == Ending::Full {
        for index in 0..choices.len() {
            let choice = match kind {
                Kind::Chat => {
                    json!({"index": index, "delta": {}, "logprobs": null, "finish_reason": "stop"})
                }
                Kind::Legacy => {
                    json!({"text": "", "index": index, "logprobs": null, "finish_reason": "length"})
                }
            };
            datas.push(chunk_of(kind, choice));
        }
        let usage = json!({"prompt_tokens": 12, "completion_tokens": 99, "total_tokens": 111});
        let mut chunk: Value = serde_json::from_str(&chunk_of(kind, json!(null))).unwrap();
        chunk["choices"] = json!([]);
        chunk["usage"] = usage;
        datas.push(chunk.to_string());
    }
    if ending != Ending::Cut {
        datas.push("[DONE]".to_owned());
    }
    out.extend(sse_bytes(&datas));
    out
}

/// The text of a choice in a chunk: `delta.content` or `text`, when it is a string.
fn choice_text(kind: Kind, choice: &Value) -> Option<&str> {
    match kind {
        Kind::Chat => choice["delta"]["content"].as_str(),
        Kind::Legacy => choice["text"].as_str(),
    }
}

/// The concatenated text of every choice index in a stream.
fn choice_texts(kind: Kind, bytes: &[u8]) -> BTreeMap<u64, String> {
    let mut texts: BTreeMap<u64, String> = BTreeMap::new();
    for event in events(bytes) {
        let Some(value) = parse(&event) else { continue };
        for choice in value["choices"].as_array().into_iter().flatten() {
            if let Some(text) = choice_text(kind, choice) {
                let index = choice["index"].as_u64().unwrap();
                texts.entry(index).or_default().push_str(text);
            }
        }
    }
    texts
}

/// The value with every choice text blanked: what must not change when a text is rewritten.
fn without_texts(kind: Kind, mut value: Value) -> Value {
    if let Some(choices) = value["choices"].as_array_mut() {
        for choice in choices {
            let slot = match kind {
                Kind::Chat => choice.get_mut("delta").and_then(|d| d.get_mut("content")),
                Kind::Legacy => choice.get_mut("text"),
            };
            if let Some(slot) = slot.filter(|s| s.is_string()) {
                *slot = json!("");
            }
        }
    }
    value
}

/// Whether a chunk finishes choice `index` without carrying text for it.
fn finishes_without_text(kind: Kind, value: &Value, index: u64) -> bool {
    value["choices"].as_array().into_iter().flatten().any(|c| {
        c["index"].as_u64() == Some(index)
            && !c["finish_reason"].is_null()
            && choice_text(kind, c).is_none()
    })
}

/// Walks the output against the input: every input event appears, in order, either byte-identical
/// or (only when its text changed) re-serialised with nothing but the text changed; every other
/// output event is a synthesized chunk (same envelope, one choice, non-empty text, no finish
/// reason) placed just before that choice's finish chunk, before `[DONE]`, or at the end.
fn check_choice_alignment(kind: Kind, input: &[u8], output: &[u8]) {
    let ins = events(input);
    let outs = events(output);
    let mut next = 0;
    for out in &outs {
        if let Some(inp) = ins.get(next) {
            if out.raw() == inp.raw() {
                next += 1;
                continue;
            }
            if let (Some(a), Some(b)) = (parse(inp), parse(out)) {
                let changed = a["choices"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .zip(b["choices"].as_array().into_iter().flatten())
                    .any(|(x, y)| choice_text(kind, x) != choice_text(kind, y));
                if changed && without_texts(kind, a.clone()) == without_texts(kind, b.clone()) {
                    next += 1;
                    continue;
                }
            }
        }
        // Not the next input event: it must be a synthesized chunk.
        let value = parse(out).unwrap_or_else(|| {
            panic!(
                "unexpected output event {:?} (next input event {:?})",
                String::from_utf8_lossy(out.raw()),
                ins.get(next).map(|e| String::from_utf8_lossy(e.raw()).into_owned())
            )
        });
        let choices = value["choices"].as_array().expect("synthesized chunk has choices");
        assert_eq!(choices.len(), 1, "synthesized chunk has one choice");
        let choice = &choices[0];
        assert!(choice["finish_reason"].is_null(), "synthesized chunk does not finish");
        let text = choice_text(kind, choice).expect("synthesized chunk has text");
        assert!(!text.is_empty(), "synthesized chunk is not empty");
        let index = choice["index"].as_u64().unwrap();
        let template = parse(&ins[0]).unwrap();
        for key in ["id", "object", "created", "model"] {
            assert_eq!(value[key], template[key], "synthesized chunk keeps `{key}`");
        }
        match ins.get(next) {
            None => {}
            Some(e) if e.data() == Some("[DONE]") => {}
            Some(e) => {
                let following = parse(e).expect("the event after a synthesized chunk is JSON");
                assert!(
                    finishes_without_text(kind, &following, index),
                    "a synthesized chunk precedes the finish chunk of its choice"
                );
            }
        }
    }
    assert_eq!(next, ins.len(), "every input event appears in the output, in order");
}

/// The whole check of a choice stream: the text of every choice is the engine's one-shot output,
/// the events align, the block count is right, and the JSON path agrees with the stream.
fn check_choices(
    kind: Kind,
    opts: &Arc<Options>,
    texts: &[&str],
    deltas: &[Vec<String>],
    ending: Ending,
) {
    for (text, pieces) in texts.iter().zip(deltas) {
        assert_eq!(pieces.concat(), *text, "the deltas make up the text");
    }
    let input = choice_stream(kind, deltas, ending);
    let (output, stats) = run_all(kind.endpoint(), opts, &input);
    let got = choice_texts(kind, &output);
    let mut blocks = 0;
    for (index, text) in texts.iter().enumerate() {
        let (expected, n) = one_shot(opts, text);
        blocks += n;
        assert_eq!(
            got.get(&(index as u64)).map(String::as_str),
            Some(expected.as_str()),
            "choice {index}: the streamed text is the one-shot rewrite"
        );
        // Streamed equals non-streamed.
        let body = match kind {
            Kind::Chat => {
                json!({"id": CHAT_ID, "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})
            }
            Kind::Legacy => {
                json!({"id": "cmpl-1", "object": "text_completion", "choices": [{"text": text, "index": 0, "finish_reason": "stop"}]})
            }
        };
        let json_text = match rewrite_json(kind.endpoint(), opts, body.to_string().as_bytes()) {
            None => (*text).to_owned(),
            Some((bytes, _)) => {
                let value: Value = serde_json::from_slice(&bytes).unwrap();
                match kind {
                    Kind::Chat => {
                        value["choices"][0]["message"]["content"].as_str().unwrap().to_owned()
                    }
                    Kind::Legacy => value["choices"][0]["text"].as_str().unwrap().to_owned(),
                }
            }
        };
        assert_eq!(json_text, expected, "choice {index}: streamed equals non-streamed");
    }
    assert_eq!(stats.blocks_rewritten, blocks, "blocks counted");
    check_choice_alignment(kind, &input, &output);
    // Events whose text lies before the first byte the engine changes go out byte-identical.
    let unchanged: Vec<usize> =
        texts.iter().map(|t| common_prefix(t, &one_shot(opts, t).0)).collect();
    let outs: std::collections::HashSet<Vec<u8>> =
        events(&output).iter().map(|e| e.raw().to_vec()).collect();
    // (The last event with text of a choice carries whatever the engine adds at the very end.)
    let input_events = events(&input);
    let mut last_text_event = vec![0; texts.len()];
    for (number, event) in input_events.iter().enumerate() {
        let Some(value) = parse(event) else { continue };
        for choice in value["choices"].as_array().into_iter().flatten() {
            if choice_text(kind, choice).is_some() {
                last_text_event[choice["index"].as_u64().unwrap() as usize] = number;
            }
        }
    }
    let mut offsets = vec![0; texts.len()];
    for (number, event) in input_events.iter().enumerate() {
        let Some(value) = parse(event) else { continue };
        for choice in value["choices"].as_array().into_iter().flatten() {
            let Some(text) = choice_text(kind, choice) else {
                continue;
            };
            let index = choice["index"].as_u64().unwrap() as usize;
            offsets[index] += text.len();
            if offsets[index] <= unchanged[index] && number != last_text_event[index] {
                assert!(
                    outs.contains(event.raw()),
                    "an event before the first change is byte-identical: {}",
                    String::from_utf8_lossy(event.raw())
                );
            }
        }
    }
    // The end of the stream is where it was.
    let last_in = events(&input).pop().unwrap();
    let last_out = events(&output).pop().unwrap();
    if ending != Ending::Cut {
        assert_eq!(last_in.data(), Some("[DONE]"));
        assert_eq!(last_out.raw(), last_in.raw(), "[DONE] passes unchanged, last");
    }
}

#[test]
fn chat_single_choice_small_deltas() {
    for opts in all_opts() {
        for seed in 0..4 {
            let deltas = vec![split(MD_A, seed)];
            check_choices(Kind::Chat, &opts, &[MD_A], &deltas, Ending::Full);
        }
        check_choices(Kind::Chat, &opts, &[MD_B], &[split_fences(MD_B)], Ending::Full);
        check_choices(Kind::Chat, &opts, &[MD_A], &[split_fences(MD_A)], Ending::FinishWithText);
    }
}

#[test]
fn chat_n2_interleaved_choices_keep_their_own_state() {
    for opts in all_opts() {
        let texts = [MD_A, MD_B];
        let deltas = vec![split(MD_A, 7), split_fences(MD_B)];
        check_choices(Kind::Chat, &opts, &texts, &deltas, Ending::Full);
        let texts = [MD_B, MD_PROSE, MD_A];
        let deltas = vec![split(MD_B, 1), split(MD_PROSE, 2), split_fences(MD_A)];
        check_choices(Kind::Chat, &opts, &texts, &deltas, Ending::FinishWithText);
    }
}

#[test]
fn chat_stream_cut_without_finish_or_done_flushes_at_eof() {
    for opts in all_opts() {
        let deltas = vec![split(MD_B, 3), split(MD_A, 4)];
        check_choices(Kind::Chat, &opts, &[MD_B, MD_A], &deltas, Ending::Cut);
    }
}

#[test]
fn legacy_completions_stream_and_json() {
    for opts in all_opts() {
        check_choices(Kind::Legacy, &opts, &[MD_A], &[split_fences(MD_A)], Ending::Full);
        let deltas = vec![split(MD_B, 5), split(MD_A, 6)];
        check_choices(Kind::Legacy, &opts, &[MD_B, MD_A], &deltas, Ending::Full);
        check_choices(Kind::Legacy, &opts, &[MD_B], &[split(MD_B, 9)], Ending::Cut);
    }
}

#[test]
fn chat_stream_without_python_is_byte_identical() {
    let opts = Arc::new(Options::default());
    assert_eq!(rewrite::rewrite(&opts, MD_PROSE), MD_PROSE, "the engine leaves prose alone");
    for kind in [Kind::Chat, Kind::Legacy] {
        let input = choice_stream(kind, &[split(MD_PROSE, 11), split(MD_PROSE, 12)], Ending::Full);
        let (output, stats) = run_all(kind.endpoint(), &opts, &input);
        assert_eq!(String::from_utf8(output).unwrap(), String::from_utf8(input).unwrap());
        assert_eq!(stats.blocks_rewritten, 0);
    }
}

#[test]
fn chat_tool_calls_refusal_logprobs_usage_and_comments_pass_byte_identical() {
    let datas = [
        chat_chunk(json!({"index": 0, "delta": {"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "run", "arguments": ""}}], "refusal": null}, "logprobs": null, "finish_reason": null})),
        chat_chunk(json!({"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"code\": \"```python\\n"}}]}, "logprobs": null, "finish_reason": null})),
        chat_chunk(json!({"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "print(1)\\n```\"}"}}]}, "logprobs": null, "finish_reason": null})),
        chat_chunk(json!({"index": 1, "delta": {"role": "assistant", "content": null, "refusal": ""}, "logprobs": {"content": null, "refusal": []}, "finish_reason": null})),
        chat_chunk(json!({"index": 1, "delta": {"refusal": "```python\nno\n```"}, "logprobs": {"content": null, "refusal": [{"token": "no", "logprob": -0.0012038043, "bytes": [110, 111], "top_logprobs": []}]}, "finish_reason": null})),
        chat_chunk(json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": "tool_calls"})),
        chat_chunk(json!({"index": 1, "delta": {}, "logprobs": null, "finish_reason": "stop"})),
        json!({"id": CHAT_ID, "object": "chat.completion.chunk", "created": 1731000000, "model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": 79, "completion_tokens": 1, "total_tokens": 80, "completion_tokens_details": {"reasoning_tokens": 0}}}).to_string(),
        "[DONE]".to_owned(),
    ];
    let mut input = b": OPENROUTER PROCESSING\n\nretry: 1000\n\n".to_vec();
    input.extend(sse_bytes(&datas));
    for opts in all_opts() {
        let (output, stats) = run_all(Endpoint::ChatCompletions, &opts, &input);
        assert_eq!(String::from_utf8(output).unwrap(), String::from_utf8(input.clone()).unwrap());
        assert_eq!(stats.blocks_rewritten, 0);
    }
}

#[test]
fn invalid_json_events_and_unknown_shapes_pass_unchanged() {
    let deltas = split(MD_A, 21);
    let mut input = Vec::new();
    for (i, delta) in deltas.iter().enumerate() {
        input.extend(sse_bytes(&[chat_chunk(content_choice(Kind::Chat, 0, delta, None))]));
        match i {
            3 => input.extend_from_slice(
                b"data: {\"choices\": [{\"delta\": {\"content\": \"```python\n\n",
            ),
            5 => input.extend_from_slice(
                b"data: {\"error\": {\"message\": \"```python\\nx\\n```\"}}\n\n",
            ),
            7 => input.extend_from_slice(b"event: weird\r\ndata: [1, 2, \"content\"]\r\n\r\n"),
            9 => input.extend_from_slice(b"data: {\"choices\": \"content\"}\n\n"),
            _ => {}
        }
    }
    input.extend(sse_bytes(&[
        chat_chunk(json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"})),
        "[DONE]".to_owned(),
    ]));
    for opts in all_opts() {
        let (output, _) = run_all(Endpoint::ChatCompletions, &opts, &input);
        assert_eq!(
            choice_texts(Kind::Chat, &output).get(&0).map(String::as_str),
            Some(one_shot(&opts, MD_A).0.as_str())
        );
        check_choice_alignment(Kind::Chat, &input, &output);
        let text = String::from_utf8(output).unwrap();
        for odd in [
            "data: {\"choices\": [{\"delta\": {\"content\": \"```python\n\n",
            "data: {\"error\": {\"message\": \"```python\\nx\\n```\"}}\n\n",
            "event: weird\r\ndata: [1, 2, \"content\"]\r\n\r\n",
            "data: {\"choices\": \"content\"}\n\n",
        ] {
            assert_eq!(text.matches(odd).count(), 1, "{odd:?} passes once, unchanged");
        }
    }
}

#[test]
fn trailing_partial_event_passes_after_the_flush() {
    for opts in all_opts() {
        let mut input = choice_stream(Kind::Chat, &[split(MD_B, 2)], Ending::Cut);
        let tail = b"data: {\"id\":\"chatcmpl-AZ3pQ7x1d0\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"```python\\n";
        input.extend_from_slice(tail);
        let (output, _) = run_all(Endpoint::ChatCompletions, &opts, &input);
        assert!(output.ends_with(tail), "the unterminated event ends the output unchanged");
        let body = &output[..output.len() - tail.len()];
        assert_eq!(
            choice_texts(Kind::Chat, body).get(&0).map(String::as_str),
            Some(one_shot(&opts, MD_B).0.as_str())
        );
    }
}

#[test]
fn mode_off_passes_everything_byte_identical() {
    let opts = Arc::new(Options { mode: Mode::Off, ..Options::default() });
    let mut input = choice_stream(Kind::Chat, &[split(MD_A, 1), split(MD_B, 2)], Ending::Full);
    input.extend_from_slice(b"data: {broken\r\rgarbage \xFF\xFE");
    for endpoint in [Endpoint::ChatCompletions, Endpoint::Completions, Endpoint::Responses] {
        let (output, stats) = run_all(endpoint, &opts, &input);
        assert_eq!(output, input);
        assert_eq!(stats.blocks_rewritten, 0);
    }
    for file in ["chat.json", "completions.json", "responses.json"] {
        let body = fixture(file);
        for endpoint in [Endpoint::ChatCompletions, Endpoint::Completions, Endpoint::Responses] {
            assert!(rewrite_json(endpoint, &opts, body.as_bytes()).is_none());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Whole JSON bodies

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/api/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// Checks `rewrite_json` on a body: the texts at `paths` (JSON pointers) become their one-shot
/// rewrites, everything else stays, and `None` means that nothing had to change.
fn check_json(endpoint: Endpoint, opts: &Arc<Options>, body: &str, paths: &[&str]) {
    let original: Value = serde_json::from_str(body).unwrap();
    let mut expected = original.clone();
    let mut blocks = 0;
    for path in paths {
        let slot = expected.pointer_mut(path).unwrap_or_else(|| panic!("no {path}"));
        let (text, n) = one_shot(opts, slot.as_str().unwrap());
        *slot = Value::String(text);
        blocks += n;
    }
    match rewrite_json(endpoint, opts, body.as_bytes()) {
        None => assert_eq!(expected, original, "None only when nothing changes"),
        Some((bytes, stats)) => {
            assert_ne!(expected, original, "Some only when something changes");
            let got: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(got, expected);
            assert_eq!(stats.blocks_rewritten, blocks);
            // Key order and number spelling are kept.
            let text = String::from_utf8(bytes).unwrap();
            let keys: Vec<&str> =
                original.as_object().unwrap().keys().map(String::as_str).collect();
            let got_keys: Vec<&str> = got.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(got_keys, keys);
            if body.contains("0.30000000000000004441") {
                assert!(text.contains("0.30000000000000004441"));
            }
        }
    }
}

#[test]
fn chat_json_rewrites_every_message_content() {
    for opts in all_opts() {
        let paths = ["/choices/0/message/content", "/choices/1/message/content"];
        check_json(Endpoint::ChatCompletions, &opts, &fixture("chat.json"), &paths);
        let paths = ["/choices/0/message/content/0/text", "/choices/0/message/content/2/text"];
        check_json(Endpoint::ChatCompletions, &opts, &fixture("chat_parts.json"), &paths);
    }
}

#[test]
fn completions_json_rewrites_every_text() {
    for opts in all_opts() {
        let paths = ["/choices/0/text", "/choices/1/text"];
        check_json(Endpoint::Completions, &opts, &fixture("completions.json"), &paths);
    }
}

#[test]
fn responses_json_rewrites_output_text_parts_only() {
    for opts in all_opts() {
        let paths = ["/output/1/content/0/text", "/output/1/content/2/text"];
        check_json(Endpoint::Responses, &opts, &fixture("responses.json"), &paths);
    }
}

#[test]
fn json_of_the_wrong_shape_is_left_alone() {
    let opts = Arc::new(Options::default());
    let python = "```python\nprint(1)\n```\n";
    let bodies = [
        b"not json".to_vec(),
        b"".to_vec(),
        json!([1, 2]).to_string().into_bytes(),
        json!({"error": {"message": python}}).to_string().into_bytes(),
        json!({"choices": "nope"}).to_string().into_bytes(),
        json!({"output": {"content": python}}).to_string().into_bytes(),
        json!({"choices": [{"message": {"content": 5}}, "x", {"text": null}]})
            .to_string()
            .into_bytes(),
    ];
    for endpoint in [Endpoint::ChatCompletions, Endpoint::Completions, Endpoint::Responses] {
        for body in &bodies {
            assert!(
                rewrite_json(endpoint, &opts, body).is_none(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Responses API streams

/// A Responses stream for a reasoning item and two message items (with `texts[0]` and `texts[1]`
/// cut into `deltas`), sequence numbers from 0, plus an event whose JSON is broken.
fn responses_stream(texts: &[&str; 2], deltas: &[Vec<String>; 2]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut seq = 0u64;
    let mut emit = |out: &mut Vec<u8>, mut value: Value| {
        value["sequence_number"] = json!(seq);
        seq += 1;
        let name = value["type"].as_str().unwrap().to_owned();
        out.extend_from_slice(format!("event: {name}\ndata: {value}\n\n").as_bytes());
    };
    let response = |status: &str, output: Value| json!({"id": "resp_1", "object": "response", "created_at": 1741476542, "status": status, "model": "gpt-4.1-2025-04-14", "output": output, "usage": null});
    let message = |id: &str, text: Option<&str>| match text {
        None => {
            json!({"id": id, "type": "message", "status": "in_progress", "content": [], "role": "assistant"})
        }
        Some(t) => {
            json!({"id": id, "type": "message", "status": "completed", "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": t}], "role": "assistant"})
        }
    };
    let reasoning = json!({"id": "rs_1", "type": "reasoning", "summary": []});
    emit(
        &mut out,
        json!({"type": "response.created", "sequence_number": 0, "response": response("in_progress", json!([]))}),
    );
    emit(
        &mut out,
        json!({"type": "response.in_progress", "sequence_number": 0, "response": response("in_progress", json!([]))}),
    );
    emit(
        &mut out,
        json!({"type": "response.output_item.added", "sequence_number": 0, "output_index": 0, "item": reasoning}),
    );
    emit(
        &mut out,
        json!({"type": "response.output_item.done", "sequence_number": 0, "output_index": 0, "item": reasoning}),
    );
    for (k, (text, pieces)) in texts.iter().zip(deltas).enumerate() {
        let output_index = k + 1;
        let id = format!("msg_{output_index}");
        emit(
            &mut out,
            json!({"type": "response.output_item.added", "sequence_number": 0, "output_index": output_index, "item": message(&id, None)}),
        );
        emit(
            &mut out,
            json!({"type": "response.content_part.added", "sequence_number": 0, "item_id": id, "output_index": output_index, "content_index": 0, "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}}),
        );
        for (i, piece) in pieces.iter().enumerate() {
            emit(
                &mut out,
                json!({"type": "response.output_text.delta", "sequence_number": 0, "item_id": id, "output_index": output_index, "content_index": 0, "delta": piece, "logprobs": [], "obfuscation": "Zz"}),
            );
            if i == 2 {
                out.extend_from_slice(b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\n\n: comment\n\n");
            }
        }
        emit(
            &mut out,
            json!({"type": "response.output_text.done", "sequence_number": 0, "item_id": id, "output_index": output_index, "content_index": 0, "text": text, "logprobs": []}),
        );
        emit(
            &mut out,
            json!({"type": "response.content_part.done", "sequence_number": 0, "item_id": id, "output_index": output_index, "content_index": 0, "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": text}}),
        );
        emit(
            &mut out,
            json!({"type": "response.output_item.done", "sequence_number": 0, "output_index": output_index, "item": message(&id, Some(text))}),
        );
    }
    let output =
        json!([reasoning, message("msg_1", Some(texts[0])), message("msg_2", Some(texts[1]))]);
    emit(
        &mut out,
        json!({"type": "response.completed", "sequence_number": 0, "response": response("completed", output)}),
    );
    out
}

/// Blanks every `text`/`delta` string and drops `sequence_number`: what must not change.
fn without_texts_and_numbers(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| k.as_str() != "sequence_number")
                .map(|(k, v)| {
                    let v = if (k == "text" || k == "delta") && v.is_string() {
                        json!("")
                    } else {
                        without_texts_and_numbers(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_texts_and_numbers).collect()),
        other => other.clone(),
    }
}

fn check_responses(opts: &Arc<Options>, texts: [&str; 2], deltas: [Vec<String>; 2]) {
    let input = responses_stream(&texts, &deltas);
    let (output, stats) = run_all(Endpoint::Responses, opts, &input);
    let expected: Vec<(String, usize)> = texts.iter().map(|t| one_shot(opts, t)).collect();
    assert_eq!(stats.blocks_rewritten, expected[0].1 + expected[1].1, "blocks counted");

    // The deltas of each part make up the rewritten text; every event that repeats the whole
    // text carries the same.
    let mut streamed: BTreeMap<u64, String> = BTreeMap::new();
    let mut done: BTreeMap<u64, bool> = BTreeMap::new();
    let mut full_texts = 0;
    let mut last_seq: Option<u64> = None;
    let outs = events(&output);
    for event in &outs {
        let Some(value) = parse(event) else { continue };
        let seq = value["sequence_number"].as_u64().expect("every event has a sequence number");
        assert!(
            last_seq.is_none_or(|last| seq > last),
            "sequence numbers increase: {seq} after {last_seq:?}"
        );
        if last_seq.is_none() {
            assert_eq!(seq, 0, "numbering starts where upstream starts");
        }
        last_seq = Some(seq);
        assert_eq!(event.event_type(), value["type"].as_str(), "the event line matches the type");
        let oi = value["output_index"].as_u64();
        let want = |oi: u64| expected[(oi - 1) as usize].0.as_str();
        match value["type"].as_str().unwrap() {
            "response.output_text.delta" => {
                let oi = oi.unwrap();
                assert!(
                    !done.get(&oi).copied().unwrap_or(false),
                    "no delta after the part's done event"
                );
                streamed.entry(oi).or_default().push_str(value["delta"].as_str().unwrap());
            }
            "response.output_text.done" => {
                let oi = oi.unwrap();
                done.insert(oi, true);
                assert_eq!(streamed[&oi], want(oi), "deltas of part {oi} are the one-shot rewrite");
                assert_eq!(value["text"].as_str().unwrap(), want(oi));
                full_texts += 1;
            }
            "response.content_part.done" => {
                let oi = oi.unwrap();
                assert_eq!(value["part"]["text"].as_str().unwrap(), want(oi));
                full_texts += 1;
            }
            "response.output_item.done" if oi != Some(0) => {
                let oi = oi.unwrap();
                assert_eq!(value["item"]["content"][0]["text"].as_str().unwrap(), want(oi));
                full_texts += 1;
            }
            "response.completed" => {
                for oi in [1, 2] {
                    let text =
                        value["response"]["output"][oi as usize]["content"][0]["text"].as_str();
                    assert_eq!(text.unwrap(), want(oi));
                    full_texts += 1;
                }
            }
            _ => {}
        }
    }
    assert_eq!(full_texts, 8, "every full-text event was seen");

    // Every input event is in the output, in order; what differs is only texts and numbers; the
    // extra events are deltas.
    let ins = events(&input);
    let mut next = 0;
    for out in &outs {
        if let Some(inp) = ins.get(next) {
            if out.raw() == inp.raw() {
                next += 1;
                continue;
            }
            if let (Some(a), Some(b)) = (parse(inp), parse(out)) {
                if a != b && without_texts_and_numbers(&a) == without_texts_and_numbers(&b) {
                    assert_eq!(out.event_type(), inp.event_type());
                    next += 1;
                    continue;
                }
            }
        }
        let value = parse(out).expect("an extra event is JSON");
        assert_eq!(value["type"], "response.output_text.delta", "an extra event is a delta");
        assert!(!value["delta"].as_str().unwrap().is_empty(), "an extra delta is not empty");
        assert_eq!(value["obfuscation"], "Zz", "an extra delta has its part's envelope");
    }
    assert_eq!(next, ins.len(), "every input event appears in the output, in order");
    let broken = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\n\n: comment\n\n";
    let count = |bytes: &[u8]| String::from_utf8_lossy(bytes).matches(broken).count();
    assert_eq!(count(&output), count(&input), "the broken event passes unchanged");

    // Streamed equals non-streamed.
    let mut body: Value = serde_json::from_str(&fixture("responses.json")).unwrap();
    body["output"][1]["content"][0]["text"] = json!(texts[0]);
    body["output"][1]["content"][2]["text"] = json!(texts[1]);
    let json_texts = match rewrite_json(Endpoint::Responses, opts, body.to_string().as_bytes()) {
        None => [texts[0].to_owned(), texts[1].to_owned()],
        Some((bytes, _)) => {
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            [0, 2].map(|ci| v["output"][1]["content"][ci]["text"].as_str().unwrap().to_owned())
        }
    };
    assert_eq!(json_texts[0], expected[0].0);
    assert_eq!(json_texts[1], expected[1].0);
}

#[test]
fn responses_stream_texts_events_and_sequence_numbers() {
    for opts in all_opts() {
        check_responses(&opts, [MD_A, MD_B], [split(MD_A, 31), split_fences(MD_B)]);
        check_responses(&opts, [MD_B, MD_PROSE], [split_fences(MD_B), split(MD_PROSE, 3)]);
    }
}

#[test]
fn responses_stream_cut_before_done_flushes_at_eof() {
    for opts in all_opts() {
        let pieces = split(MD_B, 8);
        let mut input = Vec::new();
        for (seq, piece) in pieces.iter().enumerate() {
            let value = json!({"type": "response.output_text.delta", "sequence_number": seq + 10, "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": piece, "logprobs": []});
            input.extend_from_slice(
                format!("event: response.output_text.delta\ndata: {value}\n\n").as_bytes(),
            );
        }
        let (output, _) = run_all(Endpoint::Responses, &opts, &input);
        let mut text = String::new();
        let mut last = 0;
        for event in events(&output) {
            let value = parse(&event).unwrap();
            let seq = value["sequence_number"].as_u64().unwrap();
            assert!(seq > last || last == 0);
            last = seq;
            text.push_str(value["delta"].as_str().unwrap());
        }
        assert_eq!(text, one_shot(&opts, MD_B).0);
    }
}

// ---------------------------------------------------------------------------------------------
// Restore

fn with_assistant_text(template: &str, text: &str) -> String {
    let quoted = serde_json::to_string(text).unwrap();
    template.replace("\"@ASSISTANT_TEXT@\"", &quoted)
}

/// Checks `restore_request` on a request whose assistant texts are the rewrite of `MD_A`: they
/// come back as `restore` gives them, everything else stays.
fn check_restore(endpoint: Endpoint, file: &str, paths: &[&str]) {
    for opts in all_opts() {
        let rewritten = rewrite::rewrite(&opts, MD_A);
        let body = with_assistant_text(&fixture(file), &rewritten);
        let original: Value = serde_json::from_str(&body).unwrap();
        let mut expected = original.clone();
        for path in paths {
            let slot = expected.pointer_mut(path).unwrap();
            *slot = Value::String(rewrite::restore(&opts, slot.as_str().unwrap()));
        }
        match restore_request(endpoint, &opts, body.as_bytes(), usize::MAX) {
            None => assert_eq!(expected, original, "None only when nothing was restored"),
            Some((bytes, count)) => {
                let got: Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(got, expected);
                assert_eq!(count, paths.len());
                // With an engine that can undo itself, the history is the original markdown.
                if rewrite::restore(&opts, &rewritten) == MD_A {
                    for path in paths {
                        assert_eq!(got.pointer(path).unwrap(), MD_A);
                    }
                }
            }
        }
    }
}

#[test]
fn restore_chat_assistant_messages_only() {
    check_restore(
        Endpoint::ChatCompletions,
        "chat_request.json",
        &["/messages/2/content", "/messages/3/content/0/text"],
    );
}

#[test]
fn restore_responses_assistant_items_only() {
    check_restore(
        Endpoint::Responses,
        "responses_request.json",
        &["/input/1/content", "/input/2/content/0/text"],
    );
}

#[test]
fn restore_legacy_prompt() {
    check_restore(Endpoint::Completions, "completions_request.json", &["/prompt/0"]);
}

#[test]
fn restore_finds_replacements_spelled_with_json_escapes() {
    let opts = Options::default();
    let rewritten = rewrite::rewrite(&opts, MD_A);
    assert_ne!(rewritten, MD_A);
    let body = with_assistant_text(&fixture("chat_request.json"), &rewritten);
    // The same JSON text with `#` and `=` written as escapes, as some encoders may.
    let escaped = body.replace('#', "\\u0023").replace('=', "\\u003D");
    assert!(!escaped.contains("#py="));
    let restore =
        |body: &str| restore_request(Endpoint::ChatCompletions, &opts, body.as_bytes(), 1 << 20);
    let plain = restore(&body).unwrap();
    let from_escaped = restore(&escaped).unwrap();
    let plain: Value = serde_json::from_slice(&plain.0).unwrap();
    let from_escaped: Value = serde_json::from_slice(&from_escaped.0).unwrap();
    assert_eq!(plain, from_escaped);
    assert_eq!(
        plain.pointer("/messages/2/content").unwrap(),
        &Value::String(rewrite::restore(&opts, &rewritten))
    );
}

#[test]
fn json_answers_with_fences_spelled_as_escapes_are_rewritten() {
    let opts = Arc::new(Options::default());
    let answer = json!({"choices": [{"index": 0, "message": {"role": "assistant",
        "content": "Here:\n\n```python\nprint(1)\n```\n"}}]});
    let plain = serde_json::to_string(&answer).unwrap();
    let escaped = plain.replace('`', "\\u0060");
    assert!(!escaped.contains("```"));
    let (from_plain, _) = rewrite_json(Endpoint::ChatCompletions, &opts, plain.as_bytes()).unwrap();
    let (from_escaped, stats) =
        rewrite_json(Endpoint::ChatCompletions, &opts, escaped.as_bytes()).unwrap();
    assert_eq!(from_plain, from_escaped);
    assert_eq!(stats.blocks_rewritten, 1);
    // No fence at all: left alone.
    let no_fence = br#"{"choices": [{"message": {"content": "no code here"}}], broken"#;
    assert!(rewrite_json(Endpoint::ChatCompletions, &opts, no_fence).is_none());
}

#[test]
fn restore_leaves_other_bodies_alone() {
    let user_only = json!({"model": "m", "messages": [{"role": "user", "content": "```python\nprint(1)\n```"}]});
    let bodies = [
        b"not json".to_vec(),
        json!({"prompt": [[1, 2, 3]]}).to_string().into_bytes(),
        json!({"input": "just a string"}).to_string().into_bytes(),
        user_only.to_string().into_bytes(),
    ];
    for endpoint in [Endpoint::ChatCompletions, Endpoint::Completions, Endpoint::Responses] {
        for body in &bodies {
            let restored = restore_request(endpoint, &Options::default(), body, usize::MAX);
            assert!(restored.is_none(), "{}", String::from_utf8_lossy(body));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Generated inputs

/// Markdown pieces that, put together in any order, make texts with Python blocks in many forms.
const FRAGMENTS: [&str; 12] = [
    "Some prose with `inline()` code.\n\n",
    "```python\nprint('hi')\n```\n\n",
    "```py title=\"x.py\"\nimport sys\nprint(sys.version)\n```\n",
    "~~~Python\nfor i in range(2):\n    print(i)\n~~~\n\n",
    "- item\n\n  ```python\n  x = 1\n  ```\n\n",
    "> quoted\n> ```python3\n> y = 2\n> ```\n\n",
    "````python\n```\nnot a close\n````\n",
    "```js\nconsole.log('no')\n```\n\n",
    "    indented = 'code'\n\n",
    "Ünïcödé ✓ 🐍 text\r\nwith CRLF\r\n",
    "```pycon\n>>> 1\n```\n",
    "```python\nunclosed = True\n",
];

fn generated_text() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    proptest::collection::vec(0..FRAGMENTS.len(), 0..6)
        .prop_map(|picks| picks.into_iter().map(|i| FRAGMENTS[i]).collect::<String>())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    #[test]
    fn generated_choice_streams(
        texts in proptest::collection::vec(generated_text(), 1..4),
        seeds in proptest::collection::vec(proptest::prelude::any::<u64>(), 3),
        legacy in proptest::prelude::any::<bool>(),
        ending in 0..3usize,
        opts_index in 0..6usize,
    ) {
        let kind = if legacy { Kind::Legacy } else { Kind::Chat };
        let ending = [Ending::Full, Ending::FinishWithText, Ending::Cut][ending];
        let opts = &all_opts()[opts_index];
        let deltas: Vec<Vec<String>> = texts
            .iter()
            .zip(&seeds)
            .map(|(t, seed)| if seed % 4 == 0 { split_fences(t) } else { split(t, *seed) })
            .collect();
        // A choice with no delta at all never appears in the stream: give it one empty delta.
        let deltas: Vec<Vec<String>> = deltas
            .into_iter()
            .map(|d| if d.is_empty() { vec![String::new()] } else { d })
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        check_choices(kind, opts, &refs, &deltas, ending);
    }

    #[test]
    fn generated_responses_streams(
        a in generated_text(),
        b in generated_text(),
        seed in proptest::prelude::any::<u64>(),
        opts_index in 0..6usize,
    ) {
        let opts = &all_opts()[opts_index];
        let pieces = |t: &str| {
            let d = if seed % 3 == 0 { split_fences(t) } else { split(t, seed) };
            if d.is_empty() { vec![String::new()] } else { d }
        };
        check_responses(opts, [&a, &b], [pieces(&a), pieces(&b)]);
    }
}

#[test]
fn chat_chunks_carrying_several_choices_at_once() {
    for opts in all_opts() {
        let a = split(MD_A, 41);
        let b = split_fences(MD_B);
        let mut datas = Vec::new();
        for step in 0..a.len().max(b.len()) {
            let mut choices = Vec::new();
            // Choice 1 first: the order inside a chunk must not matter.
            if let Some(piece) = b.get(step) {
                choices.push(content_choice(Kind::Chat, 1, piece, None));
            }
            if let Some(piece) = a.get(step) {
                choices.push(content_choice(Kind::Chat, 0, piece, None));
            }
            let mut chunk: Value = serde_json::from_str(&chat_chunk(json!(null))).unwrap();
            chunk["choices"] = Value::Array(choices);
            datas.push(chunk.to_string());
        }
        let mut finish: Value = serde_json::from_str(&chat_chunk(json!(null))).unwrap();
        finish["choices"] = json!([
            {"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"},
            {"index": 1, "delta": {}, "logprobs": null, "finish_reason": "length"}
        ]);
        datas.push(finish.to_string());
        datas.push("[DONE]".to_owned());
        let input = sse_bytes(&datas);
        let (output, stats) = run_all(Endpoint::ChatCompletions, &opts, &input);
        let got = choice_texts(Kind::Chat, &output);
        let (want_a, blocks_a) = one_shot(&opts, MD_A);
        let (want_b, blocks_b) = one_shot(&opts, MD_B);
        assert_eq!(got[&0], want_a);
        assert_eq!(got[&1], want_b);
        assert_eq!(stats.blocks_rewritten, blocks_a + blocks_b);
        check_choice_alignment(Kind::Chat, &input, &output);
    }
}

/// Pieces of streams, valid and broken, for the robustness property.
const SOUP: [&str; 16] = [
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"```python\\nx = 1\\n\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c\",\"choices\":[{\"index\":1,\"delta\":{\"content\":\"```\\n\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
    "data: {\"choices\":[{\"text\":\"```py\\nprint(2)\\n\",\"index\":0,\"finish_reason\":\"length\"}]}\n\n",
    "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":3,\"item_id\":\"m\",\"output_index\":0,\"content_index\":0,\"delta\":\"```python\\ny\"}\n\n",
    "event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\",\"sequence_number\":4,\"output_index\":0,\"content_index\":0,\"text\":\"```python\\ny\"}\n\n",
    "data: {\"type\":\"response.completed\",\"sequence_number\":9,\"response\":{\"output\":[{\"id\":\"m\",\"content\":[{\"type\":\"output_text\",\"text\":\"```python\\ny\"}]}]}}\n\n",
    "data: {\"type\":\"response.output_item.done\",\"sequence_number\":18446744073709551615,\"item\":{\"content\":[{\"type\":\"output_text\",\"text\":5}]}}\n\n",
    "data: [DONE]\n\n",
    ": keep-alive\r\n\r\n",
    "data: {\"choices\":[{\"index\":-1,\"delta\":{\"content\":null},\"finish_reason\":7}]}\r\r",
    "data: {broken\n\n",
    "event: response.output_text.delta\r\ndata: {\"type\":\"response.output_text.delta\",\"delta\":[]}\r\n\r\n",
    "\r",
    "\n",
    "data: \u{FEFF}\u{1F40D} é\n",
];

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Any mixture of valid and broken events, any endpoint and mode: no panic, and every chunking
    /// of the input gives the same output.
    #[test]
    fn any_stream_any_chunking_same_output(
        picks in proptest::collection::vec(0..SOUP.len(), 0..24),
        noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..8),
        endpoint in 0..3usize,
        opts_index in 0..6usize,
        cuts in proptest::collection::vec(proptest::prelude::any::<usize>(), 0..16),
    ) {
        let mut input: Vec<u8> = picks.iter().flat_map(|&i| SOUP[i].bytes()).collect();
        let at = cuts.first().map_or(0, |c| c % (input.len() + 1));
        input.splice(at..at, noise);
        let endpoint = [Endpoint::ChatCompletions, Endpoint::Completions, Endpoint::Responses][endpoint];
        let opts = &all_opts()[opts_index];
        let (whole, stats) = run(endpoint, opts, &input, input.len());
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        cuts.sort_unstable();
        let mut rewriter = SseRewriter::new(endpoint, Arc::clone(opts));
        let mut out = Vec::new();
        let mut start = 0;
        for cut in cuts {
            rewriter.push(&input[start..cut], &mut out);
            start = cut;
        }
        rewriter.push(&input[start..], &mut out);
        rewriter.finish(&mut out);
        proptest::prop_assert_eq!(&out, &whole);
        proptest::prop_assert_eq!(rewriter.stats(), stats);
        let (one, _) = run(endpoint, opts, &input, 1);
        proptest::prop_assert_eq!(&one, &whole);
    }
}

#[test]
fn the_stream_rewriter_can_move_between_threads() {
    // The proxy keeps one inside a response body, which hyper requires to be `Send`.
    fn assert_send<T: Send + 'static>(value: T) -> T {
        value
    }
    let opts = Arc::new(Options::default());
    let mut rewriter = assert_send(SseRewriter::new(Endpoint::ChatCompletions, opts));
    let input = choice_stream(Kind::Chat, &[split(MD_PROSE, 1)], Ending::Full);
    let handle = std::thread::spawn(move || {
        let mut out = Vec::new();
        rewriter.push(&input, &mut out);
        rewriter.finish(&mut out);
        (out, input)
    });
    let (out, input) = handle.join().unwrap();
    assert_eq!(choice_texts(Kind::Chat, &out), choice_texts(Kind::Chat, &input));
}

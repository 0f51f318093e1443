//! Chat Completions and legacy Completions streams and bodies.

use super::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Kind {
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

pub(super) fn chat_chunk(choice: Value) -> String {
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

pub(super) fn content_choice(kind: Kind, index: usize, text: &str, finish: Option<&str>) -> Value {
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
pub(super) enum Ending {
    /// Finish chunks, the usage chunk, `[DONE]`.
    Full,
    /// The last delta of each choice carries the finish reason itself; then `[DONE]`.
    FinishWithText,
    /// Cut off: no finish chunk, no `[DONE]`.
    Cut,
}

/// A chat or legacy stream: role chunks, the choices' deltas interleaved round-robin, a comment and
/// a keep-alive in the middle, then the given ending.
pub(super) fn choice_stream(kind: Kind, choices: &[Vec<String>], ending: Ending) -> Vec<u8> {
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
pub(super) fn choice_texts(kind: Kind, bytes: &[u8]) -> BTreeMap<u64, String> {
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
pub(super) fn check_choice_alignment(kind: Kind, input: &[u8], output: &[u8]) {
    let rewritten = |_: &Event, _: &Event, a: Value, b: Value| {
        let changed = a["choices"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(b["choices"].as_array().into_iter().flatten())
            .any(|(x, y)| choice_text(kind, x) != choice_text(kind, y));
        changed && without_texts(kind, a) == without_texts(kind, b)
    };
    check_alignment(input, output, rewritten, |out, ins, next| {
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
    });
}

/// The whole check of a choice stream: the text of every choice is the engine's one-shot output,
/// the events align, the block count is right, and the JSON path agrees with the stream.
pub(super) fn check_choices(
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

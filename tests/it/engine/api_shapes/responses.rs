//! Responses API streams.

use super::*;

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

pub(super) fn check_responses(opts: &Arc<Options>, texts: [&str; 2], deltas: [Vec<String>; 2]) {
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
    let rewritten = |inp: &Event, out: &Event, a: Value, b: Value| {
        let same = a != b && without_texts_and_numbers(&a) == without_texts_and_numbers(&b);
        if same {
            assert_eq!(out.event_type(), inp.event_type());
        }
        same
    };
    check_alignment(&input, &output, rewritten, |out, _, _| {
        let value = parse(out).expect("an extra event is JSON");
        assert_eq!(value["type"], "response.output_text.delta", "an extra event is a delta");
        assert!(!value["delta"].as_str().unwrap().is_empty(), "an extra delta is not empty");
        assert_eq!(value["obfuscation"], "Zz", "an extra delta has its part's envelope");
    });
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

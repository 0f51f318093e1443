//! Generated inputs: properties over many texts and streams.

use super::chat::{
    chat_chunk, check_choice_alignment, check_choices, choice_stream, choice_texts, content_choice,
    Ending, Kind,
};
use super::responses::check_responses;
use super::*;

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

//! Whole JSON bodies through `rewrite_json`.

use super::*;

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

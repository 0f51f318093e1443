//! Restore: `restore_request` on the history a client sends back.

use super::*;

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

//! Whole JSON answers keep every byte outside their text fields: `rewrite_json` changes only the
//! strings it rewrites (re-encoded where they stand), so odd whitespace, escapes spelled any way,
//! key order, unknown fields, duplicate keys and numbers no float can hold come out exactly as
//! they went in.
//!
//! Each body is written by hand as a template with `@N` where the N-th text string stands; the
//! expected output is the same template with the engine's one-shot rewrite of each text (encoded
//! by `serde_json`) in those places, so any other byte that changed fails the comparison.

use std::sync::Arc;

use sandgate::rewrite::api::{rewrite_json, Endpoint};
use sandgate::rewrite::{self, Mode, Options};

const PY: &str = "Squares:\n\n```python\nfor i in range(3):\n    print(i * i)\n```\n\nDone — ✓.\n";
/// The same text spelled with escapes: `\u0060` for the backticks, `\/`, `\u00e9`-style letters.
const PY_ESCAPED: &str = r#""Squares:\n\n\u0060\u0060\u0060python\nfor i in range(3):\n    print(i * i)\n\u0060\u0060\u0060\n\nDone \u2014 \u2713.\n""#;
const PROSE: &str = r#""No code here, only \"quotes\", a \/ slash and \ud83d\udc0d.""#;

/// `template` with each `@N` replaced by `texts[N]` (JSON string literals).
fn fill(template: &str, texts: &[&str]) -> String {
    let mut out = template.to_owned();
    for (n, text) in texts.iter().enumerate().rev() {
        out = out.replace(&format!("@{n}"), text);
    }
    out
}

fn literal(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// Checks that `rewrite_json` of the body with `texts` gives the body with each rewritable text
/// (`rewritten[N]`) replaced by its one-shot rewrite, every other byte the same.
fn check(endpoint: Endpoint, template: &str, texts: &[&str], rewritten: &[bool]) {
    let opts = Arc::new(Options::default());
    let body = fill(template, texts);
    assert!(
        serde_json::from_str::<serde_json::Value>(&body).is_ok(),
        "the test body is JSON: {body}"
    );
    let expected: Vec<String> = texts
        .iter()
        .zip(rewritten)
        .map(|(text, &rewrite)| {
            if rewrite {
                let decoded: String = serde_json::from_str(text).unwrap();
                literal(&rewrite::rewrite(&opts, &decoded))
            } else {
                (*text).to_owned()
            }
        })
        .collect();
    let expected_refs: Vec<&str> = expected.iter().map(String::as_str).collect();
    let expected = fill(template, &expected_refs);
    let (out, _) = rewrite_json(endpoint, &opts, body.as_bytes()).expect("something to rewrite");
    let out = String::from_utf8(out).unwrap();
    assert_eq!(out, expected);
    assert_ne!(out, body);
}

#[test]
fn chat_bytes_outside_the_texts_are_kept() {
    let template = "{ \"id\" :\"chatcmpl-1\",\r\n\t\"created\":1700000000 ,\"usage\":{\"total_tokens\":92,\
        \"cost\":0.30000000000000004441,\"big\":123456789012345678901234567890,\"e\":1E+400},\n\
        \"unknown\":{\"nested\":[1,2,{\"content\":\"```python\\nprint(1)\\n```\"}],\"s\":\"caf\\u00E9 \\/\"},\n\
        \"choices\" : [ {\"message\":{\"content\":@0 , \"role\":\"assistant\",\"extra\":[ ]},\"index\":0},\n\
        {\"index\":1,\"finish_reason\":null,\"message\" : { \"content\" : @1 }},\n\
        {\"index\":2,\"message\":{\"content\":@2}} ,{\"message\":{\"content\":[{\"text\":@3,\"type\":\"text\"},\
        {\"type\":\"image_url\",\"text\":@4}]}} ] ,\"z\":-0.0e-0 }\n";
    let texts = [literal(PY), PY_ESCAPED.to_owned(), PROSE.to_owned(), literal(PY), literal(PY)];
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    check(Endpoint::ChatCompletions, template, &texts, &[true, true, false, true, false]);
}

#[test]
fn duplicate_keys_count_by_their_last_value() {
    // As a parse into a map would read it: the last `content` of a message is its content.
    let template = r#"{"choices":[{"message":{"content":@0,"content":@1}}],"choices2":@2}"#;
    let texts = [literal(PY), literal(PY), literal(PY)];
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    check(Endpoint::ChatCompletions, template, &texts, &[false, true, false]);
}

#[test]
fn completions_and_responses_bytes_outside_the_texts_are_kept() {
    let template = "{\"choices\":[{\"text\": @0,\"index\":0,\"logprobs\":null},{\"text\":@1}],\
        \"model\":\"m\" , \"n\":1.50}";
    let texts = [PY_ESCAPED.to_owned(), literal(PY)];
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    check(Endpoint::Completions, template, &texts, &[true, true]);

    let template = "{\"output_text\" : @0,\n \"output\":[{\"type\":\"reasoning\",\"content\":[\
        {\"type\":\"reasoning_text\",\"text\":@1}]},{\"type\":\"message\",\"content\":[\
        {\"type\":\"output_text\",\"annotations\":[],\"text\":@2},{\"text\":@3,\"type\":\"output_text\"}]}],\
        \"usage\":{\"n\":12345678901234567890123}}";
    let texts = [literal(PY), literal(PY), PY_ESCAPED.to_owned(), literal(PY)];
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    check(Endpoint::Responses, template, &texts, &[true, false, true, true]);
}

#[test]
fn bad_json_and_unchanged_texts_pass_untouched() {
    let opts = Arc::new(Options::default());
    let py = literal(PY);
    let bodies = [
        format!(r#"{{"choices":[{{"message":{{"content":{py}}}}}]"#),
        format!(r#"{{"choices":[{{"message":{{"content":{py}}}}}]}} trailing"#),
        format!(r#"{{"choices":[{{"message":{{"content":{py}}}}}],}}"#),
        format!(r#"{{"choices":[{{"message":{{"content":{py}}}}}],"n":01}}"#),
        format!(r#"{{"choices":[{{"message":{{"content":{py}}}}}],"s":"\x"}}"#),
        r#"{"choices":[{"message":{"content":"\ud800 ```python\nx\n```"}}]}"#.to_owned(),
        format!(r#"[{{"choices":[{{"message":{{"content":{py}}}}}]}}]"#),
        format!(r#"{{"choices":[[{{"message":{{"content":{py}}}}}]]}}"#),
        format!(r#"{{"choices":{{"0":{{"message":{{"content":{py}}}}}}}}}"#),
        format!(r#"{{"choices":[{{"message":[{{"content":{py}}}]}}]}}"#),
        format!(r#"{{"choices":[{{"message":{{"content":{}}}}}]}}"#, PROSE),
    ];
    for body in &bodies {
        assert!(
            rewrite_json(Endpoint::ChatCompletions, &opts, body.as_bytes()).is_none(),
            "{body}"
        );
    }
    // Invalid UTF-8 outside the texts: not JSON, left alone.
    let mut body = format!(r#"{{"choices":[{{"message":{{"content":{py}}}}}],"s":""#).into_bytes();
    body.extend_from_slice(b"\xff\"}");
    assert!(rewrite_json(Endpoint::ChatCompletions, &opts, &body).is_none());
    // Mode off: nothing is read.
    let off = Arc::new(Options { mode: Mode::Off, ..Options::default() });
    let body = format!(r#"{{"choices":[{{"message":{{"content":{py}}}}}]}}"#);
    assert!(rewrite_json(Endpoint::ChatCompletions, &off, body.as_bytes()).is_none());
}

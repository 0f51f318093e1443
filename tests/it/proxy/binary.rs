//! The `sandgate` binary as users run it: JSON logs that never carry prompts or completions unless
//! `log_content` is on, graceful exit on SIGTERM, and the `rewrite` / `restore` subcommands.

use std::process::Stdio;

use crate::support::binary::Binary;
use crate::support::{post_json, Reply, ScriptedUpstream};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const SECRET_PROMPT: &str = "prompt-secret-7f3a";
const SECRET_ANSWER: &str = "answer-secret-91c2";

fn answer_script(_: &crate::support::Recorded) -> Reply {
    let text = format!("Here:\n\n```python\nprint('{SECRET_ANSWER}')\n```\n");
    Reply::json(&crate::support::openai::chat_json(&[&text]))
}

async fn exchange(addr: std::net::SocketAddr) {
    let req = json!({"model": "m", "messages": [{"role": "user", "content": SECRET_PROMPT}]});
    let (status, _, body) = post_json(addr, "/v1/chat/completions", &req, &[]).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains(SECRET_ANSWER));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_json_and_never_carry_content_unless_asked() {
    let up = ScriptedUpstream::start(answer_script).await;

    let mut sg = Binary::start(&up.base_url(), &["--set", "log_level=debug"], None).await;
    exchange(sg.addr).await;
    let status = sg.sigterm().await;
    assert!(status.success(), "clean exit after SIGTERM: {status}");
    let lines = sg.whole_log().await;
    let all = lines.join("\n");
    for line in &lines {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    assert!(all.contains("SIGTERM received"), "{all}");
    assert!(all.contains("\"route\":\"chat/completions\""), "requests are logged at debug: {all}");
    assert!(!all.contains(SECRET_PROMPT), "the prompt leaked into the log:\n{all}");
    assert!(!all.contains(SECRET_ANSWER), "the completion leaked into the log:\n{all}");

    let args = ["--set", "log_level=debug", "--set", "log_content=true"];
    let mut sg = Binary::start(&up.base_url(), &args, None).await;
    exchange(sg.addr).await;
    sg.sigterm().await;
    let all = sg.whole_log().await.join("\n");
    assert!(
        all.contains(SECRET_PROMPT) && all.contains(SECRET_ANSWER),
        "log_content logs both: {all}"
    );
}

async fn pipe(args: &[&str], input: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sandgate"))
        .args(args)
        .env_remove("SANDGATE_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn rewrite_and_restore_subcommands_use_the_engine() {
    let md = "Try:\n\n```python\nprint(\"hi\")\n```\n";
    for (mode, show) in [("link", "true"), ("widget", "false"), ("artifact", "true")] {
        let args = ["--mode", mode, "--public-url", "https://sg.example", "--show-code", show];
        let rewritten = pipe(&[&["rewrite"][..], &args].concat(), md).await;
        let opts = sandgate::rewrite::Options {
            mode: mode.parse().unwrap(),
            show_code: show == "true",
            public_url: "https://sg.example".to_owned(),
            ..Default::default()
        };
        assert_eq!(rewritten, sandgate::rewrite::rewrite(&opts, md), "{mode}");
        let url = ["--public-url", "https://sg.example"];
        let restored = pipe(&[&["restore"][..], &url].concat(), &rewritten).await;
        assert_eq!(restored, md, "{mode}: the public key signs and restores");
        assert_eq!(restored, sandgate::rewrite::restore(&opts, &rewritten));
        // Links for another public URL, or signed with another key, are foreign: left as they are.
        assert_eq!(pipe(&["restore"], &rewritten).await, rewritten, "{mode}");
        let key = ["--link-key", "another key, 16+ bytes"];
        let other = pipe(&[&["restore"][..], &url, &key].concat(), &rewritten).await;
        assert_eq!(other, rewritten, "{mode}");
        let signed = pipe(&[&["rewrite"][..], &args, &key].concat(), md).await;
        assert_ne!(signed, rewritten, "{mode}: another key, another MAC");
        assert_eq!(pipe(&[&["restore"][..], &url, &key].concat(), &signed).await, md);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_sandgate"))
        .args(["rewrite", "--mode", "sideways"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("sandgate: config: mode: unknown mode `sideways`"));
}

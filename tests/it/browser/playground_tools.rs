//! The playground's agentic loop, as a person meets it: the real `sandgate demo` binary with its
//! scripted model, headless Chromium (tests/browser/playground_tools.mjs) turns "Let the model
//! run code" on and asks for the 20th Fibonacci number. The model calls `python`, the page runs the
//! code in its runner (the sandbox page in a hidden iframe, Pyodide 0.27.7 served by sandgate from
//! the directory tests/setup/10-browser.sh assembles), sends the output back as the tool message,
//! and the model answers with it. Then New chat, the switch off, the same question: an answer with
//! a Python block, as without tools. Nothing leaves loopback.

use std::ffi::OsStr;

use crate::support::browser::{self, Demo};
use serde_json::{json, Value};

#[test]
fn the_playground_lets_the_demo_model_run_python_and_answers_with_its_output() {
    let _browser = browser::lock_blocking();
    browser::pyodide_0277();
    let assets = browser::assets();
    let demo = Demo::start(&assets, [] as [&str; 0]);
    let base = demo.url.trim_end_matches('/').to_owned();
    let shots = browser::screenshots("playground-screenshots");
    let (obs, _) = browser::node(
        "playground_tools.mjs",
        [
            OsStr::new(&demo.url),
            OsStr::new("what is the 20th fibonacci number?"),
            shots.as_os_str(),
        ],
    );
    assert!(obs["error"].is_null(), "driver: {obs:#}");
    assert_eq!(obs["switchLabel"], "Let the model run code");
    assert_eq!(obs["pageErrors"], json!([]), "{obs:#}");
    assert_eq!(obs["dialogs"], json!([]), "{obs:#}");
    for url in obs["requests"].as_array().unwrap() {
        let url = url.as_str().unwrap();
        assert!(
            url.starts_with(&base) || url.starts_with("data:") || url.starts_with("blob:"),
            "a request left sandgate: {url}"
        );
    }

    // With the switch on: the model's call is shown with its code and live output, and the answer
    // that follows the tool message has the number.
    let on = &obs["withTools"];
    assert_eq!(on["state"], "done", "{on:#}");
    assert_eq!(on["cspViolations"], json!([]), "{on:#}");
    assert_eq!(on["errors"], json!([]), "{on:#}");
    let states: Vec<&str> =
        on["states"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(states, ["idle", "streaming", "running", "streaming", "done"], "{on:#}");
    assert_eq!(on["turns"], json!(["turn user", "turn tool", "turn assistant"]), "{on:#}");
    let tool = &on["tools"][0];
    assert!(tool["code"].as_str().unwrap().contains("range(20)"), "{tool:#}");
    assert!(tool["code"].as_str().unwrap().contains("print("), "{tool:#}");
    assert_eq!(tool["stdout"], "6765\n", "{tool:#}");
    assert_eq!(tool["status"], "done", "{tool:#}");
    let answer = on["answer"].as_str().unwrap();
    assert!(answer.contains("6765"), "{on:#}");
    assert!(answer.contains("The code printed: 6765"), "{on:#}");
    // One runner for the conversation: a hidden opaque-origin iframe of sandgate's sandbox page.
    assert_eq!(
        on["frames"],
        json!([{"src": format!("{base}/sandbox#runner=1"), "sandbox": "allow-scripts"}]),
        "{on:#}"
    );
    eprintln!("playground: the tool loop took {} ms (Pyodide boot included)", on["loopMs"]);

    // What went to sandgate: the header on both requests; the second carries the call and its
    // result, the printed text, as the tool message.
    let chats = obs["chats"].as_array().unwrap();
    assert_eq!(chats.len(), 3, "{obs:#}");
    assert_eq!(chats[0]["tools"], "python");
    assert_eq!(chats[1]["tools"], "python");
    let first = chats[0]["body"]["messages"].as_array().unwrap();
    assert_eq!(first.len(), 1, "{first:#?}");
    let second = chats[1]["body"]["messages"].as_array().unwrap();
    assert_eq!(second.len(), 3, "{second:#?}");
    assert_eq!(second[0]["role"], "user");
    assert_eq!(second[1]["role"], "assistant");
    let call = &second[1]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "python");
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments["code"], tool["code"], "the code shown is the code called");
    assert_eq!(second[2], json!({"role": "tool", "tool_call_id": call["id"], "content": "6765\n"}));

    // New chat, the switch off: `none`, no call, the answer with a Python block as before.
    let off = &obs["withoutTools"];
    assert_eq!(off["state"], "done", "{off:#}");
    assert_eq!(chats[2]["tools"], "none");
    assert_eq!(chats[2]["body"]["messages"].as_array().unwrap().len(), 1, "New chat starts over");
    assert_eq!(off["turns"], json!(["turn user", "turn assistant"]), "{off:#}");
    assert_eq!(off["pythonBlocks"], 1, "{off:#}");
}

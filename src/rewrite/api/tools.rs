//! The `python` tool: a function tool sandgate adds to a request's `tools` when the configuration
//! (`tools = ["python"]`) or the request (`x-sandgate-tools: python`) asks for it, so that the model
//! can call Python, which the client then runs in the user's browser (the runner) and answers with a
//! tool message.
//!
//! Chat Completions: `{"type":"function","function":{"name":"python","description":…,"parameters":…}}`;
//! Responses: `{"type":"function","name":"python","description":…,"parameters":…}`. A request that
//! already has a tool named `python` (of any type), a chat request that uses the deprecated
//! `functions` (which the API does not let it mix with `tools`), a body that is not a JSON object, a
//! `tools` that is neither absent, `null` nor an array, and the legacy Completions route are left
//! untouched: the caller then sends the original bytes. The tool calls that come back are the client's to run;
//! nothing here looks at answers.

use std::str::FromStr;

use serde_json::{json, Map, Value};

use super::Endpoint;

/// The tools sandgate knows how to add.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tool {
    /// `python`: Python run with Pyodide in the user's browser.
    Python,
}

impl Tool {
    pub fn as_str(self) -> &'static str {
        match self {
            Tool::Python => PYTHON_TOOL_NAME,
        }
    }
}

impl FromStr for Tool {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case(PYTHON_TOOL_NAME) {
            Ok(Tool::Python)
        } else {
            Err(format!("unknown tool {s:?}: the only tool is {PYTHON_TOOL_NAME}"))
        }
    }
}

/// The function name of the tool.
pub const PYTHON_TOOL_NAME: &str = "python";

/// What the model is told about the environment its code runs in.
pub const PYTHON_TOOL_DESCRIPTION: &str = "Runs Python code in the user's web browser with \
Pyodide (CPython compiled to WebAssembly), not on a server. Use it to compute, to analyse data and \
to draw charts. You can import the standard library and the packages of the Pyodide distribution \
(numpy, pandas, matplotlib, scipy, scikit-learn, sympy, plotly, and many more), which load when \
imported; other pure-Python packages can be installed with micropip from the package sources the \
sandbox is configured with. There is no network access beyond those package sources, and no \
access to the user's files unless they provide some. Figures (matplotlib, Plotly) and display() \
output are shown to the user; you only get a short description of each figure, such as \
[figure 1: PNG 640x480]. The result you get back is text: stdout, stderr (with the traceback of an \
error) and the value of the last expression, so print what you need to see. Variables and imports \
usually persist from one call to the next; a run that hits the time limit or is stopped restarts \
the interpreter.";

/// The JSON Schema of the tool's arguments: one string, the code. (`additionalProperties: false`
/// with every property required keeps it valid where strict function schemas are the default.)
fn parameters() -> Value {
    json!({
        "type": "object",
        "properties": {
            "code": {"type": "string", "description": "The Python code to run."}
        },
        "required": ["code"],
        "additionalProperties": false,
    })
}

/// The tool's definition in a request of `endpoint`'s shape; `None` for legacy Completions, which
/// has no tools.
pub fn python_tool(endpoint: Endpoint) -> Option<Value> {
    match endpoint {
        Endpoint::ChatCompletions => Some(json!({
            "type": "function",
            "function": {
                "name": PYTHON_TOOL_NAME,
                "description": PYTHON_TOOL_DESCRIPTION,
                "parameters": parameters(),
            }
        })),
        Endpoint::Responses => Some(json!({
            "type": "function",
            "name": PYTHON_TOOL_NAME,
            "description": PYTHON_TOOL_DESCRIPTION,
            "parameters": parameters(),
        })),
        Endpoint::Completions => None,
    }
}

/// Adds the `python` tool to a request body. `None` when nothing is to change (see the module
/// documentation): the caller then forwards the original bytes.
pub fn add_python_tool(endpoint: Endpoint, body: &[u8]) -> Option<Vec<u8>> {
    let tool = python_tool(endpoint)?;
    let mut value: Value = serde_json::from_slice(body).ok()?;
    let request = value.as_object_mut()?;
    if request.get("functions").is_some_and(|f| !f.is_null()) {
        return None;
    }
    let tools = match request.get_mut("tools") {
        None | Some(Value::Null) => {
            request.insert("tools".to_owned(), Value::Array(Vec::new()));
            request.get_mut("tools").and_then(Value::as_array_mut)?
        }
        Some(Value::Array(tools)) => tools,
        Some(_) => return None,
    };
    if tools.iter().any(|t| names(t, PYTHON_TOOL_NAME)) {
        return None;
    }
    tools.push(tool);
    serde_json::to_vec(&value).ok()
}

/// Whether a tool definition is named `name`: `name` (Responses, and other tool types) or
/// `function.name` (Chat Completions).
fn names(tool: &Value, name: &str) -> bool {
    let Some(tool) = tool.as_object() else { return false };
    let is = |obj: &Map<String, Value>| obj.get("name").and_then(Value::as_str) == Some(name);
    is(tool) || tool.get("function").and_then(Value::as_object).is_some_and(is)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(endpoint: Endpoint, body: &str) -> Option<Value> {
        add_python_tool(endpoint, body.as_bytes()).map(|b| serde_json::from_slice(&b).unwrap())
    }

    #[test]
    fn chat_gets_the_function_tool_after_its_own_tools() {
        let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"search","parameters":{}}}],"temperature":0.70}"#;
        let out = add(Endpoint::ChatCompletions, body).unwrap();
        let tools = out["tools"].as_array().unwrap();
        assert_eq!(tools.len(), 2);
        assert_eq!(tools[0]["function"]["name"], "search");
        assert_eq!(tools[1], python_tool(Endpoint::ChatCompletions).unwrap());
        assert_eq!(tools[1]["function"]["parameters"]["required"], json!(["code"]));
        assert_eq!(tools[1]["function"]["parameters"]["properties"]["code"]["type"], "string");
        // Everything else is kept, in its order, numbers as written.
        let text =
            String::from_utf8(add_python_tool(Endpoint::ChatCompletions, body.as_bytes()).unwrap())
                .unwrap();
        assert!(text.starts_with(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"search","parameters":{}}},"#), "{text}");
        assert!(text.ends_with(r#""temperature":0.70}"#), "{text}");
    }

    #[test]
    fn responses_gets_the_flat_function_tool() {
        let out = add(Endpoint::Responses, r#"{"model":"m","input":"hi"}"#).unwrap();
        let tools = out["tools"].as_array().unwrap();
        assert_eq!(tools.len(), 1);
        assert_eq!(tools[0]["type"], "function");
        assert_eq!(tools[0]["name"], "python");
        assert_eq!(tools[0]["description"], PYTHON_TOOL_DESCRIPTION);
        assert!(tools[0].get("function").is_none());
        let out = add(Endpoint::Responses, r#"{"input":"hi","tools":null}"#).unwrap();
        assert_eq!(out["tools"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn a_tool_already_named_python_is_not_added_twice() {
        let chat = r#"{"messages":[],"tools":[{"type":"function","function":{"name":"python","description":"mine"}}]}"#;
        assert_eq!(add(Endpoint::ChatCompletions, chat), None);
        let responses = r#"{"input":"x","tools":[{"type":"function","name":"python"}]}"#;
        assert_eq!(add(Endpoint::Responses, responses), None);
        // Another type of tool of that name counts too; another name does not.
        let custom = r#"{"input":"x","tools":[{"type":"custom","name":"python"}]}"#;
        assert_eq!(add(Endpoint::Responses, custom), None);
        let other = r#"{"input":"x","tools":[{"type":"function","name":"python3"}]}"#;
        assert_eq!(add(Endpoint::Responses, other).unwrap()["tools"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn what_is_not_a_request_object_is_left_alone() {
        for body in [
            "",
            "not json",
            "[1,2]",
            "\"text\"",
            r#"{"tools":"python"}"#,
            r#"{"tools":{}}"#,
            "{\"messages\":[",
        ] {
            assert_eq!(
                add_python_tool(Endpoint::ChatCompletions, body.as_bytes()),
                None,
                "{body:?}"
            );
            assert_eq!(add_python_tool(Endpoint::Responses, body.as_bytes()), None, "{body:?}");
        }
        assert_eq!(add_python_tool(Endpoint::Completions, br#"{"prompt":"x"}"#), None);
        // The deprecated `functions` cannot be mixed with `tools`.
        let functions = r#"{"messages":[],"functions":[{"name":"search","parameters":{}}]}"#;
        assert_eq!(add_python_tool(Endpoint::ChatCompletions, functions.as_bytes()), None);
        let null = r#"{"messages":[],"functions":null}"#;
        assert!(add_python_tool(Endpoint::ChatCompletions, null.as_bytes()).is_some());
    }

    #[test]
    fn tool_names_parse() {
        assert_eq!("python".parse::<Tool>(), Ok(Tool::Python));
        assert_eq!(" Python ".parse::<Tool>(), Ok(Tool::Python));
        assert!("shell".parse::<Tool>().unwrap_err().contains("\"shell\""));
        assert_eq!(Tool::Python.as_str(), "python");
    }

    #[test]
    fn the_description_names_the_environment() {
        for words in [
            "Pyodide",
            "WebAssembly",
            "browser",
            "micropip",
            "network",
            "shown to the user",
            "text",
        ] {
            assert!(PYTHON_TOOL_DESCRIPTION.contains(words), "{words}");
        }
    }
}

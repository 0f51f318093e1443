"""Drives the official openai Python SDK through the agentic loop against sandgate; prints JSON.

Run by tests/it/sdk.rs with SANDGATE_BASE_URL (a sandgate without the `tools` key) and
SANDGATE_TOOLS_BASE_URL (one with `tools = ["python"]`), a scripted model behind both that calls
`python` when offered it and answers a tool result with what the code printed. Each case sends its
name as the user message, so the Rust test finds what the upstream received for it.
"""

import base64
import json
import os
import sys

import openai
from openai import OpenAI

ON = {"x-sandgate-tools": "python"}
OFF = {"x-sandgate-tools": "none"}


def user(case):
    return [{"role": "user", "content": case}]


def chat_call(client, case, headers):
    """A streamed call, parsed by the SDK: id, name, arguments, finish reason."""
    calls, finish = {}, None
    stream = client.chat.completions.create(
        model="gpt-test", messages=user(case), stream=True, extra_headers=headers
    )
    for chunk in stream:
        for c in chunk.choices:
            for tc in c.delta.tool_calls or []:
                call = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = tc.id or call["id"]
                if tc.function and tc.function.name:
                    call["name"] += tc.function.name
                if tc.function and tc.function.arguments:
                    call["arguments"] += tc.function.arguments
            finish = c.finish_reason or finish
    return {"calls": [calls[i] for i in sorted(calls)], "finish": finish}


def main() -> None:
    client = OpenAI(
        base_url=os.environ["SANDGATE_BASE_URL"], api_key="sk-test-python", max_retries=0, timeout=30
    )
    keyed = OpenAI(
        base_url=os.environ["SANDGATE_TOOLS_BASE_URL"],
        api_key="sk-test-python",
        max_retries=0,
        timeout=30,
    )
    out = {"sdk": "python", "version": openai.__version__}

    # Chat: the streamed call as the SDK parses it, and as raw bytes.
    out["chat_stream"] = chat_call(client, "chat_stream", ON)
    with client.chat.completions.with_streaming_response.create(
        model="gpt-test", messages=user("chat_stream_raw"), stream=True, extra_headers=ON
    ) as r:
        out["chat_stream_raw"] = base64.b64encode(b"".join(r.iter_bytes())).decode()

    r = client.chat.completions.create(model="gpt-test", messages=user("chat_json"), extra_headers=ON)
    tc = r.choices[0].message.tool_calls[0]
    out["chat_json"] = {
        "id": tc.id,
        "name": tc.function.name,
        "arguments": tc.function.arguments,
        "finish": r.choices[0].finish_reason,
    }

    # The loop's second step: the call and what the code printed go back.
    call = out["chat_stream"]["calls"][0]
    follow = user("chat_follow_up") + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call["id"], "content": "6765\n"},
    ]
    out["chat_follow_up_messages"] = follow
    r = client.chat.completions.create(model="gpt-test", messages=follow, extra_headers=ON)
    out["chat_follow_up"] = r.choices[0].message.content

    own = [
        {
            "type": "function",
            "function": {"name": "python", "description": "my own", "parameters": {"type": "object"}},
        }
    ]
    client.chat.completions.create(
        model="gpt-test", messages=user("chat_own_tool"), tools=own, extra_headers=ON
    )
    client.chat.completions.create(model="gpt-test", messages=user("chat_no_header"))
    try:
        client.chat.completions.create(
            model="gpt-test", messages=user("chat_bad_header"), extra_headers={"x-sandgate-tools": "shell"}
        )
        out["chat_bad_header"] = {"raised": None}
    except openai.BadRequestError as e:
        out["chat_bad_header"] = {
            "raised": type(e).__name__,
            "status": e.status_code,
            "code": e.code,
            "param": e.param,
        }

    # Responses.
    deltas, done, item = "", None, None
    for ev in client.responses.create(
        model="gpt-test", input=user("responses_stream"), stream=True, extra_headers=ON
    ):
        if ev.type == "response.function_call_arguments.delta":
            deltas += ev.delta
        elif ev.type == "response.function_call_arguments.done":
            done = ev.arguments
        elif ev.type == "response.output_item.done":
            item = {"type": ev.item.type, "name": ev.item.name, "call_id": ev.item.call_id}
    out["responses_stream"] = {"deltas": deltas, "done": done, "item": item}
    with client.responses.with_streaming_response.create(
        model="gpt-test", input=user("responses_stream_raw"), stream=True, extra_headers=ON
    ) as r:
        out["responses_stream_raw"] = base64.b64encode(b"".join(r.iter_bytes())).decode()

    r = client.responses.create(model="gpt-test", input=user("responses_json"), extra_headers=ON)
    fc = r.output[0]
    out["responses_json"] = {"type": fc.type, "name": fc.name, "arguments": fc.arguments}

    follow = user("responses_follow_up") + [
        {"type": "function_call", "call_id": fc.call_id, "name": fc.name, "arguments": fc.arguments},
        {"type": "function_call_output", "call_id": fc.call_id, "output": "6765\n"},
    ]
    out["responses_follow_up_input"] = follow
    r = client.responses.create(model="gpt-test", input=follow, extra_headers=ON)
    out["responses_follow_up"] = r.output_text

    client.responses.create(
        model="gpt-test",
        input=user("responses_own_tool"),
        tools=[{"type": "function", "name": "python", "parameters": {"type": "object"}, "strict": False}],
        extra_headers=ON,
    )
    client.responses.create(model="gpt-test", input=user("responses_no_header"))

    # The configuration key: on without the header, off with `none`.
    keyed.chat.completions.create(model="gpt-test", messages=user("key_chat"))
    keyed.chat.completions.create(model="gpt-test", messages=user("key_chat_none"), extra_headers=OFF)
    keyed.responses.create(model="gpt-test", input=user("key_responses"))
    keyed.responses.create(model="gpt-test", input=user("key_responses_none"), extra_headers=OFF)

    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

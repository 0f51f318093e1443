"""Drives the official openai Python SDK against sandgate and prints what it received as JSON.

Run by tests/it/sdk.rs with SANDGATE_BASE_URL set to sandgate's /v1 URL (a scripted upstream
behind it). Each case records the text the SDK handed back; the Rust test compares it with the
rewrite engine's output.
"""

import json
import os
import sys

import openai
from openai import OpenAI

MESSAGES = [{"role": "user", "content": "plot A, B, C"}]


def main() -> None:
    client = OpenAI(
        base_url=os.environ["SANDGATE_BASE_URL"],
        api_key="sk-test-python",
        max_retries=0,
        timeout=30,
    )
    out = {"sdk": "python", "version": openai.__version__}

    r = client.chat.completions.create(model="gpt-test", n=2, messages=MESSAGES)
    out["chat"] = [c.message.content for c in sorted(r.choices, key=lambda c: c.index)]

    stream = client.chat.completions.create(
        model="gpt-test",
        n=2,
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    texts = {}
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage.total_tokens
        for c in chunk.choices:
            texts.setdefault(c.index, "")
            if c.delta.content:
                texts[c.index] += c.delta.content
    out["chat_stream"] = [texts[i] for i in sorted(texts)]
    out["chat_stream_usage"] = usage

    deltas, done, completed = "", None, None
    for ev in client.responses.create(model="gpt-test", input="plot A, B, C", stream=True):
        if ev.type == "response.output_text.delta":
            deltas += ev.delta
        elif ev.type == "response.output_text.done":
            done = ev.text
        elif ev.type == "response.completed":
            completed = ev.response.output_text
    out["responses_stream"] = {"deltas": deltas, "done": done, "completed": completed}

    r = client.completions.create(model="gpt-test", prompt="Write Python:", n=2)
    out["completions"] = [c.text for c in sorted(r.choices, key=lambda c: c.index)]

    try:
        client.chat.completions.create(model="rate-limited", messages=MESSAGES)
        out["rate_limit"] = {"raised": None}
    except openai.RateLimitError as e:
        out["rate_limit"] = {
            "raised": type(e).__name__,
            "status": e.status_code,
            "retry_after": e.response.headers.get("retry-after"),
            "message": e.message,
        }
    except Exception as e:  # noqa: BLE001 - the test reports whatever else came
        out["rate_limit"] = {"raised": type(e).__name__, "detail": str(e)}

    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

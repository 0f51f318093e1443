"""Reads a Chat Completions stream and a Responses stream to their end with the official openai SDK,
as an application does, and prints what it got as JSON.

Run by tests/it/sdk.rs with SANDGATE_BASE_URL set; the scripted upstream behind sandgate keeps each
body open after its last event, so the client is the one that closes: the SDK does right after
`[DONE]`; the Responses stream is left at `response.completed`, as an application does.
"""

import json
import os

import openai
from openai import OpenAI


def main() -> None:
    client = OpenAI(
        base_url=os.environ["SANDGATE_BASE_URL"],
        api_key="sk-test-python",
        max_retries=0,
        timeout=30,
    )
    messages = [{"role": "user", "content": "plot A, B, C"}]
    chunks = 0
    for _ in client.chat.completions.create(model="gpt-test", messages=messages, stream=True):
        chunks += 1
    # The SDK reads a Responses stream until its body ends (there is no [DONE]); an application that
    # stops at response.completed closes it there.
    completed = False
    with client.responses.create(model="gpt-test", input="plot A, B, C", stream=True) as stream:
        for ev in stream:
            if ev.type == "response.completed":
                completed = True
                break
    print(json.dumps({"version": openai.__version__, "chat_chunks": chunks, "completed": completed}))


if __name__ == "__main__":
    main()

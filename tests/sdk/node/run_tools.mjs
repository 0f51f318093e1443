// Drives the official openai Node SDK through the agentic loop against sandgate; prints JSON.
//
// Run by tests/it/sdk.rs with SANDGATE_BASE_URL (a sandgate without the `tools` key) and
// SANDGATE_TOOLS_BASE_URL (one with `tools = ["python"]`), a scripted model behind both that calls
// `python` when offered it and answers a tool result with what the code printed. Each case sends its
// name as the user message, so the Rust test finds what the upstream received for it.
import OpenAI from 'openai';
import { readFileSync } from 'node:fs';

const ON = { headers: { 'x-sandgate-tools': 'python' } };
const OFF = { headers: { 'x-sandgate-tools': 'none' } };
const user = (c) => [{ role: 'user', content: c }];
const opts = { apiKey: 'sk-test-node', maxRetries: 0, timeout: 30_000 };
const client = new OpenAI({ ...opts, baseURL: process.env.SANDGATE_BASE_URL });
const keyed = new OpenAI({ ...opts, baseURL: process.env.SANDGATE_TOOLS_BASE_URL });
const out = {
  sdk: 'node',
  version: JSON.parse(readFileSync(new URL('./node_modules/openai/package.json', import.meta.url))).version,
  node: process.version,
};
const raw = async (promise) => Buffer.from(await (await promise.asResponse()).arrayBuffer()).toString('base64');

// Chat: the streamed call as the SDK parses it, and as raw bytes.
const calls = [];
let finish = null;
const stream = await client.chat.completions.create({ model: 'gpt-test', messages: user('chat_stream'), stream: true }, ON);
for await (const chunk of stream) {
  for (const c of chunk.choices) {
    for (const tc of c.delta?.tool_calls ?? []) {
      const call = (calls[tc.index] ??= { id: null, name: '', arguments: '' });
      call.id = tc.id ?? call.id;
      call.name += tc.function?.name ?? '';
      call.arguments += tc.function?.arguments ?? '';
    }
    finish = c.finish_reason ?? finish;
  }
}
out.chat_stream = { calls, finish };
out.chat_stream_raw = await raw(client.chat.completions.create({ model: 'gpt-test', messages: user('chat_stream_raw'), stream: true }, ON));

const r = await client.chat.completions.create({ model: 'gpt-test', messages: user('chat_json') }, ON);
const tc = r.choices[0].message.tool_calls[0];
out.chat_json = { id: tc.id, name: tc.function.name, arguments: tc.function.arguments, finish: r.choices[0].finish_reason };

// The loop's second step: the call and what the code printed go back.
const call = calls[0];
const follow = [
  ...user('chat_follow_up'),
  { role: 'assistant', content: null, tool_calls: [{ id: call.id, type: 'function', function: { name: call.name, arguments: call.arguments } }] },
  { role: 'tool', tool_call_id: call.id, content: '6765\n' },
];
out.chat_follow_up_messages = follow;
out.chat_follow_up = (await client.chat.completions.create({ model: 'gpt-test', messages: follow }, ON)).choices[0].message.content;

const own = [{ type: 'function', function: { name: 'python', description: 'my own', parameters: { type: 'object' } } }];
await client.chat.completions.create({ model: 'gpt-test', messages: user('chat_own_tool'), tools: own }, ON);
await client.chat.completions.create({ model: 'gpt-test', messages: user('chat_no_header') });
try {
  await client.chat.completions.create({ model: 'gpt-test', messages: user('chat_bad_header') }, { headers: { 'x-sandgate-tools': 'shell' } });
  out.chat_bad_header = { raised: null };
} catch (e) {
  out.chat_bad_header = e instanceof OpenAI.BadRequestError
    ? { raised: 'BadRequestError', status: e.status, code: e.code, param: e.param }
    : { raised: e?.constructor?.name ?? typeof e, detail: String(e) };
}

// Responses.
let deltas = '';
let done = null;
let item = null;
const events = await client.responses.create({ model: 'gpt-test', input: user('responses_stream'), stream: true }, ON);
for await (const ev of events) {
  if (ev.type === 'response.function_call_arguments.delta') deltas += ev.delta;
  else if (ev.type === 'response.function_call_arguments.done') done = ev.arguments;
  else if (ev.type === 'response.output_item.done') item = { type: ev.item.type, name: ev.item.name, call_id: ev.item.call_id };
}
out.responses_stream = { deltas, done, item };
out.responses_stream_raw = await raw(client.responses.create({ model: 'gpt-test', input: user('responses_stream_raw'), stream: true }, ON));

const rj = await client.responses.create({ model: 'gpt-test', input: user('responses_json') }, ON);
const fc = rj.output[0];
out.responses_json = { type: fc.type, name: fc.name, arguments: fc.arguments };
const rfollow = [
  ...user('responses_follow_up'),
  { type: 'function_call', call_id: fc.call_id, name: fc.name, arguments: fc.arguments },
  { type: 'function_call_output', call_id: fc.call_id, output: '6765\n' },
];
out.responses_follow_up_input = rfollow;
out.responses_follow_up = (await client.responses.create({ model: 'gpt-test', input: rfollow }, ON)).output_text;

await client.responses.create({
  model: 'gpt-test',
  input: user('responses_own_tool'),
  tools: [{ type: 'function', name: 'python', parameters: { type: 'object' }, strict: false }],
}, ON);
await client.responses.create({ model: 'gpt-test', input: user('responses_no_header') });

// The configuration key: on without the header, off with `none`.
await keyed.chat.completions.create({ model: 'gpt-test', messages: user('key_chat') });
await keyed.chat.completions.create({ model: 'gpt-test', messages: user('key_chat_none') }, OFF);
await keyed.responses.create({ model: 'gpt-test', input: user('key_responses') });
await keyed.responses.create({ model: 'gpt-test', input: user('key_responses_none') }, OFF);

process.stdout.write(JSON.stringify(out) + '\n');

// Drives the official openai Node SDK against sandgate and prints what it received as JSON.
//
// Run by tests/it/sdk.rs with SANDGATE_BASE_URL set to sandgate's /v1 URL (a scripted upstream
// behind it). Each case records the text the SDK handed back; the Rust test compares it with the
// rewrite engine's output.
import OpenAI from 'openai';
import { readFileSync } from 'node:fs';

const messages = [{ role: 'user', content: 'plot A, B, C' }];

const client = new OpenAI({
  baseURL: process.env.SANDGATE_BASE_URL,
  apiKey: 'sk-test-node',
  maxRetries: 0,
  timeout: 30_000,
});
const out = { sdk: 'node', version: JSON.parse(readFileSync(new URL('./node_modules/openai/package.json', import.meta.url))).version, node: process.version };

const byIndex = (choices) => [...choices].sort((a, b) => a.index - b.index);

const chat = await client.chat.completions.create({ model: 'gpt-test', n: 2, messages });
out.chat = byIndex(chat.choices).map((c) => c.message.content);

const stream = await client.chat.completions.create({
  model: 'gpt-test',
  n: 2,
  messages,
  stream: true,
  stream_options: { include_usage: true },
});
const texts = [];
let usage = null;
for await (const chunk of stream) {
  if (chunk.usage) usage = chunk.usage.total_tokens;
  for (const c of chunk.choices) {
    texts[c.index] = (texts[c.index] ?? '') + (c.delta?.content ?? '');
  }
}
out.chat_stream = texts;
out.chat_stream_usage = usage;

let deltas = '';
let done = null;
let completed = null;
const events = await client.responses.create({ model: 'gpt-test', input: 'plot A, B, C', stream: true });
for await (const ev of events) {
  if (ev.type === 'response.output_text.delta') deltas += ev.delta;
  else if (ev.type === 'response.output_text.done') done = ev.text;
  else if (ev.type === 'response.completed') {
    completed = ev.response.output
      .flatMap((item) => item.content ?? [])
      .filter((part) => part.type === 'output_text')
      .map((part) => part.text)
      .join('');
  }
}
out.responses_stream = { deltas, done, completed };

const completions = await client.completions.create({ model: 'gpt-test', prompt: 'Write Python:', n: 2 });
out.completions = byIndex(completions.choices).map((c) => c.text);

try {
  await client.chat.completions.create({ model: 'rate-limited', messages });
  out.rate_limit = { raised: null };
} catch (e) {
  out.rate_limit = e instanceof OpenAI.RateLimitError
    ? { raised: 'RateLimitError', status: e.status, retry_after: e.headers?.get?.('retry-after') ?? null, message: e.message }
    : { raised: e?.constructor?.name ?? typeof e, detail: String(e) };
}

process.stdout.write(JSON.stringify(out) + '\n');

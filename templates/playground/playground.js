// The sandgate playground: sends the conversation to this server's /v1/chat/completions with
// `stream: true`, reads the server-sent events, and shows the growing answer as markdown rendered
// by this server (POST playground/render), at most every RENDER_EVERY_MS while it streams.
//
// Test contract: document.body.dataset.state is `idle`, then `streaming` while an answer arrives,
// then `done`, `stopped` or `error`. Each turn is an <article class="turn user|assistant">; the
// assistant's rendered answer is in its `.markdown` element.
'use strict';

(() => {
  const RENDER_EVERY_MS = 100;
  const $ = (id) => document.getElementById(id);
  const log = $('log');
  const prompt = $('prompt');
  const model = $('model');
  const key = $('key');
  const messages = [];
  let controller = null;
  // Bumped by New chat, so that an answer still being stopped leaves the new chat alone.
  let generation = 0;

  const setState = (state, status) => {
    document.body.dataset.state = state;
    $('status').textContent = status || '';
    const busy = state === 'streaming';
    $('send').disabled = busy;
    $('stop').disabled = !busy;
  };

  const headers = (json) => {
    const h = {};
    if (json) h['content-type'] = 'application/json';
    const k = key.value.trim();
    if (k) h.authorization = `Bearer ${k}`;
    return h;
  };

  // Fills the model list from /v1/models; picks the first model when none is chosen yet.
  async function loadModels() {
    try {
      const resp = await fetch('v1/models', { headers: headers(false) });
      if (!resp.ok) return;
      const body = await resp.json();
      const ids = (Array.isArray(body.data) ? body.data : [])
        .map((m) => m && m.id)
        .filter((id) => typeof id === 'string');
      const list = $('models');
      list.replaceChildren(...ids.map((id) => {
        const option = document.createElement('option');
        option.value = id;
        return option;
      }));
      if (!model.value && ids.length) model.value = ids[0];
    } catch (_) {
      // The list is only a convenience: the model can be typed.
    }
  }

  function addTurn(role, text) {
    const article = document.createElement('article');
    article.className = `turn ${role}`;
    const who = document.createElement('h3');
    who.className = 'who';
    who.textContent = role === 'user' ? 'You' : 'Assistant';
    const body = document.createElement('div');
    body.className = role === 'user' ? 'text' : 'markdown';
    if (text !== undefined) body.textContent = text;
    article.append(who, body);
    log.append(article);
    article.scrollIntoView({ block: 'end' });
    return body;
  }

  async function renderHtml(markdown) {
    const resp = await fetch('playground/render', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ markdown }),
    });
    if (!resp.ok) throw new Error(`render: HTTP ${resp.status}`);
    const body = await resp.json();
    if (typeof body.html !== 'string') throw new Error('render: no html in the answer');
    return body.html;
  }

  // Shows a text that keeps growing: one render in flight at a time, the newest text wins, at most
  // one render every RENDER_EVERY_MS. If rendering fails, the text is shown as plain text.
  class Live {
    constructor(el) {
      this.el = el;
      this.text = '';
      this.shown = null;
      this.loop = null;
      this.last = -Infinity;
    }

    set(text) {
      this.text = text;
      if (!this.loop) this.loop = this.run().finally(() => { this.loop = null; });
    }

    async run() {
      while (this.shown !== this.text) {
        const wait = this.last + RENDER_EVERY_MS - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const text = this.text;
        this.last = performance.now();
        try {
          this.el.innerHTML = await renderHtml(text);
          this.el.classList.remove('plain');
        } catch (_) {
          this.el.textContent = text;
          this.el.classList.add('plain');
        }
        this.shown = text;
      }
    }

    async finish(text) {
      this.set(text);
      while (this.loop) await this.loop;
    }
  }

  // Yields the data of each server-sent event of a response body (WHATWG event stream rules).
  async function* events(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    let data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.search(/\r\n|\r|\n/)) >= 0) {
        // A lone \r at the end may be the first half of \r\n: wait for more.
        if (buffer[end] === '\r' && end === buffer.length - 1) break;
        const line = buffer.slice(0, end);
        buffer = buffer.slice(buffer[end] === '\r' && buffer[end + 1] === '\n' ? end + 2 : end + 1);
        if (line === '') {
          if (data.length) yield data.join('\n');
          data = [];
        } else if (line.startsWith('data:')) {
          data.push(line.slice(line[5] === ' ' ? 6 : 5));
        }
      }
    }
    if (data.length) yield data.join('\n');
  }

  async function errorText(resp) {
    try {
      const body = await resp.json();
      if (body && body.error && body.error.message) return `${resp.status}: ${body.error.message}`;
    } catch (_) { /* not JSON */ }
    return `HTTP ${resp.status}`;
  }

  async function send(text) {
    if (controller) return;
    const mine = generation;
    messages.push({ role: 'user', content: text });
    addTurn('user', text);
    const out = addTurn('assistant');
    const live = new Live(out);
    controller = new AbortController();
    setState('streaming', 'Answering…');
    let answer = '';
    try {
      const request = { messages, stream: true };
      if (model.value.trim()) request.model = model.value.trim();
      const resp = await fetch('v1/chat/completions', {
        method: 'POST',
        // Links are what this page can show safely; the header asks sandgate for link mode.
        headers: { ...headers(true), 'x-sandgate-mode': 'link' },
        body: JSON.stringify(request),
        signal: controller.signal,
      });
      if (!resp.ok) throw new Error(await errorText(resp));
      if (!(resp.headers.get('content-type') || '').includes('text/event-stream')) {
        const body = await resp.json();
        const first = body.choices && body.choices[0];
        answer = (first && first.message && first.message.content) || '';
      } else {
        for await (const data of events(resp.body)) {
          if (data === '[DONE]') break;
          let chunk;
          try { chunk = JSON.parse(data); } catch (_) { continue; }
          if (chunk.error) throw new Error(chunk.error.message || 'the stream ended with an error');
          for (const choice of chunk.choices || []) {
            const piece = choice && choice.index === 0 && choice.delta && choice.delta.content;
            if (typeof piece === 'string' && piece) {
              answer += piece;
              live.set(answer);
            }
          }
        }
      }
      await live.finish(answer);
      messages.push({ role: 'assistant', content: answer });
      setState('done', '');
    } catch (e) {
      await live.finish(answer);
      if (mine !== generation) {
        // New chat was pressed: this turn is gone already.
      } else if (controller.signal.aborted) {
        if (answer) messages.push({ role: 'assistant', content: answer });
        else messages.pop();
        setState('stopped', 'Stopped.');
      } else {
        messages.pop();
        const p = document.createElement('p');
        p.className = 'error';
        p.textContent = `Error: ${e.message}`;
        out.append(p);
        setState('error', 'The request failed.');
      }
    } finally {
      controller = null;
    }
  }

  $('ask').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = prompt.value.trim();
    if (!text || controller) return;
    prompt.value = '';
    send(text);
  });
  prompt.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      $('ask').requestSubmit();
    }
  });
  $('stop').addEventListener('click', () => { if (controller) controller.abort(); });
  $('reset').addEventListener('click', () => {
    generation += 1;
    if (controller) controller.abort();
    messages.length = 0;
    log.replaceChildren();
    setState('idle', '');
    prompt.focus();
  });
  $('examples').addEventListener('click', (ev) => {
    const button = ev.target.closest('button.example');
    if (!button) return;
    prompt.value = button.dataset.prompt || button.textContent;
    $('ask').requestSubmit();
  });
  key.addEventListener('change', loadModels);

  setState('idle', '');
  loadModels();
})();

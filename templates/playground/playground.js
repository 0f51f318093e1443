// The sandgate playground: sends the conversation to this server's /v1/chat/completions with
// `stream: true`, reads the server-sent events, and shows the growing answer as markdown rendered
// by this server (POST playground/render), at most every RENDER_EVERY_MS while it streams.
//
// Test contract: document.body.dataset.state is `idle`, then `streaming` while an answer arrives
// (`running` while a tool call's code runs), then `done`, `stopped` or `error`. Each turn is an
// <article class="turn user|assistant|tool">; the assistant's rendered answer is in its `.markdown`
// element; a tool turn has the code in `pre.code`, the live output in `pre.output` (spans
// `.stdout`/`.stderr`), values and figures in `.values`, its end in `data-status`.
//
// With the "Let the model run code" switch (#tools) on, the conversation is an agentic loop: see
// answerOnce, runCall and send.
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
    const busy = state === 'streaming' || state === 'running';
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

  // The agentic loop (the "Let the model run code" switch): requests carry
  // `x-sandgate-tools: python`, so the model is offered a `python` tool; each call runs in this
  // conversation's runner (sandbox/runner.js: Pyodide in a hidden sandboxed iframe, state kept
  // from call to call), is shown with its live output, and its result goes back as the tool
  // message; the model continues until it answers without a call, at most MAX_TOOL_ROUNDS rounds.
  const MAX_TOOL_ROUNDS = 8;
  // The most text one tool result sends back to the model; figures are described, never sent.
  const TOOL_RESULT_CHARS = 16384;
  let runner = null; // A promise of this conversation's runner, made on first use.
  let running = null; // The runner of the call in progress, for Stop.
  let ranCode = false; // Whether this conversation has run code yet.

  function conversationRunner() {
    if (!runner) {
      const url = new URL('sandbox/runner.js', document.baseURI).href;
      runner = import(url).then((m) => m.connect());
      runner.catch(() => { runner = null; });
    }
    return runner;
  }

  // One model answer: streamed into a new assistant turn. Returns its text and its tool calls.
  async function answerOnce(tools) {
    const out = addTurn('assistant');
    const live = new Live(out);
    const calls = [];
    let answer = '';
    setState('streaming', 'Answering…');
    try {
      const request = { messages, stream: true };
      if (model.value.trim()) request.model = model.value.trim();
      const resp = await fetch('v1/chat/completions', {
        method: 'POST',
        // Links are what this page can show safely; the header asks sandgate for link mode. The
        // tools header makes the switch the only say over the python tool (`none` when off).
        headers: { ...headers(true), 'x-sandgate-mode': 'link', 'x-sandgate-tools': tools ? 'python' : 'none' },
        body: JSON.stringify(request),
        signal: controller.signal,
      });
      if (!resp.ok) throw new Error(await errorText(resp));
      const addCall = (delta) => {
        if (!delta || typeof delta !== 'object') return;
        const at = Number.isInteger(delta.index) ? delta.index : calls.length;
        const call = calls[at] || (calls[at] = { id: '', name: '', arguments: '' });
        if (typeof delta.id === 'string') call.id = delta.id;
        const fn = delta.function || {};
        if (typeof fn.name === 'string') call.name += fn.name;
        if (typeof fn.arguments === 'string') call.arguments += fn.arguments;
      };
      if (!(resp.headers.get('content-type') || '').includes('text/event-stream')) {
        const body = await resp.json();
        const message = (body.choices && body.choices[0] && body.choices[0].message) || {};
        answer = message.content || '';
        (message.tool_calls || []).forEach((c, index) => addCall({ ...c, index }));
      } else {
        for await (const data of events(resp.body)) {
          if (data === '[DONE]') break;
          let chunk;
          try { chunk = JSON.parse(data); } catch (_) { continue; }
          if (chunk.error) throw new Error(chunk.error.message || 'the stream ended with an error');
          for (const choice of chunk.choices || []) {
            if (!choice || choice.index !== 0 || !choice.delta) continue;
            const piece = choice.delta.content;
            if (typeof piece === 'string' && piece) {
              answer += piece;
              live.set(answer);
            }
            for (const delta of choice.delta.tool_calls || []) addCall(delta);
          }
        }
      }
      await live.finish(answer);
    } catch (e) {
      await live.finish(answer);
      e.partial = answer;
      throw e;
    } finally {
      // A turn that only called a tool shows the call, not an empty answer.
      if (!answer && calls.length) out.parentElement.remove();
    }
    return { answer, calls: calls.filter(Boolean) };
  }

  // Shows a call of `python` in the conversation and runs it; resolves with the tool message's text.
  async function runCall(call, mine) {
    let code = null;
    try {
      const args = JSON.parse(call.arguments || '{}');
      if (args && typeof args.code === 'string') code = args.code;
    } catch (_) { /* reported below */ }
    if (call.name !== 'python') return `error: there is no tool named ${JSON.stringify(call.name)}; the only tool is python`;
    if (code === null) return 'error: the arguments must be JSON with a string field "code"';

    const article = document.createElement('article');
    article.className = 'turn tool';
    const who = document.createElement('h3');
    who.className = 'who';
    who.textContent = 'Python, run in your browser';
    const source = document.createElement('pre');
    source.className = 'code';
    const codeEl = document.createElement('code');
    codeEl.textContent = code;
    source.append(codeEl);
    const output = document.createElement('pre');
    output.className = 'output';
    const values = document.createElement('div');
    values.className = 'values';
    const status = document.createElement('p');
    status.className = 'run-status';
    status.textContent = 'Starting Python…';
    article.append(who, source, output, values, status);
    log.append(article);
    article.scrollIntoView({ block: 'end' });
    setState('running', 'Running the model’s code…');

    let figures = 0;
    const show = (value) => {
      if (value.type === 'png' && typeof value.data === 'string') {
        figures += 1;
        const img = document.createElement('img');
        img.alt = `Figure ${figures}`;
        img.src = `data:image/png;base64,${value.data}`;
        if (value.width > 0) img.style.width = `${Math.round(value.width / 1.5)}px`;
        values.append(img);
      } else {
        const pre = document.createElement('pre');
        pre.className = `value ${value.type}`;
        pre.textContent = value.type === 'html' ? htmlText(value.data) :
          value.type === 'plotly' ? `[figure ${++figures}: Plotly chart, not drawn here]` : String(value.data);
        values.append(pre);
      }
    };
    const r = await conversationRunner();
    if (mine !== generation) throw new Error('the conversation was reset');
    running = r;
    let result;
    try {
      status.textContent = 'Running…';
      result = await r.run(code, {
        onOutput: ({ stream, text }) => {
          const span = document.createElement('span');
          span.className = stream;
          span.textContent = text;
          output.append(span);
        },
        onDisplay: show,
      });
    } finally {
      running = null;
    }
    const took = result.durationMs < 1000 ? `${result.durationMs} ms` : `${(result.durationMs / 1000).toFixed(1)} s`;
    status.textContent = {
      done: `Done in ${took}.`, error: 'Finished with an error.',
      timeout: 'Stopped at the time limit.', stopped: 'Stopped.',
    }[result.status];
    article.dataset.status = result.status;
    const text = toolText(result, ranCode);
    ranCode = true;
    return text;
  }

  // The text of HTML the runner sanitized, for the model and for this page (which shows it as text).
  function htmlText(html) {
    return new DOMParser().parseFromString(String(html), 'text/html').body.textContent || '';
  }

  // What the model gets back: stdout, stderr, the values (figures as one-line descriptions), the
  // way the run ended; at most TOOL_RESULT_CHARS characters.
  function toolText(result, ranBefore) {
    const lines = (text) => (text && !text.endsWith('\n') ? `${text}\n` : text || '');
    let text = lines(result.stdout) + lines(result.stderr);
    let figure = 0;
    for (const value of result.results) {
      if (value.type === 'png') text += `[figure ${++figure}: PNG ${value.width}×${value.height}]\n`;
      else if (value.type === 'plotly') text += `[figure ${++figure}: Plotly chart]\n`;
      else if (value.type === 'html') text += lines(htmlText(value.data));
      else text += lines(String(value.data));
    }
    if (result.status === 'timeout') text += '[the run was stopped at the time limit]\n';
    if (result.status === 'stopped') text += '[the run was stopped by the user]\n';
    if (result.fresh && ranBefore) text += '[the interpreter had restarted: variables from earlier calls are gone]\n';
    if (!text) text = '(no output)\n';
    if (text.length > TOOL_RESULT_CHARS) {
      text = `${text.slice(0, TOOL_RESULT_CHARS)}\n[output truncated to ${TOOL_RESULT_CHARS} characters]\n`;
    }
    return text;
  }

  async function send(text) {
    if (controller) return;
    const mine = generation;
    const tools = $('tools').checked;
    messages.push({ role: 'user', content: text });
    addTurn('user', text);
    controller = new AbortController();
    // Calls not answered yet, so that a Stop still leaves every call with its tool message.
    let unanswered = [];
    let replied = false;
    try {
      for (let round = 0; ; round += 1) {
        const { answer, calls } = await answerOnce(tools);
        if (!calls.length || !tools) {
          messages.push({ role: 'assistant', content: answer });
          setState('done', '');
          break;
        }
        replied = true;
        messages.push({
          role: 'assistant', content: answer || null,
          tool_calls: calls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } })),
        });
        if (round >= MAX_TOOL_ROUNDS) {
          for (const c of calls) messages.push({ role: 'tool', tool_call_id: c.id, content: '[not run: too many rounds of tool calls]' });
          setState('done', `Stopped after ${MAX_TOOL_ROUNDS} rounds of tool calls.`);
          break;
        }
        unanswered = calls.slice();
        for (const c of calls) {
          const content = await runCall(c, mine);
          unanswered.shift();
          messages.push({ role: 'tool', tool_call_id: c.id, content });
          if (controller.signal.aborted) throw new Error('stopped');
        }
      }
    } catch (e) {
      if (mine !== generation) {
        // New chat was pressed: this turn is gone already.
      } else if (controller.signal.aborted) {
        for (const c of unanswered) messages.push({ role: 'tool', tool_call_id: c.id, content: '[not run: stopped by the user]' });
        if (e.partial) messages.push({ role: 'assistant', content: e.partial });
        else if (!replied) messages.pop();
        setState('stopped', 'Stopped.');
      } else {
        for (const c of unanswered) messages.push({ role: 'tool', tool_call_id: c.id, content: `[not run: ${e.message}]` });
        if (!replied) messages.pop();
        const p = document.createElement('p');
        p.className = 'error';
        p.textContent = `Error: ${e.message}`;
        const last = log.lastElementChild;
        (last && last.matches('.turn.assistant') ? last.querySelector('.markdown') : log).append(p);
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
  $('stop').addEventListener('click', () => {
    if (controller) controller.abort();
    if (running) running.stop().catch(() => {});
  });
  $('reset').addEventListener('click', () => {
    generation += 1;
    if (controller) controller.abort();
    // One runner per conversation: a new chat starts with a fresh interpreter.
    if (runner) runner.then((r) => r.reset()).catch(() => {});
    ranCode = false;
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

// sandgate's runner: an ES module any web page can import from {public_url}/sandbox/runner.js
// (it is served with Access-Control-Allow-Origin: *) to run Python in the user's browser:
//
//   import { connect } from 'https://sandgate.example/sandbox/runner.js';
//   const runner = await connect();
//   await runner.run('x = 6 * 7');
//   const result = await runner.run('print(x)'); // {status: 'done', stdout: '42\n', ...}
//
// connect() embeds the sandbox page ({public_url}/sandbox#runner=1) in a hidden iframe with
// sandbox="allow-scripts" (an opaque origin: it shares nothing with the embedding page) and drives
// it over postMessage with the versioned protocol below (README "The runner API"), which a page can
// also speak without this module. The page runs the code in a Pyodide worker whose interpreter
// lives on from run to run (variables, imports, files) until reset(), a timeout or stop().
//
// Protocol, version 1. Every message is {protocol: 'sandgate-runner', version: 1, type, ...}.
//   parent -> page: {type: 'hello'}; {type: 'run', id, code, timeoutMs?, stdin?, files?};
//                   {type: 'stop', id}; {type: 'reset', id}.
//   page -> parent: {type: 'ready', timeoutMs, pyodideVersion} (the answer to hello);
//                   {type: 'output', id, stream: 'stdout' | 'stderr', text};
//                   {type: 'display', id, result: {type, data, ...}}; {type: 'result', id, result};
//                   {type: 'ack', id, of: 'stop' | 'reset'}.
// The page answers only its parent window, and ignores every message that does not follow the
// protocol; this module listens only to its own iframe.

export const PROTOCOL_VERSION = 1;

const PROTOCOL = 'sandgate-runner';
const STATUSES = new Set(['done', 'error', 'timeout', 'stopped']);
const CONNECT_TIMEOUT_MS = 30000;

// The sandbox page of the sandgate this module was loaded from.
const PAGE_URL = new URL('../sandbox#runner=1', import.meta.url).href;

/**
 * Embeds a runner and resolves once the page has answered.
 * options: {container?: Element (default document.body), timeoutMs?: how long to wait for the
 * page (default 30 s)}.
 */
export function connect(options = {}) {
  const container = options.container || document.body;
  const waitMs = options.timeoutMs > 0 ? options.timeoutMs : CONNECT_TIMEOUT_MS;
  const frame = document.createElement('iframe');
  frame.setAttribute('sandbox', 'allow-scripts');
  frame.setAttribute('aria-hidden', 'true');
  frame.setAttribute('tabindex', '-1');
  frame.title = 'sandgate Python runner';
  frame.style.display = 'none';
  frame.src = PAGE_URL;
  return new Promise((resolve, reject) => {
    let hello = null;
    const timer = setTimeout(() => {
      clearInterval(hello);
      runner.close();
      reject(new Error('the sandgate runner at ' + PAGE_URL + ' did not answer within ' + waitMs / 1000 + ' s'));
    }, waitMs);
    const runner = new Runner(frame, (info) => {
      clearTimeout(timer);
      clearInterval(hello);
      resolve(runner);
    });
    const say = () => runner.post({ type: 'hello' });
    // The page may not listen yet when the frame's load event fires in some browsers: say hello
    // until it answers.
    frame.addEventListener('load', say);
    hello = setInterval(say, 250);
    container.append(frame);
  });
}

class Runner {
  #frame;
  #pending = new Map(); // id -> {resolve, reject, onOutput, onDisplay} of runs, stops, resets
  #next = 1;
  #closed = false;
  #onReady;
  #listener;

  constructor(frame, onReady) {
    this.#frame = frame;
    this.#onReady = onReady;
    /** What the page said in its ready message: {timeoutMs, pyodideVersion}. */
    this.info = null;
    this.#listener = (ev) => this.#receive(ev);
    window.addEventListener('message', this.#listener);
  }

  /**
   * Runs `code` and resolves with its RunResult: {status: 'done' | 'error' | 'timeout' |
   * 'stopped', stdout, stderr, results: [{type: 'text' | 'html' | 'png' | 'plotly', data}],
   * files: [{name, size, data?: base64, skipped?}], durationMs, fresh}. Runs of one runner go
   * one after another. options: {timeoutMs?, stdin?, files?: [{name, data: string | Uint8Array |
   * ArrayBuffer}] (written to the working directory first), onOutput?({stream, text}),
   * onDisplay?({type, data})}.
   */
  run(code, options = {}) {
    const { timeoutMs, stdin, files, onOutput, onDisplay } = options;
    return this.#request({ type: 'run', code: String(code), timeoutMs, stdin, files }, { onOutput, onDisplay });
  }

  /** Stops the run in progress (its result says 'stopped'); the next run starts fresh. */
  stop() {
    return this.#request({ type: 'stop' });
  }

  /** A fresh interpreter: stops the run in progress, forgets every variable, import and file. */
  reset() {
    return this.#request({ type: 'reset' });
  }

  /** Removes the iframe; runs still pending are rejected. */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    window.removeEventListener('message', this.#listener);
    this.#frame.remove();
    for (const waiter of this.#pending.values()) waiter.reject(new Error('the runner was closed'));
    this.#pending.clear();
  }

  post(msg) {
    const target = this.#frame.contentWindow;
    // The page's origin is opaque, so '*' is the only target origin that reaches it; the message
    // goes to this iframe's window and nowhere else.
    if (target) target.postMessage({ ...msg, protocol: PROTOCOL, version: PROTOCOL_VERSION }, '*');
  }

  #request(msg, hooks = {}) {
    if (this.#closed) return Promise.reject(new Error('the runner was closed'));
    const id = 'm' + this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, ...hooks });
      this.post({ ...msg, id });
    });
  }

  #receive(ev) {
    // Only this runner's iframe speaks to it; messages from anywhere else are not for us.
    if (ev.source !== this.#frame.contentWindow || ev.source === null) return;
    const m = ev.data;
    if (!m || typeof m !== 'object' || m.protocol !== PROTOCOL || m.version !== PROTOCOL_VERSION) return;
    if (m.type === 'ready') {
      this.info = { timeoutMs: Number(m.timeoutMs), pyodideVersion: String(m.pyodideVersion || '') };
      if (this.#onReady) this.#onReady(this.info);
      this.#onReady = null;
      return;
    }
    const waiter = this.#pending.get(m.id);
    if (!waiter) return;
    switch (m.type) {
      case 'output':
        if (waiter.onOutput && typeof m.text === 'string') call(waiter.onOutput, { stream: m.stream === 'stderr' ? 'stderr' : 'stdout', text: m.text });
        break;
      case 'display':
        if (waiter.onDisplay && m.result && typeof m.result === 'object') call(waiter.onDisplay, m.result);
        break;
      case 'result':
        this.#pending.delete(m.id);
        waiter.resolve(runResult(m.result));
        break;
      case 'ack':
        this.#pending.delete(m.id);
        waiter.resolve();
        break;
      default: break;
    }
  }
}

// A callback's exception is the caller's: it does not break the runner.
function call(fn, value) {
  try {
    fn(value);
  } catch (e) {
    setTimeout(() => { throw e; }, 0);
  }
}

function runResult(r) {
  const result = r && typeof r === 'object' ? r : {};
  return {
    status: STATUSES.has(result.status) ? result.status : 'error',
    stdout: typeof result.stdout === 'string' ? result.stdout : '',
    stderr: typeof result.stderr === 'string' ? result.stderr : '',
    results: Array.isArray(result.results) ? result.results : [],
    files: Array.isArray(result.files) ? result.files : [],
    durationMs: Number(result.durationMs) || 0,
    fresh: result.fresh === true,
  };
}

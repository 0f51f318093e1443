// The sandbox page: reads the code from the link's fragment (#py=<base64url of raw DEFLATE>), shows
// it, runs it in a Pyodide worker (a fresh one for every run) and shows what it produced.
//
// Test contract: document.body.dataset.state goes 'loading' -> 'running' -> 'done' | 'error' |
// 'timeout' (or 'stopped' after Stop); #stdout, #stderr, #result and #figures hold the outputs.
// document.body.dataset.spare is 'booting' or 'ready' (the spare worker), dataset.worker 'warm'
// when the current run took a spare that had already booted, else 'cold'.
//
// Trust: a link runs on open only if this sandgate made it. The page hashes the link's signed part
// (the fragment up to '&mac=') and asks sandgate's GET sandbox/verify?h=<hash>&mac=<mac>, so only
// the hash and the MAC leave the browser, never the code. dataset.link says what it found: 'signed'
// (sandgate answered 204: the run starts), 'unsigned' (no MAC: a hand-written or version 1 link, or
// the check could not be made) or 'invalid' (sandgate refused the MAC: forged, or changed after
// signing). An unsigned or invalid link shows its code, #link-note says why it did not run, and the
// state is 'ready' until Run is pressed. The runner mode (#runner=1) is exempt: the embedding page
// chose the code it sends.
//
// Every message from the worker is untrusted data (the Python code can post anything): text goes
// into textContent; HTML (_repr_html_) is rebuilt from an allowlist of elements and attributes;
// figures are PNG bytes shown through blob: URLs, or Plotly JSON (size-capped) handed by
// postMessage to a sandboxed child frame (sandbox/figure) that draws it with plotly.js.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const root = $('sandgate');
  const ui = {
    status: $('status'), run: $('run'), stop: $('stop'), edit: $('edit'), code: $('code'),
    stdout: $('stdout'), stderr: $('stderr'), result: $('result'), figures: $('figures'),
    runAlone: $('run-alone'), cellsSection: $('cells-section'), cells: $('cells'), cellsNote: $('cells-note'),
    stdin: $('stdin'), stdinNote: $('stdin-note'), files: $('files'), filesList: $('files-list'),
    filesNote: $('files-note'), outputsSection: $('outputs-section'), outputs: $('outputs'),
    linkNote: $('link-note'),
  };
  // Where the opened block's outputs go; an earlier cell's outputs go to its own view (see cells).
  const blockOut = { stdout: ui.stdout, stderr: ui.stderr, result: ui.result, figures: ui.figures };
  // The earlier cells of a link (#cx=), decompressed: the engine's budget is far below this.
  const MAX_CONTEXT_BYTES = 4 << 20;
  const MAX_STREAM_CHARS = 2_000_000;
  // At most this many Plotly figures per run (each is a frame, with a process of its own).
  const MAX_PLOTLY_FIGURES = 20;
  const MIN_FIGURE_PX = 100;
  const MAX_FIGURE_PX = 4000;
  // At most this many values in #result (display() calls and the last expression).
  const MAX_RESULTS = 200;

  // Configuration from the data-* attributes sandgate sets when it renders the page.
  const absolute = (url) => {
    const at = url.indexOf('{package_name}');
    if (url === 'PYPI') return url;
    if (at < 0) return new URL(url, location.href).href;
    return new URL(url.slice(0, at), location.href).href + url.slice(at);
  };
  const config = {
    pyodideUrl: absolute(root.dataset.pyodideUrl || ''),
    indexes: (root.dataset.packageIndexes || '').split(' ').filter(Boolean).map(absolute),
    timeoutMs: Math.max(1, parseInt(root.dataset.timeoutMs, 10) || 30000),
    offline: root.dataset.offline === 'true',
    // The largest block sandgate rewrites (max_block_bytes): the code a link may carry.
    maxCodeBytes: Math.max(1, parseInt(root.dataset.maxCodeBytes, 10) || 0),
    // Plotly figures' JSON is capped: at most this many characters for all the figures of one run
    // (the worker does not even send a larger figure).
    maxFigureJsonChars: Math.max(1, parseInt(root.dataset.maxFigureJsonChars, 10) || 0),
  };
  const MAX_CODE_BYTES = config.maxCodeBytes;
  const MAX_PLOTLY_JSON_CHARS = config.maxFigureJsonChars;
  const prepareLimitMs = Math.max(90000, config.timeoutMs);

  let workerSource = null;

  function setState(state, text) {
    document.body.dataset.state = state;
    ui.status.textContent = text;
    const active = state === 'loading' || state === 'running';
    ui.run.disabled = active;
    ui.runAlone.disabled = active;
    ui.stop.disabled = !active;
  }

  // Output streams: appended in batches so that a fast print loop stays cheap.
  const pending = new Map();
  let flushScheduled = false;
  function append(el, text, className) {
    if (className) {
      flush();
      const span = document.createElement('span');
      span.className = className;
      span.textContent = text.endsWith('\n') ? text : text + '\n';
      el.appendChild(span);
      return;
    }
    pending.set(el, (pending.get(el) || '') + text);
    if (!flushScheduled) {
      flushScheduled = true;
      setTimeout(flush, 30);
    }
  }
  function flush() {
    flushScheduled = false;
    for (const [el, text] of pending) {
      const used = el.textContent.length;
      if (used >= MAX_STREAM_CHARS) continue;
      let chunk = text;
      if (used + chunk.length > MAX_STREAM_CHARS) {
        chunk = chunk.slice(0, MAX_STREAM_CHARS - used) + '\n… output truncated\n';
      }
      el.appendChild(document.createTextNode(chunk));
    }
    pending.clear();
  }

  function clearOutputs() {
    flush();
    clearFigures();
    const views = [blockOut, ...cellViews];
    for (const el of views.flatMap((v) => [v.stdout, v.stderr, v.result, v.figures]).concat([ui.outputs])) {
      for (const img of el.querySelectorAll('img')) URL.revokeObjectURL(img.src);
      for (const a of el.querySelectorAll('a[href^="blob:"]')) URL.revokeObjectURL(a.href);
      el.replaceChildren();
    }
    ui.outputsSection.hidden = true;
  }

  // The fragment: #py=<payload>&other=... ; unknown parameters are ignored.
  function hashParam(name) {
    const param = location.hash.replace(/^#/, '').split('&').find((p) => p.startsWith(name + '='));
    return param === undefined ? null : param.slice(name.length + 1);
  }

  async function codeFromHash() {
    const b64 = hashParam('py');
    if (b64 === null) throw new Error('This link carries no code (expected #py=… in the URL).');
    return inflate(b64, 'The code in this link', MAX_CODE_BYTES);
  }

  // A payload (base64url of raw DEFLATE of UTF-8) as text; `what` names it in the errors.
  async function inflate(b64, what, maxBytes) {
    const fail = (text) => Object.assign(new Error(what + ' ' + text), { payload: true });
    if (!/^[A-Za-z0-9_-]*={0,2}$/.test(b64)) throw fail('is not valid base64url.');
    let binary;
    try {
      binary = atob(b64.replace(/=+$/, '').replace(/-/g, '+').replace(/_/g, '/'));
    } catch (e) {
      throw fail('is not valid base64url.');
    }
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate-raw'));
    const reader = stream.getReader();
    const chunks = [];
    let total = 0;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        total += value.length;
        if (total > maxBytes) {
          await reader.cancel();
          throw fail('is larger than ' + Math.round(maxBytes / (1 << 20)) + ' MiB.');
        }
        chunks.push(value);
      }
    } catch (e) {
      if (e && e.payload) throw e;
      throw fail('could not be decompressed (it is damaged or truncated).');
    }
    const all = new Uint8Array(total);
    let at = 0;
    for (const c of chunks) { all.set(c, at); at += c.length; }
    return new TextDecoder('utf-8').decode(all);
  }

  async function loadWorkerSource() {
    if (!workerSource) {
      workerSource = fetch(new URL('sandbox/worker.js', location.href).href, { credentials: 'omit' })
        .then((r) => {
          if (!r.ok) throw new Error('the worker script answered ' + r.status);
          return r.text();
        });
      workerSource.catch(() => { workerSource = null; });
    }
    return workerSource;
  }

  // Workers. A worker runs at most one program: when the run ends, however it ends, the page
  // terminates it, so that nothing the program leaves behind (a timer, an asyncio task, a loop
  // that outlived a forged message, module state) survives into the next run. Meanwhile a fresh
  // spare boots in the background, and loads the packages of the code just run, so that Run again
  // does not wait for Pyodide.
  //
  // The worker answers on a private MessagePort it captures before any Python runs; the Worker
  // object's own messages (all that js.postMessage from Python can reach) are not listened to.
  // Python can still call the runner's callbacks, so the page trusts the messages for their data
  // only: it owns the clock, and a run ends when the page says so.
  function bootWorker(preload, session) {
    const slot = { worker: null, port: null, ready: null, failed: false, discarded: false, booted: false, interactive: false };
    slot.ready = (async () => {
      const source = await loadWorkerSource();
      if (slot.discarded) throw new Error('the worker was discarded');
      // A module worker from a data: URL: a worker script URL on the server would be
      // cross-origin (and refused) when the page runs in an opaque-origin widget iframe.
      const w = new Worker('data:text/javascript;charset=utf-8,' + encodeURIComponent(source),
        { type: 'module', name: 'sandgate-python' });
      const channel = new MessageChannel();
      slot.worker = w;
      slot.port = channel.port1;
      await new Promise((resolve, reject) => {
        const watchdog = setTimeout(() => reject(new Error('Python (Pyodide) did not load within ' +
          Math.round(prepareLimitMs / 1000) + ' s.')), prepareLimitMs);
        w.onerror = (e) => {
          clearTimeout(watchdog);
          e.preventDefault();
          reject(new Error('The Python worker failed to start' + (e.message ? ': ' + e.message : '.')));
        };
        channel.port1.onmessage = (ev) => {
          const m = ev.data;
          if (!m || typeof m !== 'object') return;
          if (m.type === 'booted') {
            clearTimeout(watchdog);
            slot.interactive = m.interactive === true;
            showInputMode(slot.interactive);
            resolve();
          } else if (m.type === 'boot-error') {
            clearTimeout(watchdog);
            reject(new Error('Python (Pyodide) failed to load: ' + String(m.message)));
          }
        };
        w.postMessage({ type: 'boot', port: channel.port2, pyodideUrl: config.pyodideUrl,
          indexes: config.indexes, offline: config.offline, maxFigureJsonChars: config.maxFigureJsonChars,
          preload: typeof preload === 'string' ? preload : '', session: session === true },
        [channel.port2]);
      });
    })();
    slot.ready.then(() => {
      slot.booted = true;
      showSpare();
    }, () => { slot.failed = true; });
    return slot;
  }

  function discard(slot) {
    if (!slot) return;
    slot.discarded = true;
    if (slot.worker) slot.worker.terminate();
    if (slot.port) {
      slot.port.onmessage = null;
      slot.port.close();
    }
  }

  let spare = null; // A fresh worker that has run nothing: the next run takes it.
  let current = null; // The run in progress.

  function setSpare(slot) {
    spare = slot;
    showSpare();
  }

  function showSpare() {
    document.body.dataset.spare = spare && spare.booted ? 'ready' : 'booting';
  }

  // Ends `rec` if it is the run in progress: its timers stop, its worker is terminated and a
  // fresh spare boots. Returns whether it was.
  function release(rec) {
    if (current !== rec) return false;
    current = null;
    clearTimeout(rec.loadTimer);
    clearTimeout(rec.runTimer);
    closeInputField(rec);
    discard(rec.slot);
    rec.removedFigures = stopFigures(rec);
    if (!spare) setSpare(bootWorker(rec.preload));
    return true;
  }

  function end(rec, state, text, note) {
    if (!release(rec)) return;
    flush();
    if (note) append(ui.stderr, note, 'info');
    const removed = rec.removedFigures;
    if (removed > 0) {
      append(ui.stderr, removed === 1 ? 'A figure was still being drawn: it was removed.'
        : removed + ' figures were still being drawn: they were removed.', 'info');
    }
    setState(state, text);
  }

  function kill(state, text, note) {
    if (current) end(current, state, text, note);
  }

  function timeUp(rec) {
    const where = rec.cell === null ? '' : ' (in cell ' + (rec.cell + 1) + ', an earlier block: this block had not started)';
    if (rec.cell !== null) markCell(rec.cell, 'timeout');
    end(rec, 'timeout', 'Stopped: time limit reached',
      'The code ran longer than ' + config.timeoutMs / 1000 + ' s and was stopped' + where + '.');
  }

  // Runs `code`, after the link's earlier cells unless `alone`, with the Input box's text and the
  // added files.
  async function run(code, alone) {
    if (current) release(current);
    const cells = alone ? [] : context.cells;
    const rec = {
      code, cells, preload: cells.concat([code]).join('\n'), slot: null, phase: 'loading',
      loadTimer: null, runTimer: null, startedAt: 0, images: [], figures: [], figureEntries: [],
      plotlyChars: 0, plotlyFigures: 0, removedFigures: 0, results: 0, out: blockOut, cell: null,
      failedCell: null, clockFrom: 0, used: 0, waited: 0, waitFrom: 0, asking: null, outputBytes: 0,
    };
    current = rec;
    ui.run.textContent = 'Run again';
    clearOutputs();
    cellViews.forEach((_, i) => markCell(i, alone ? 'skipped' : 'waiting'));
    setState('loading', 'Loading Python…');
    let slot = spare;
    setSpare(null);
    document.body.dataset.worker = slot && slot.booted ? 'warm' : 'cold';
    if (!slot || slot.failed) {
      discard(slot);
      slot = bootWorker();
    }
    rec.slot = slot;
    // Loading Python and the packages has a cap of its own, armed once: no message extends it.
    rec.loadTimer = setTimeout(() => {
      if (rec.phase === 'loading') end(rec, 'error', 'Loading took too long', 'Python or its packages did not load within ' +
        Math.round(prepareLimitMs / 1000) + ' s.');
    }, prepareLimitMs);
    try {
      await slot.ready;
    } catch (e) {
      end(rec, 'error', 'Python could not be loaded', String(e.message || e));
      return;
    }
    if (current !== rec) return;
    slot.port.onmessage = (ev) => onWorkerMessage(rec, ev.data);
    setState('loading', 'Loading packages…');
    slot.port.postMessage({
      type: 'run', code, cells, stdin: ui.stdin.value, interactive: true,
      files: [...addedFiles].map(([name, bytes]) => ({ name, bytes })),
    });
  }

  function onWorkerMessage(rec, m) {
    if (current !== rec || rec.phase === 'finished' || !m || typeof m !== 'object') return;
    const text = typeof m.text === 'string' ? m.text : '';
    switch (m.type) {
      case 'status':
        if (rec.phase === 'loading') ui.status.textContent = text;
        break;
      case 'started':
        // The time limit is the page's: armed at the first 'started' of the run, never re-armed
        // or extended by a later one.
        if (rec.phase !== 'loading') break;
        rec.phase = 'running';
        rec.startedAt = performance.now();
        rec.clockFrom = rec.startedAt;
        setState('running', 'Running…');
        rec.runTimer = setTimeout(() => timeUp(rec), config.timeoutMs);
        break;
      case 'stdout': append(rec.out.stdout, text); break;
      case 'stderr': append(rec.out.stderr, text); break;
      case 'info': append(rec.out.stderr, text, 'info'); break;
      case 'cell': enterCell(rec, m.index); break;
      case 'cell-failed': cellFailed(rec, m.index); break;
      case 'block': enterBlock(rec); break;
      case 'input-request': askPerson(rec, typeof m.prompt === 'string' ? m.prompt : ''); break;
      case 'file': showFile(rec, m); break;
      case 'result': showText(rec, text); break;
      case 'html': if (typeof m.html === 'string') showHtml(rec, m.html); break;
      case 'png': if (m.bytes instanceof Uint8Array && m.bytes.length > 0) showPng(rec, m.bytes); break;
      case 'plotly': showPlotly(rec, m); break;
      case 'finished': {
        // The worker's part is over: it goes now, with anything it left running. The figures
        // still being drawn are part of the run, under the same clock.
        const ms = rec.phase === 'running' ? performance.now() - rec.startedAt - rec.waited : 0;
        rec.phase = 'finished';
        discard(rec.slot);
        if (!rec.runTimer) rec.runTimer = setTimeout(() => timeUp(rec), config.timeoutMs);
        const took = ms < 1000 ? Math.max(1, Math.round(ms)) + ' ms' : (ms / 1000).toFixed(1) + ' s';
        if (rec.plotlyChars > 0) ui.status.textContent = 'Drawing figures…';
        Promise.allSettled([...rec.images, ...rec.figures]).then(() => {
          if (m.ok === true) end(rec, 'done', 'Done in ' + took);
          else if (rec.failedCell !== null) endAtFailedCell(rec);
          else end(rec, 'error', 'Finished with an error');
        });
        break;
      }
      default: break;
    }
  }

  // #result holds the values a run shows, in order: display() calls, then the last expression.
  function addResult(rec, el) {
    rec.results += 1;
    if (rec.results <= MAX_RESULTS) rec.out.result.appendChild(el);
    else if (rec.results === MAX_RESULTS + 1) append(rec.out.stderr, 'Only the first ' + MAX_RESULTS + ' values are shown.', 'info');
  }

  function showText(rec, text) {
    const pre = document.createElement('pre');
    pre.textContent = text;
    addResult(rec, pre);
  }

  // _repr_html_ (a DataFrame table, say) is rebuilt from an allowlist: tables and text markup
  // with a few layout attributes survive; scripts, styles, links, images, frames, forms, event
  // handlers and every other attribute are dropped. The page's policy would block scripts and
  // remote loads anyway; this keeps Python's markup from even trying. `class` and `id` are
  // dropped too: with them the page's own stylesheet (or a library's) would apply, and a rule
  // such as `position: fixed` could lay the markup over the controls. #result is also
  // `contain: paint`, so nothing in it is painted outside its box.
  const HTML_KEEP = new Set(['TABLE', 'THEAD', 'TBODY', 'TFOOT', 'TR', 'TH', 'TD', 'CAPTION', 'COLGROUP',
    'COL', 'B', 'I', 'EM', 'STRONG', 'U', 'S', 'SMALL', 'SUB', 'SUP', 'CODE', 'PRE', 'KBD', 'SAMP', 'VAR',
    'P', 'DIV', 'SPAN', 'BR', 'HR', 'UL', 'OL', 'LI', 'DL', 'DT', 'DD', 'H1', 'H2', 'H3', 'H4', 'H5', 'H6',
    'BLOCKQUOTE', 'DETAILS', 'SUMMARY', 'ABBR', 'MARK', 'Q', 'TIME']);
  const HTML_DROP = new Set(['SCRIPT', 'STYLE', 'TEMPLATE', 'NOSCRIPT', 'IFRAME', 'FRAME', 'OBJECT', 'EMBED',
    'SVG', 'MATH', 'TEXTAREA', 'SELECT', 'OPTION', 'BUTTON', 'TITLE', 'HEAD']);
  const ATTR_KEEP = new Set(['colspan', 'rowspan', 'align', 'valign', 'title', 'open', 'start',
    'span', 'scope', 'lang', 'dir']);
  function sanitized(html) {
    const source = new DOMParser().parseFromString(html, 'text/html');
    const out = document.createElement('div');
    out.className = 'html-result';
    const copy = (from, to, depth) => {
      for (const node of from.childNodes) {
        if (node.nodeType === Node.TEXT_NODE) {
          to.appendChild(document.createTextNode(node.nodeValue));
        } else if (node.nodeType === Node.ELEMENT_NODE && !HTML_DROP.has(node.tagName.toUpperCase())) {
          const tag = node.tagName.toUpperCase();
          if (HTML_KEEP.has(tag) && depth < 64) {
            const el = document.createElement(tag.toLowerCase());
            for (const attr of node.attributes) {
              if (ATTR_KEEP.has(attr.name)) el.setAttribute(attr.name, attr.value);
            }
            copy(node, el, depth + 1);
            to.appendChild(el);
          } else {
            copy(node, to, depth + 1); // Keep the text of anything else.
          }
        }
      }
    };
    copy(source.body, out, 0);
    return out;
  }

  function showHtml(rec, html) {
    addResult(rec, sanitized(html));
  }

  function showPng(rec, bytes) {
    const img = document.createElement('img');
    img.alt = 'Figure ' + (rec.out.figures.children.length + 1);
    // Figures are rendered at 150 dpi and shown at 100 dpi: sharp on high-density screens.
    rec.images.push(new Promise((resolve) => {
      img.onload = () => { img.style.width = Math.round(img.naturalWidth / 1.5) + 'px'; resolve(); };
      img.onerror = resolve;
    }));
    img.src = URL.createObjectURL(new Blob([bytes], { type: 'image/png' }));
    rec.out.figures.appendChild(img);
  }

  const megabytes = (chars) => (chars / 1e6).toFixed(1) + ' MB';

  // Plotly figures. Each is drawn in a child frame of its own (`sandbox/figure`, sandboxed, with
  // its own policy), which receives the figure's JSON by postMessage: plotly.js never runs on this
  // page, and a figure it cannot finish drawing is stopped with its frame, which the page removes
  // at the time limit and on Stop. The frame's document asks for a process of its own
  // (Document-Isolation-Policy), so in Chromium a figure that freezes plotly.js does not freeze
  // this page, its clock or its Stop button.
  const figureFrames = new Map(); // The frames' windows -> {rec, frame, settle}.
  window.addEventListener('message', (event) => {
    const entry = figureFrames.get(event.source);
    const m = event.data;
    if (!entry || !m || typeof m !== 'object') return;
    const height = Number(m.height);
    if ((m.type === 'figure-drawn' || m.type === 'figure-size') && height > 0) {
      entry.frame.style.height = Math.min(Math.max(Math.round(height), MIN_FIGURE_PX), MAX_FIGURE_PX) + 'px';
    }
    if (m.type === 'figure-drawn') {
      entry.frame.dataset.drawn = 'true';
      entry.settle();
    } else if (m.type === 'figure-error') {
      removeFigure(entry);
      if (current === entry.rec) append(ui.stderr, 'The Plotly figure could not be drawn: ' + String(m.message), 'info');
    }
  });

  function showPlotly(rec, m) {
    const chars = typeof m.json === 'string' ? m.json.length : Number(m.chars);
    if (!(chars > 0)) return;
    if (typeof m.json !== 'string' || rec.plotlyChars + chars > MAX_PLOTLY_JSON_CHARS) {
      append(rec.out.stderr, 'A Plotly figure was not drawn: its data (' + megabytes(chars) + ') is over the limit of ' +
        megabytes(MAX_PLOTLY_JSON_CHARS) + ' for the figures of one run. Plot fewer points.', 'info');
      return;
    }
    rec.plotlyFigures += 1;
    if (rec.plotlyFigures > MAX_PLOTLY_FIGURES) {
      if (rec.plotlyFigures === MAX_PLOTLY_FIGURES + 1) {
        append(rec.out.stderr, 'Only the first ' + MAX_PLOTLY_FIGURES + ' Plotly figures of a run are drawn.', 'info');
      }
      return;
    }
    rec.plotlyChars += chars;
    // The figure keeps its place among the others.
    const frame = document.createElement('iframe');
    frame.className = 'plotly-figure';
    frame.setAttribute('sandbox', 'allow-scripts');
    frame.title = 'Plotly figure ' + (rec.out.figures.children.length + 1);
    frame.src = new URL('sandbox/figure', location.href).href;
    const entry = { rec, frame, settle: null, window: null };
    rec.figures.push(new Promise((resolve) => { entry.settle = resolve; }));
    let sent = false;
    frame.addEventListener('load', () => {
      // Sent once, to the document the frame first loaded (a later load is not the figure's).
      if (sent || current !== rec) return;
      sent = true;
      frame.contentWindow.postMessage({ type: 'figure', json: m.json }, '*');
    });
    rec.out.figures.appendChild(frame);
    entry.window = frame.contentWindow;
    figureFrames.set(entry.window, entry);
    rec.figureEntries.push(entry);
  }

  function removeFigure(entry) {
    figureFrames.delete(entry.window);
    entry.frame.remove();
    entry.settle();
  }

  // When a run ends before its figures are drawn (time limit, Stop, a new run), those still being
  // drawn go with their frames; drawn ones stay. Answers how many went.
  function stopFigures(rec) {
    let removed = 0;
    for (const entry of rec.figureEntries) {
      if (entry.frame.dataset.drawn === 'true' || !entry.frame.isConnected) continue;
      removeFigure(entry);
      removed += 1;
    }
    return removed;
  }

  // Every figure frame goes with the outputs of the previous run.
  function clearFigures() {
    for (const entry of figureFrames.values()) entry.settle();
    figureFrames.clear();
  }

  // Cells. A link's #cx= carries the answer's earlier Python blocks ({"cells": [code, ...],
  // "omitted": N}, oldest first). They are shown above the opened block, each collapsed with its
  // own outputs, and run first, in the same interpreter; a cell that fails stops the run there.
  let context = { cells: [], omitted: 0 };
  let cellViews = [];

  async function contextFromHash() {
    const b64 = hashParam('cx');
    if (b64 === null) return { cells: [], omitted: 0, problem: null };
    let parsed;
    try {
      parsed = JSON.parse(await inflate(b64, 'The earlier cells in this link', MAX_CONTEXT_BYTES));
    } catch (e) {
      const problem = e && e.payload ? e.message : 'The earlier cells in this link are not valid JSON.';
      return { cells: [], omitted: 0, problem };
    }
    const cells = parsed && Array.isArray(parsed.cells) ? parsed.cells : null;
    const omitted = parsed ? parsed.omitted : undefined;
    if (!cells || !cells.every((c) => typeof c === 'string') ||
        !(omitted === undefined || (Number.isInteger(omitted) && omitted >= 0))) {
      return { cells: [], omitted: 0, problem: 'The earlier cells in this link are not in the expected form ({"cells": [...], "omitted": N}).' };
    }
    return { cells, omitted: omitted || 0, problem: null };
  }

  function plural(n, one, many) {
    return n + ' ' + (n === 1 ? one : many);
  }

  function showCells(ctx) {
    context = { cells: ctx.cells, omitted: ctx.omitted };
    cellViews = [];
    ui.cells.replaceChildren();
    const notes = [];
    if (ctx.problem) notes.push(ctx.problem + ' This block runs alone.');
    if (ctx.omitted > 0) {
      notes.push(plural(ctx.omitted, 'earlier block was', 'earlier blocks were') + ' left out of this link ' +
        '(the context budget): the cells here may depend on ' + (ctx.omitted === 1 ? 'it' : 'them') + '.');
    }
    ui.cellsNote.textContent = notes.join(' ');
    ui.cellsNote.hidden = notes.length === 0;
    ctx.cells.forEach((code, i) => {
      const cell = document.createElement('div');
      cell.className = 'cell';
      cell.id = 'cell-' + (i + 1);
      cell.dataset.state = 'waiting';
      const details = document.createElement('details');
      const summary = document.createElement('summary');
      const name = document.createElement('span');
      name.className = 'cell-name';
      name.textContent = 'Cell ' + (i + 1);
      const first = document.createElement('code');
      first.className = 'cell-first-line';
      const line = code.split('\n').find((l) => l.trim() !== '') || '';
      first.textContent = line.length > 72 ? line.slice(0, 71) + '…' : line;
      const status = document.createElement('span');
      status.className = 'cell-status';
      summary.append(name, ' ', first, ' ', status);
      const pre = document.createElement('pre');
      pre.className = 'cell-code';
      pre.textContent = code;
      details.append(summary, pre);
      const view = { root: cell, details, status };
      for (const part of ['stdout', 'stderr', 'result', 'figures']) {
        const el = document.createElement(part === 'stdout' || part === 'stderr' ? 'pre' : 'div');
        el.className = 'cell-' + part + (part === 'stdout' || part === 'stderr' ? ' stream' : '');
        view[part] = el;
      }
      cell.append(details, view.stdout, view.stderr, view.result, view.figures);
      ui.cells.appendChild(cell);
      cellViews.push(view);
    });
    ui.cellsSection.hidden = ctx.cells.length === 0 && notes.length === 0;
    ui.runAlone.hidden = ctx.cells.length === 0;
  }

  const CELL_STATUS = {
    waiting: '', running: 'running…', done: 'ran', error: 'raised an error', timeout: 'time limit reached',
    skipped: 'not run (this block ran alone)', stopped: 'stopped',
  };

  function markCell(i, state) {
    const view = cellViews[i];
    if (!view) return;
    view.root.dataset.state = state;
    view.status.textContent = CELL_STATUS[state] || '';
  }

  // The worker announces each cell as it starts; only the next one in order is believed.
  function enterCell(rec, index) {
    const next = rec.cell === null ? 0 : rec.cell + 1;
    if (index !== next || index >= rec.cells.length || rec.out !== (rec.cell === null ? blockOut : cellViews[rec.cell])) return;
    flush();
    if (rec.cell !== null) markCell(rec.cell, 'done');
    rec.cell = index;
    rec.out = cellViews[index];
    markCell(index, 'running');
    if (rec.phase === 'running') ui.status.textContent = 'Running cell ' + (index + 1) + ' of ' + rec.cells.length + '…';
  }

  function enterBlock(rec) {
    if (rec.cell === null || rec.cell !== rec.cells.length - 1) return;
    flush();
    markCell(rec.cell, 'done');
    rec.cell = null;
    rec.out = blockOut;
    if (rec.phase === 'running') ui.status.textContent = 'Running…';
  }

  function cellFailed(rec, index) {
    if (rec.cell !== index) return;
    rec.failedCell = index;
    markCell(index, 'error');
    cellViews[index].details.open = true;
  }

  function endAtFailedCell(rec) {
    const n = rec.failedCell + 1;
    end(rec, 'error', 'Cell ' + n + ' raised an error: this block did not run',
      'Cell ' + n + ' (an earlier block of the answer) raised an error, so the run stopped there and this block ' +
      'did not run: the traceback is under cell ' + n + ' above. "Run this block alone" runs it without the earlier cells.');
  }

  // Input. The Input box's text is what sys.stdin and input() read; when it is empty and the
  // worker can pause (JavaScript Promise Integration), input() asks: the prompt is in the output,
  // a line field follows it, Enter sends the line. The time limit does not count the wait.
  function showInputMode(interactive) {
    ui.stdinNote.textContent = interactive
      ? 'Lines for input() and sys.stdin, read in order. Leave it empty and the program asks you as it runs.'
      : 'Lines for input() and sys.stdin, read in order. This browser cannot pause Python to ask as it runs: ' +
        'type the program\'s input here, then Run again.';
    document.body.dataset.interactiveInput = interactive ? 'yes' : 'no';
  }

  function askPerson(rec, prompt) {
    if (rec.phase !== 'running' || rec.asking) return;
    flush();
    pauseClock(rec);
    const row = document.createElement('span');
    row.className = 'input-row';
    const field = document.createElement('input');
    field.id = 'input';
    field.type = 'text';
    field.autocomplete = 'off';
    field.spellcheck = false;
    field.setAttribute('aria-label', prompt.trim() ? 'Input: ' + prompt.trim() : 'Input for the program');
    const endInput = document.createElement('button');
    endInput.type = 'button';
    endInput.id = 'input-end';
    // Labelled through CSS and aria-label: the output's text stays the program's alone.
    endInput.setAttribute('aria-label', 'End input');
    endInput.title = 'Send end-of-file (Ctrl+D)';
    row.append(field, endInput);
    field.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') {
        e.preventDefault();
        answerPerson(rec, field.value);
      } else if (e.key === 'd' && e.ctrlKey) {
        e.preventDefault();
        answerPerson(rec, null);
      }
    });
    endInput.addEventListener('click', () => answerPerson(rec, null));
    rec.asking = row;
    rec.out.stdout.appendChild(row);
    document.body.dataset.input = 'waiting';
    ui.status.textContent = 'Waiting for your input…';
    field.focus();
  }

  function answerPerson(rec, line) {
    if (current !== rec || !rec.asking) return;
    closeInputField(rec);
    resumeClock(rec);
    ui.status.textContent = 'Running…';
    rec.slot.port.postMessage({ type: 'input-reply', line });
  }

  function closeInputField(rec) {
    if (!rec.asking) return;
    rec.asking.remove();
    rec.asking = null;
    delete document.body.dataset.input;
  }

  function pauseClock(rec) {
    if (!rec.runTimer) return;
    clearTimeout(rec.runTimer);
    rec.runTimer = null;
    rec.waitFrom = performance.now();
    rec.used += rec.waitFrom - rec.clockFrom;
  }

  function resumeClock(rec) {
    if (rec.runTimer || rec.phase !== 'running') return;
    rec.clockFrom = performance.now();
    rec.waited += rec.clockFrom - rec.waitFrom;
    rec.runTimer = setTimeout(() => timeUp(rec), Math.max(0, config.timeoutMs - rec.used));
  }

  // Files. Added files (the file control or a drop anywhere on the page) are kept in this page and
  // put in /home/pyodide before every run; nothing is sent anywhere else. After a run, the files it
  // created or changed there are offered in #outputs as downloads.
  const MAX_FILE_BYTES = 50 * 1000 * 1000;
  const MAX_RUN_FILE_BYTES = 50 * 1000 * 1000;
  const addedFiles = new Map(); // name -> Uint8Array

  function size(bytes) {
    if (bytes < 1000) return bytes + ' B';
    if (bytes < 1000 * 1000) return (bytes / 1000).toFixed(1) + ' kB';
    return (bytes / 1e6).toFixed(1) + ' MB';
  }

  async function addFiles(list) {
    const notes = [];
    for (const file of list) {
      const name = file.name;
      const others = [...addedFiles].reduce((n, [k, b]) => n + (k === name ? 0 : b.length), 0);
      if (!name || name === '.' || name === '..' || /[/\\\0]/.test(name)) {
        notes.push('A file without a usable name was not added.');
      } else if (file.size > MAX_FILE_BYTES) {
        notes.push(name + ' is ' + size(file.size) + ': a file can be at most ' + size(MAX_FILE_BYTES) + '.');
      } else if (others + file.size > MAX_RUN_FILE_BYTES) {
        notes.push(name + ' was not added: the files would come to ' + size(others + file.size) +
          ', over the ' + size(MAX_RUN_FILE_BYTES) + ' a run can take in.');
      } else {
        try {
          addedFiles.set(name, new Uint8Array(await file.arrayBuffer()));
          notes.push('Added ' + name + ' (' + size(file.size) + '): Run again to use it.');
        } catch (e) {
          notes.push(name + ' could not be read: ' + String(e.message || e));
        }
      }
    }
    ui.filesNote.textContent = notes.join(' ');
    showAddedFiles();
  }

  function showAddedFiles() {
    ui.filesList.replaceChildren();
    for (const [name, bytes] of addedFiles) {
      const li = document.createElement('li');
      const label = document.createElement('span');
      label.textContent = name + ' (' + size(bytes.length) + ')';
      const remove = document.createElement('button');
      remove.type = 'button';
      remove.className = 'remove-file';
      remove.textContent = 'Remove';
      remove.setAttribute('aria-label', 'Remove ' + name);
      remove.addEventListener('click', () => {
        addedFiles.delete(name);
        ui.filesNote.textContent = 'Removed ' + name + '.';
        showAddedFiles();
      });
      li.append(label, ' ', remove);
      ui.filesList.appendChild(li);
    }
  }

  const IMAGE_TYPES = { png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', gif: 'image/gif', webp: 'image/webp', svg: 'image/svg+xml' };

  function showFile(rec, m) {
    if (typeof m.name !== 'string' || m.name === '' || !(Number(m.size) >= 0)) return;
    const name = m.name;
    const li = document.createElement('li');
    const base = name.split('/').pop();
    let skipped = typeof m.skipped === 'string' ? m.skipped : null;
    const bytes = m.bytes instanceof Uint8Array ? m.bytes : null;
    if (!skipped && !bytes) return;
    if (!skipped && bytes.length > MAX_FILE_BYTES) skipped = 'larger than the 50 MB limit for one file';
    if (!skipped && rec.outputBytes + bytes.length > MAX_RUN_FILE_BYTES) skipped = 'over the 50 MB limit for the files of one run';
    if (skipped) {
      li.className = 'skipped';
      li.textContent = name + ' (' + size(Number(m.size)) + ') is not offered: ' + skipped + '.';
    } else {
      rec.outputBytes += bytes.length;
      const ext = base.includes('.') ? base.split('.').pop().toLowerCase() : '';
      const type = IMAGE_TYPES[ext] || 'application/octet-stream';
      const url = URL.createObjectURL(new Blob([bytes], { type }));
      const a = document.createElement('a');
      a.href = url;
      a.download = base;
      a.textContent = name;
      const info = document.createElement('span');
      info.className = 'size';
      info.textContent = size(bytes.length);
      li.append(a, ' ', info);
      if (IMAGE_TYPES[ext]) {
        const img = document.createElement('img');
        img.alt = 'Preview of ' + name;
        img.src = URL.createObjectURL(new Blob([bytes], { type }));
        li.appendChild(img);
      }
    }
    ui.outputs.appendChild(li);
    ui.outputsSection.hidden = false;
  }

  ui.files.addEventListener('change', () => {
    const list = [...ui.files.files];
    ui.files.value = '';
    addFiles(list);
  });
  const dragsFiles = (e) => e.dataTransfer && [...e.dataTransfer.types].includes('Files');
  document.addEventListener('dragover', (e) => {
    if (!dragsFiles(e)) return;
    e.preventDefault();
    document.body.classList.add('dropping');
  });
  document.addEventListener('dragleave', (e) => {
    if (e.relatedTarget === null) document.body.classList.remove('dropping');
  });
  document.addEventListener('drop', (e) => {
    document.body.classList.remove('dropping');
    if (!dragsFiles(e)) return;
    e.preventDefault();
    addFiles([...e.dataTransfer.files]);
  });

  function setEditing(on) {
    ui.code.readOnly = !on;
    ui.edit.setAttribute('aria-pressed', on ? 'true' : 'false');
    ui.edit.textContent = on ? 'Done editing' : 'Edit';
    if (on) ui.code.focus();
  }

  ui.run.addEventListener('click', () => run(ui.code.value, false));
  ui.runAlone.addEventListener('click', () => run(ui.code.value, true));
  ui.stop.addEventListener('click', () => kill('stopped', 'Stopped', 'Stopped by you.'));
  ui.edit.addEventListener('click', () => setEditing(ui.code.readOnly));
  ui.code.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey) && !ui.run.disabled) {
      e.preventDefault();
      run(ui.code.value, false);
    }
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && !ui.stop.disabled) kill('stopped', 'Stopped', 'Stopped by you.');
  });

  // Link trust (see the top of this file). The signed part S is the fragment before its last
  // '&mac=', exactly as the engine wrote it (base64url payloads and plain flags, which the browser
  // leaves as they are); the MAC is 22 base64url characters.
  const MAC_PARAM = '&mac=';
  const VERIFY_LIMIT_MS = 10000;

  const base64url = (bytes) => btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

  // SHA-256 of a string's UTF-8 bytes: crypto.subtle where the page is a secure context (HTTPS,
  // loopback), else this small implementation (FIPS 180-4), so that a sandgate served over plain
  // HTTP on a LAN still runs its own links.
  async function sha256(text) {
    const bytes = new TextEncoder().encode(text);
    if (self.crypto && crypto.subtle) return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
    const K = [];
    const frac = (x) => ((x - Math.floor(x)) * 0x100000000) >>> 0;
    const H = [];
    for (let n = 2, found = 0; found < 64; n++) {
      let prime = true;
      for (let d = 2; d * d <= n; d++) if (n % d === 0) { prime = false; break; }
      if (!prime) continue;
      if (found < 8) H.push(frac(Math.sqrt(n)));
      K.push(frac(Math.cbrt(n)));
      found++;
    }
    const padded = new Uint8Array(((bytes.length + 9 + 63) >> 6) << 6);
    padded.set(bytes);
    padded[bytes.length] = 0x80;
    const view = new DataView(padded.buffer);
    view.setUint32(padded.length - 8, Math.floor(bytes.length / 0x20000000));
    view.setUint32(padded.length - 4, (bytes.length << 3) >>> 0);
    const w = new Uint32Array(64);
    const rotr = (x, n) => (x >>> n) | (x << (32 - n));
    for (let at = 0; at < padded.length; at += 64) {
      for (let i = 0; i < 16; i++) w[i] = view.getUint32(at + i * 4);
      for (let i = 16; i < 64; i++) {
        const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
        const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
      }
      let [a, b, c, d, e, f, g, h] = H;
      for (let i = 0; i < 64; i++) {
        const t1 = (h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
        const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
        [h, g, f, e, d, c, b, a] = [g, f, e, (d + t1) >>> 0, c, b, a, (t1 + t2) >>> 0];
      }
      [a, b, c, d, e, f, g, h].forEach((v, i) => { H[i] = (H[i] + v) >>> 0; });
    }
    const out = new Uint8Array(32);
    const outView = new DataView(out.buffer);
    H.forEach((v, i) => outView.setUint32(i * 4, v));
    return out;
  }

  // What this sandgate says about the link in the address: {link: 'signed' | 'unsigned' |
  // 'invalid', note}. Only the hash of the signed part and the MAC are sent.
  async function linkTrust() {
    const fragment = location.hash.replace(/^#/, '');
    const at = fragment.lastIndexOf(MAC_PARAM);
    const mac = at < 0 ? null : fragment.slice(at + MAC_PARAM.length);
    const unsigned = (why) => ({ link: 'unsigned', note: 'This link was not made by this sandgate' + why +
      ', so its code did not run by itself. Read the code first; press Run only if you want to run it.' });
    const invalid = { link: 'invalid', note: 'This link was not made by this sandgate, or it was changed ' +
      'after (its signature does not match), so its code did not run by itself. Read the code first; ' +
      'press Run only if you want to run it.' };
    if (mac === null || mac.includes('&')) return unsigned('');
    if (!/^[A-Za-z0-9_-]{22}$/.test(mac)) return invalid;
    const h = base64url(await sha256(fragment.slice(0, at)));
    const url = new URL('sandbox/verify', location.href);
    url.search = '?h=' + h + '&mac=' + mac;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), VERIFY_LIMIT_MS);
    const unreachable = unsigned(', or this sandgate could not confirm it (its check did not answer)');
    try {
      const r = await fetch(url.href, { credentials: 'omit', cache: 'no-store', referrerPolicy: 'no-referrer', signal: abort.signal });
      if (r.status === 204) return { link: 'signed', note: '' };
      if (r.status === 403 || r.status === 400) return invalid;
      return unreachable;
    } catch (e) {
      return unreachable;
    } finally {
      clearTimeout(timer);
    }
  }

  function showTrust(trust) {
    document.body.dataset.link = trust.link;
    ui.linkNote.textContent = trust.note;
    ui.linkNote.hidden = !trust.note;
  }

  let loads = 0; // Bumped by every link opened: an older link's check then comes to nothing.

  async function loadFromHash() {
    const load = ++loads;
    delete document.body.dataset.link;
    ui.linkNote.hidden = true;
    let code;
    try {
      code = await codeFromHash();
      const ctx = await contextFromHash();
      if (load !== loads) return;
      showCells(ctx);
    } catch (e) {
      if (load !== loads) return;
      showCells({ cells: [], omitted: 0, problem: null });
      if (current) release(current);
      clearOutputs();
      ui.code.value = '';
      setState('error', 'No code to run');
      append(ui.stderr, String(e.message || e), 'info');
      return;
    }
    ui.code.value = code;
    ui.code.rows = Math.min(Math.max(code.split('\n').length + 1, 4), 30);
    setEditing(false);
    const trust = await linkTrust();
    if (load !== loads) return;
    showTrust(trust);
    if (trust.link === 'signed') {
      run(code, false);
      return;
    }
    if (current) release(current);
    clearOutputs();
    cellViews.forEach((_, i) => markCell(i, 'waiting'));
    ui.run.textContent = 'Run';
    setState('ready', 'Not run: read the code, then press Run');
  }

  // The runner mode: the page opened as #runner=1 (no py=), in an iframe, is driven over
  // postMessage by the window that embeds it (templates/runner.js, or any page that speaks the
  // protocol; README "The runner API"). It shows nothing: it runs what its parent sends in one
  // session worker, whose interpreter lives on from run to run until a timeout, Stop or reset
  // terminates it, and answers with what the worker produced.
  //
  // Messages are objects {protocol: 'sandgate-runner', version: 1, type, ...}; anything else,
  // and anything not from the parent window, is ignored. Replies go to the parent only, to the
  // origin its hello came from. Every RunResult is built here, from the worker's messages: the
  // program's output is data in it, the status and the clock are the page's, and nothing Python
  // does reaches the parent (the worker has no handle on any window).
  const RUNNER_PROTOCOL = 'sandgate-runner';
  const RUNNER_VERSION = 1;
  const MAX_INPUT_FILE_BYTES = 50 * 1000 * 1000;
  // What one RunResult carries at most: stdout and stderr each MAX_STREAM_CHARS, MAX_RESULTS
  // values, Plotly JSON MAX_PLOTLY_JSON_CHARS in all.

  function isRunnerLink() {
    const params = location.hash.replace(/^#/, '').split('&');
    return params.includes('runner=1') && !params.some((p) => p.startsWith('py='));
  }

  const validRunId = (id) => (typeof id === 'string' && id.length > 0 && id.length <= 200) ||
    Number.isSafeInteger(id);

  // The PNG's size, from its IHDR chunk (null if the bytes are not a PNG).
  function pngSize(bytes) {
    const magic = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
    if (bytes.length < 24 || magic.some((b, i) => bytes[i] !== b)) return null;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return { width: view.getUint32(16), height: view.getUint32(20) };
  }

  function base64(bytes) {
    let binary = '';
    for (let i = 0; i < bytes.length; i += 0x8000) {
      binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(binary);
  }

  // The markup of a tree `sanitized()` built, as text for the parent: only the allowlisted
  // elements and attributes are in it, every text and value escaped.
  function markupOf(node) {
    const escape = (text) => text.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
    const VOID = new Set(['br', 'hr', 'col']);
    let out = '';
    for (const child of node.childNodes) {
      if (child.nodeType === Node.TEXT_NODE) {
        out += escape(child.nodeValue);
      } else if (child.nodeType === Node.ELEMENT_NODE) {
        const tag = child.tagName.toLowerCase();
        out += '<' + tag;
        for (const attr of child.attributes) out += ' ' + attr.name + '="' + escape(attr.value) + '"';
        out += '>';
        if (!VOID.has(tag)) out += markupOf(child) + '</' + tag + '>';
      }
    }
    return out;
  }

  function runnerMode() {
    document.body.dataset.mode = 'runner';
    setState('ready', 'Waiting for the page that embeds this runner.');
    const parentWindow = window.parent !== window ? window.parent : null;
    let peer = null; // {origin, target}: who said hello, and where replies go.
    let session = null; // The session worker's slot; null until needed again after a kill.
    let fresh = true; // Whether the session worker has run nothing yet.
    let generation = 0; // Bumped by reset: runs queued before it do not run.
    let active = null; // The run in progress.
    let queue = Promise.resolve();

    const reply = (msg) => {
      if (peer) parentWindow.postMessage({ ...msg, protocol: RUNNER_PROTOCOL, version: RUNNER_VERSION }, peer.target);
    };
    const newSession = () => {
      discard(session);
      session = bootWorker('', true);
      fresh = true;
    };

    // Output is sent in batches (a print loop would otherwise post a message per line) and
    // always before the value or result that follows it.
    function output(rec, stream, text) {
      const used = rec[stream].length;
      if (used >= MAX_STREAM_CHARS || !text) return;
      let chunk = text;
      if (used + chunk.length > MAX_STREAM_CHARS) chunk = chunk.slice(0, MAX_STREAM_CHARS - used) + '\n… output truncated\n';
      rec[stream] += chunk;
      rec.pending.push([stream, chunk]);
      if (!rec.flushTimer) rec.flushTimer = setTimeout(() => flushOutput(rec), 30);
    }
    function flushOutput(rec) {
      clearTimeout(rec.flushTimer);
      rec.flushTimer = null;
      const merged = [];
      for (const [stream, text] of rec.pending) {
        const last = merged[merged.length - 1];
        if (last && last.stream === stream) last.text += text;
        else merged.push({ stream, text });
      }
      rec.pending = [];
      for (const m of merged) reply({ type: 'output', id: rec.id, stream: m.stream, text: m.text });
    }
    function addValue(rec, value) {
      rec.values += 1;
      if (rec.values > MAX_RESULTS) {
        if (rec.values === MAX_RESULTS + 1) output(rec, 'stderr', 'Only the first ' + MAX_RESULTS + ' values are kept.\n');
        return;
      }
      rec.results.push(value);
      flushOutput(rec);
      reply({ type: 'display', id: rec.id, result: value });
    }

    // Ends `rec`, however it ends; `kill` terminates the interpreter (the next run gets a fresh one).
    function finish(rec, status, note, kill) {
      if (rec.ended) return;
      rec.ended = true;
      if (active === rec) active = null;
      clearTimeout(rec.loadTimer);
      clearTimeout(rec.runTimer);
      if (note) output(rec, 'stderr', note + '\n');
      flushOutput(rec);
      if (rec.slot && rec.slot.port) rec.slot.port.onmessage = null;
      if (kill && rec.slot && session === rec.slot) newSession();
      const durationMs = rec.startedAt ? Math.round(performance.now() - rec.startedAt) : 0;
      reply({ type: 'result', id: rec.id, result: {
        status, stdout: rec.stdout, stderr: rec.stderr, results: rec.results, files: rec.files,
        durationMs, fresh: rec.fresh,
      } });
      rec.resolve();
    }

    function onSessionMessage(rec, m) {
      if (rec.ended || !m || typeof m !== 'object') return;
      const text = typeof m.text === 'string' ? m.text : '';
      switch (m.type) {
        case 'started':
          // The clock is the page's: armed at the first 'started', never re-armed.
          if (rec.startedAt) break;
          rec.startedAt = performance.now();
          clearTimeout(rec.loadTimer);
          rec.runTimer = setTimeout(() => finish(rec, 'timeout', 'The code ran longer than ' +
            rec.limitMs / 1000 + ' s and was stopped.', true), rec.limitMs);
          break;
        case 'stdout': output(rec, 'stdout', text); break;
        case 'stderr': output(rec, 'stderr', text); break;
        case 'info': output(rec, 'stderr', text.endsWith('\n') ? text : text + '\n'); break;
        case 'result': addValue(rec, { type: 'text', data: text }); break;
        case 'html':
          if (typeof m.html === 'string') addValue(rec, { type: 'html', data: markupOf(sanitized(m.html)) });
          break;
        case 'png': {
          if (!(m.bytes instanceof Uint8Array) || m.bytes.length === 0) break;
          const size = pngSize(m.bytes);
          if (size) addValue(rec, { type: 'png', data: base64(m.bytes), width: size.width, height: size.height });
          break;
        }
        case 'plotly': {
          const chars = typeof m.json === 'string' ? m.json.length : Number(m.chars);
          if (!(chars > 0)) break;
          if (typeof m.json !== 'string' || rec.plotlyChars + chars > MAX_PLOTLY_JSON_CHARS) {
            output(rec, 'stderr', 'A Plotly figure was left out: its data (' + megabytes(chars) + ') is over the limit of ' +
              megabytes(MAX_PLOTLY_JSON_CHARS) + ' for the figures of one run.\n');
            break;
          }
          let fig = null;
          try { fig = JSON.parse(m.json); } catch (e) { fig = null; }
          if (!fig || typeof fig !== 'object' || !Array.isArray(fig.data)) break;
          rec.plotlyChars += chars;
          addValue(rec, { type: 'plotly', data: m.json });
          break;
        }
        case 'file':
          // A file the run wrote in its working directory: its bytes, or why they were left out.
          if (typeof m.name !== 'string' || !(Number(m.size) >= 0)) break;
          if (m.bytes instanceof Uint8Array) rec.files.push({ name: m.name, size: Number(m.size), data: base64(m.bytes) });
          else rec.files.push({ name: m.name, size: Number(m.size), skipped: String(m.skipped || 'not sent') });
          break;
        case 'finished':
          finish(rec, m.ok === true ? 'done' : 'error', null, false);
          break;
        default: break;
      }
    }

    async function runOne(req) {
      const rec = {
        id: req.id, limitMs: req.limitMs, stdout: '', stderr: '', results: [], files: [], values: 0,
        plotlyChars: 0, pending: [], flushTimer: null, startedAt: 0, loadTimer: null, runTimer: null,
        slot: null, fresh: false, ended: false, resolve: null,
      };
      const done = new Promise((resolve) => { rec.resolve = resolve; });
      if (req.generation !== generation) {
        finish(rec, 'stopped', 'The runner was reset before this code ran.', false);
        return done;
      }
      active = rec;
      if (!session || session.failed) newSession();
      rec.slot = session;
      rec.fresh = fresh;
      fresh = false;
      // Loading Python and the packages has its cap, as on the link page; the clock starts after.
      rec.loadTimer = setTimeout(() => finish(rec, 'error', 'Python or its packages did not load within ' +
        Math.round(prepareLimitMs / 1000) + ' s.', true), prepareLimitMs);
      try {
        await rec.slot.ready;
      } catch (e) {
        finish(rec, 'error', String(e.message || e), true);
        return done;
      }
      if (rec.ended) return done;
      rec.slot.port.onmessage = (ev) => onSessionMessage(rec, ev.data);
      rec.slot.port.postMessage({ type: 'run', code: req.code, stdin: req.stdin, files: req.files });
      return done;
    }

    // The files of a run request, [{name, data: text | bytes}], as the worker takes them
    // ([{name, bytes}]); a string says what is wrong.
    function runFiles(files) {
      if (files === undefined || files === null) return [];
      if (!Array.isArray(files) || files.length > 1000) return 'files must be an array of at most 1000 {name, data}';
      const out = [];
      let total = 0;
      for (const f of files) {
        const name = f && f.name;
        if (typeof name !== 'string' || name === '' || name === '.' || name === '..' || name.length > 255 || /[/\\\0]/.test(name)) {
          return 'files: each name must be a plain file name (no directories)';
        }
        const data = f.data;
        const bytes = typeof data === 'string' ? new TextEncoder().encode(data) :
          data instanceof Uint8Array ? data : data instanceof ArrayBuffer ? new Uint8Array(data) : null;
        if (!bytes) return 'files: each data must be a string, a Uint8Array or an ArrayBuffer';
        total += bytes.length;
        if (total > MAX_INPUT_FILE_BYTES) return 'files: more than 50 MB in all';
        out.push({ name, bytes });
      }
      return out;
    }

    // A run request: checked here, so that a bad one is answered rather than left hanging.
    function runRequest(m) {
      const files = runFiles(m.files);
      const problem =
        typeof files === 'string' ? files :
        typeof m.code !== 'string' ? 'code must be a string' :
        new Blob([m.code]).size > MAX_CODE_BYTES ? 'code is larger than 1 MiB' :
        m.timeoutMs !== undefined && !(typeof m.timeoutMs === 'number' && m.timeoutMs > 0) ? 'timeoutMs must be a positive number' :
        m.stdin !== undefined && m.stdin !== null && typeof m.stdin !== 'string' ? 'stdin must be a string' : null;
      const req = {
        id: m.id, code: m.code, stdin: typeof m.stdin === 'string' ? m.stdin : null, files, generation,
        // The page's own limit caps the caller's.
        limitMs: Math.min(config.timeoutMs, typeof m.timeoutMs === 'number' && m.timeoutMs > 0 ? Math.ceil(m.timeoutMs) : Infinity),
      };
      if (problem) {
        reply({ type: 'result', id: m.id, result: { status: 'error', stdout: '', stderr: 'sandgate runner: ' + problem + '\n',
          results: [], files: [], durationMs: 0, fresh: false } });
        return;
      }
      // Whatever happens to one run, the queue goes on.
      queue = queue.then(() => runOne(req)).catch(() => {});
    }

    window.addEventListener('message', (ev) => {
      if (!parentWindow || ev.source !== parentWindow) return;
      const m = ev.data;
      if (!m || typeof m !== 'object' || m.protocol !== RUNNER_PROTOCOL || typeof m.type !== 'string') return;
      if (m.type === 'hello') {
        if (m.version !== RUNNER_VERSION) return;
        // A parent of another origin than the one before gets an interpreter of its own.
        if (peer && peer.origin !== ev.origin) {
          generation += 1;
          if (active) finish(active, 'stopped', 'A new page took over this runner.', true);
          newSession();
        }
        peer = { origin: ev.origin, target: ev.origin === 'null' ? '*' : ev.origin };
        setState('ready', 'Driven by the page that embeds it.');
        reply({ type: 'ready', timeoutMs: config.timeoutMs, pyodideVersion: root.dataset.pyodideVersion || '' });
        return;
      }
      if (!peer || ev.origin !== peer.origin || m.version !== RUNNER_VERSION || !validRunId(m.id)) return;
      switch (m.type) {
        case 'run':
          runRequest(m);
          break;
        case 'stop':
          if (active) finish(active, 'stopped', 'Stopped.', true);
          reply({ type: 'ack', id: m.id, of: 'stop' });
          break;
        case 'reset':
          generation += 1;
          if (active) finish(active, 'stopped', 'Stopped: the runner was reset.', true);
          else newSession();
          reply({ type: 'ack', id: m.id, of: 'reset' });
          break;
        default: break;
      }
    });
    session = bootWorker('', true); // Boots while the parent gets ready.
  }

  if (isRunnerLink()) {
    runnerMode();
  } else {
    window.addEventListener('hashchange', loadFromHash);
    setState('loading', 'Loading Python…');
    setSpare(bootWorker()); // Boots while the page decodes the link.
    loadFromHash();
  }
})();

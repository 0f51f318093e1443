// The sandbox page: reads the code from the link's fragment (#py=<base64url of raw DEFLATE>), shows
// it, runs it in a Pyodide worker and shows what it produced.
//
// Test contract: document.body.dataset.state goes 'loading' -> 'running' -> 'done' | 'error' |
// 'timeout' (or 'stopped' after Stop); #stdout, #stderr, #result and #figures hold the outputs.
//
// Every message from the worker is untrusted data (the Python code can post anything): text goes
// into textContent; HTML (_repr_html_) only into a sandboxed iframe without scripts; figures are
// PNG bytes shown through blob: URLs, or Plotly JSON handed to plotly.js.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const root = $('sandgate');
  const ui = {
    status: $('status'), run: $('run'), stop: $('stop'), edit: $('edit'), code: $('code'),
    stdout: $('stdout'), stderr: $('stderr'), result: $('result'), figures: $('figures'),
  };
  const MAX_CODE_BYTES = 1 << 20;
  const MAX_STREAM_CHARS = 2_000_000;

  // Configuration from the data-* attributes sandgate sets when it renders the page.
  const absolute = (url) => {
    const at = url.indexOf('{package_name}');
    if (url === 'PYPI') return url;
    if (at < 0) return new URL(url, location.href).href;
    return new URL(url.slice(0, at), location.href).href + url.slice(at);
  };
  const config = {
    pyodideUrl: absolute(root.dataset.pyodideUrl || ''),
    plotlyUrl: absolute(root.dataset.plotlyUrl || ''),
    indexes: (root.dataset.packageIndexes || '').split(' ').filter(Boolean).map(absolute),
    timeoutMs: Math.max(1, parseInt(root.dataset.timeoutMs, 10) || 30000),
    offline: root.dataset.offline === 'true',
  };
  const prepareLimitMs = Math.max(90000, config.timeoutMs);

  let worker = null;
  let workerReady = null; // Promise resolved when the current worker has booted.
  let workerBusy = false;
  let workerSource = null;
  let runId = 0;
  let timer = null;
  let runStarted = 0;
  let rendering = []; // Figures and HTML still being drawn: the run is done when they are.

  function setState(state, text) {
    document.body.dataset.state = state;
    ui.status.textContent = text;
    const active = state === 'loading' || state === 'running';
    ui.run.disabled = active;
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
    rendering = [];
    for (const el of [ui.stdout, ui.stderr, ui.result, ui.figures]) {
      for (const img of el.querySelectorAll('img')) URL.revokeObjectURL(img.src);
      el.replaceChildren();
    }
  }

  // The fragment: #py=<payload>&other=... ; unknown parameters are ignored.
  async function codeFromHash() {
    const params = location.hash.replace(/^#/, '').split('&');
    const param = params.find((p) => p.startsWith('py='));
    if (!param) throw new Error('This link carries no code (expected #py=… in the URL).');
    const b64 = param.slice(3);
    if (!/^[A-Za-z0-9_-]*={0,2}$/.test(b64)) throw new Error('The code in this link is not valid base64url.');
    let binary;
    try {
      binary = atob(b64.replace(/=+$/, '').replace(/-/g, '+').replace(/_/g, '/'));
    } catch (e) {
      throw new Error('The code in this link is not valid base64url.');
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
        if (total > MAX_CODE_BYTES) {
          await reader.cancel();
          throw new Error('The code in this link is larger than 1 MiB.');
        }
        chunks.push(value);
      }
    } catch (e) {
      if (e instanceof Error && e.message.startsWith('The code')) throw e;
      throw new Error('The code in this link could not be decompressed (it is damaged or truncated).');
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

  // A fresh worker. It is a module worker from a data: URL: a worker script URL on the server
  // would be cross-origin (and refused) when the page runs in an opaque-origin widget iframe.
  function startWorker() {
    if (worker) worker.terminate();
    worker = null;
    workerBusy = false;
    const ready = (async () => {
      const source = await loadWorkerSource();
      const w = new Worker('data:text/javascript;charset=utf-8,' + encodeURIComponent(source),
        { type: 'module', name: 'sandgate-python' });
      worker = w;
      return new Promise((resolve, reject) => {
        const watchdog = setTimeout(() => reject(new Error('Python (Pyodide) did not load within ' +
          Math.round(prepareLimitMs / 1000) + ' s.')), prepareLimitMs);
        w.onerror = (e) => {
          clearTimeout(watchdog);
          e.preventDefault();
          reject(new Error('The Python worker failed to start' + (e.message ? ': ' + e.message : '.')));
        };
        w.onmessage = (ev) => {
          const m = ev.data;
          if (!m || typeof m !== 'object') return;
          if (m.type === 'booted') {
            clearTimeout(watchdog);
            w.onmessage = (e2) => onWorkerMessage(w, e2.data);
            resolve(w);
          } else if (m.type === 'boot-error') {
            clearTimeout(watchdog);
            reject(new Error('Python (Pyodide) failed to load: ' + String(m.message)));
          }
        };
        w.postMessage({ type: 'boot', pyodideUrl: config.pyodideUrl, indexes: config.indexes,
          offline: config.offline });
      });
    })();
    ready.catch(() => {});
    workerReady = ready;
    return ready;
  }

  function stopTimer() {
    if (timer) clearTimeout(timer);
    timer = null;
  }

  function finish(state, text, note) {
    stopTimer();
    flush();
    if (note) append(ui.stderr, note, 'info');
    setState(state, text);
  }

  function kill(state, text, note) {
    runId += 1;
    finish(state, text, note);
    startWorker(); // A fresh one, ready for Run again.
  }

  async function run(code) {
    runId += 1;
    const id = runId;
    stopTimer();
    clearOutputs();
    setState('loading', 'Loading Python…');
    if (!workerReady || workerBusy) startWorker();
    const ready = workerReady;
    timer = setTimeout(() => {
      if (id === runId) kill('error', 'Loading took too long', 'Python or its packages did not load within ' +
        Math.round(prepareLimitMs / 1000) + ' s.');
    }, prepareLimitMs);
    let w;
    try {
      w = await ready;
    } catch (e) {
      if (id !== runId) return;
      workerReady = null;
      finish('error', 'Python could not be loaded', String(e.message || e));
      return;
    }
    if (id !== runId) return;
    workerBusy = true;
    setState('loading', 'Loading packages…');
    w.postMessage({ type: 'run', id, code });
  }

  function onWorkerMessage(w, m) {
    if (w !== worker || !m || typeof m !== 'object' || m.id !== runId) return;
    const text = typeof m.text === 'string' ? m.text : '';
    switch (m.type) {
      case 'status':
        if (document.body.dataset.state === 'loading') ui.status.textContent = text;
        break;
      case 'started':
        stopTimer();
        runStarted = performance.now();
        setState('running', 'Running…');
        timer = setTimeout(() => kill('timeout', 'Stopped: time limit reached',
          'The code ran longer than ' + config.timeoutMs / 1000 + ' s and was stopped.'), config.timeoutMs);
        break;
      case 'stdout': append(ui.stdout, text); break;
      case 'stderr': append(ui.stderr, text); break;
      case 'info': append(ui.stderr, text, 'info'); break;
      case 'result': showText(text); break;
      case 'html': if (typeof m.html === 'string') showHtml(m.html); break;
      case 'png': if (m.bytes instanceof Uint8Array && m.bytes.length > 0) showPng(m.bytes); break;
      case 'plotly': if (typeof m.json === 'string') showPlotly(m.json); break;
      case 'finished': {
        workerBusy = false;
        stopTimer();
        const ms = performance.now() - runStarted;
        const took = ms < 1000 ? Math.max(1, Math.round(ms)) + ' ms' : (ms / 1000).toFixed(1) + ' s';
        const id = runId;
        Promise.allSettled(rendering).then(() => {
          if (id !== runId) return;
          if (m.ok === true) finish('done', 'Done in ' + took);
          else finish('error', 'Finished with an error');
        });
        break;
      }
      default: break;
    }
  }

  function showText(text) {
    const pre = document.createElement('pre');
    pre.textContent = text;
    ui.result.replaceChildren(pre);
  }

  // _repr_html_ (a DataFrame table, say) is rebuilt from an allowlist: tables and text markup
  // with a few layout attributes survive; scripts, styles, links, images, frames, forms, event
  // handlers and every other attribute are dropped. The page's policy would block scripts and
  // remote loads anyway; this keeps Python's markup from even trying.
  const HTML_KEEP = new Set(['TABLE', 'THEAD', 'TBODY', 'TFOOT', 'TR', 'TH', 'TD', 'CAPTION', 'COLGROUP',
    'COL', 'B', 'I', 'EM', 'STRONG', 'U', 'S', 'SMALL', 'SUB', 'SUP', 'CODE', 'PRE', 'KBD', 'SAMP', 'VAR',
    'P', 'DIV', 'SPAN', 'BR', 'HR', 'UL', 'OL', 'LI', 'DL', 'DT', 'DD', 'H1', 'H2', 'H3', 'H4', 'H5', 'H6',
    'BLOCKQUOTE', 'DETAILS', 'SUMMARY', 'ABBR', 'MARK', 'Q', 'TIME']);
  const HTML_DROP = new Set(['SCRIPT', 'STYLE', 'TEMPLATE', 'NOSCRIPT', 'IFRAME', 'FRAME', 'OBJECT', 'EMBED',
    'SVG', 'MATH', 'TEXTAREA', 'SELECT', 'OPTION', 'BUTTON', 'TITLE', 'HEAD']);
  const ATTR_KEEP = new Set(['class', 'colspan', 'rowspan', 'align', 'valign', 'title', 'open', 'start',
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

  function showHtml(html) {
    ui.result.replaceChildren(sanitized(html));
  }

  function showPng(bytes) {
    const img = document.createElement('img');
    img.alt = 'Figure ' + (ui.figures.children.length + 1);
    // Figures are rendered at 150 dpi and shown at 100 dpi: sharp on high-density screens.
    rendering.push(new Promise((resolve) => {
      img.onload = () => { img.style.width = Math.round(img.naturalWidth / 1.5) + 'px'; resolve(); };
      img.onerror = resolve;
    }));
    img.src = URL.createObjectURL(new Blob([bytes], { type: 'image/png' }));
    ui.figures.appendChild(img);
  }

  let plotlyLoading = null;
  function loadPlotly() {
    if (!plotlyLoading) {
      plotlyLoading = new Promise((resolve, reject) => {
        const s = document.createElement('script');
        s.src = config.plotlyUrl;
        s.onload = () => (window.Plotly ? resolve(window.Plotly) : reject(new Error('plotly.js did not define Plotly')));
        s.onerror = () => reject(new Error('plotly.js could not be loaded from ' + config.plotlyUrl));
        document.head.appendChild(s);
      });
      plotlyLoading.catch(() => { plotlyLoading = null; });
    }
    return plotlyLoading;
  }

  function showPlotly(json) {
    rendering.push(drawPlotly(json));
  }

  async function drawPlotly(json) {
    let fig;
    try {
      fig = JSON.parse(json);
    } catch (e) {
      return;
    }
    if (!fig || typeof fig !== 'object' || !Array.isArray(fig.data)) return;
    const div = document.createElement('div');
    div.className = 'plotly-figure';
    div.setAttribute('role', 'img');
    div.setAttribute('aria-label', 'Plotly figure ' + (ui.figures.children.length + 1));
    ui.figures.appendChild(div);
    try {
      const Plotly = await loadPlotly();
      const layout = (fig.layout && typeof fig.layout === 'object') ? fig.layout : {};
      await Plotly.newPlot(div, fig.data, layout, { responsive: true, displaylogo: false });
    } catch (e) {
      div.remove();
      append(ui.stderr, 'The Plotly figure could not be drawn: ' + String(e.message || e), 'info');
    }
  }

  function setEditing(on) {
    ui.code.readOnly = !on;
    ui.edit.setAttribute('aria-pressed', on ? 'true' : 'false');
    ui.edit.textContent = on ? 'Done editing' : 'Edit';
    if (on) ui.code.focus();
  }

  ui.run.addEventListener('click', () => run(ui.code.value));
  ui.stop.addEventListener('click', () => kill('stopped', 'Stopped', 'Stopped by you.'));
  ui.edit.addEventListener('click', () => setEditing(ui.code.readOnly));
  ui.code.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey) && !ui.run.disabled) {
      e.preventDefault();
      run(ui.code.value);
    }
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && !ui.stop.disabled) kill('stopped', 'Stopped', 'Stopped by you.');
  });

  async function loadFromHash() {
    let code;
    try {
      code = await codeFromHash();
    } catch (e) {
      runId += 1;
      clearOutputs();
      ui.code.value = '';
      finish('error', 'No code to run', String(e.message || e));
      return;
    }
    ui.code.value = code;
    ui.code.rows = Math.min(Math.max(code.split('\n').length + 1, 4), 30);
    setEditing(false);
    run(code);
  }

  window.addEventListener('hashchange', loadFromHash);
  setState('loading', 'Loading Python…');
  startWorker();
  loadFromHash();
})();

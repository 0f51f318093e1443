// The sandbox worker: boots Pyodide, loads the packages the code imports, runs the code and posts
// its outputs to the page. The page starts it as a module worker from a data: URL (so that it also
// works inside an opaque-origin iframe). A worker runs at most one program: the page terminates it
// when the run ends, however it ends, and a fresh one boots for the next run.
//
// Messages in: {type: 'boot', port, pyodideUrl, indexes, offline, maxFigureJsonChars, preload,
//   session?} on the worker, then at most one {type: 'run', code, cells, stdin, interactive, files} on `port` (a
//   session worker, for the page's runner mode, takes any number of {type: 'run', code, stdin?,
//   files?}, one after another: see onSessionRun). `preload` is code whose packages are installed
//   right after booting (the previous run's code, likely to run again), silently. Installed, never
//   imported: an import runs the package's code, and the spare runs no code off the clock.
//   `cells` are the answer's earlier blocks, run first in the same namespace; `stdin` the Input
//   box's text; `interactive` whether input() may ask the page when that text is empty; `files`
//   [{name, bytes}] go into /home/pyodide. While a run waits for input, {type: 'input-reply', line}
//   on `port` answers it.
// Messages out, only on `port`, a private MessagePort captured before any Python runs (what Python
// posts with js.postMessage goes to the Worker object, which the page does not listen to):
//   {type: 'booted', interactive}, {type: 'boot-error', message}, {type: 'status', text},
//   {type: 'started'}, {type: 'cell', index} (earlier cell `index` starts: the outputs that follow
//   are its), {type: 'cell-failed', index}, {type: 'block'} (the opened block starts),
//   {type: 'input-request', prompt}, {type: 'file', name, size, bytes | skipped},
//   {type: 'stdout'|'stderr'|'info', text}, {type: 'result', text}, {type: 'html', html},
//   {type: 'png', bytes}, {type: 'plotly', json} or {type: 'plotly', chars} (a figure too large to
//   send), {type: 'finished', ok}. Python can still call the runner's own callbacks, so the page
//   trusts none of these beyond their data: it owns the clock and ends the run itself.

// The Python side of the runner: templates/runner.py, put here as a string literal by sandgate
// when it renders this script (the placeholder below is replaced whole).
const RUNNER = '{{templates/runner.py}}';

let pyodide = null;
let runner = null;
let config = null;
let send = null; // The private port's postMessage, bound before any Python runs.
let quiet = false; // While preloading: nothing is posted.
let booting = null; // Boot, then preload: a run waits for both.
let ran = false;

// Builds each message from literals and spread syntax only (no global function Python could
// replace, such as Object.assign), so that a message's type is always the one written here.
function post(type, fields) {
  if (send && !quiet) send({ ...fields, type });
}

// Streams stdout/stderr bytes to the page as they are written (Python's streams are line
// buffered): a streaming TextDecoder keeps multi-byte characters split across writes intact. A run
// that prints more than the cap gets one note instead of the rest.
const STREAM_CAP = 4_000_000;
function stream(type) {
  const decoder = new TextDecoder('utf-8');
  let sent = 0;
  const emit = (text) => {
    if (!text) return;
    if (sent < STREAM_CAP) {
      post(type, { text: text.slice(0, STREAM_CAP - sent) });
      if (sent + text.length >= STREAM_CAP) post('info', { text: 'Further ' + type + ' output was dropped.' });
    }
    sent += text.length;
  };
  return {
    write(bytes) {
      emit(decoder.decode(bytes, { stream: true }));
      return bytes.length;
    },
    end() {
      emit(decoder.decode());
      sent = 0;
    },
  };
}

const stdout = stream('stdout');
const stderr = stream('stderr');

async function boot(msg) {
  config = msg;
  const { loadPyodide } = await import(msg.pyodideUrl + 'pyodide.mjs');
  pyodide = await loadPyodide({ indexURL: msg.pyodideUrl });
  pyodide.setStdin({ stdin: () => null });
  attachStreams();
  const ns = pyodide.globals.get('dict')();
  pyodide.runPython(RUNNER, { globals: ns });
  runner = ns;
}

// Runs `work` with Python's output discarded (progress messages of micropip and imports).
async function quietly(work) {
  const silent = { write: (b) => b.length };
  pyodide.setStdout(silent);
  pyodide.setStderr(silent);
  try {
    return await work();
  } finally {
    attachStreams();
  }
}

function attachStreams() {
  pyodide.setStdout({ write: (b) => stdout.write(b) });
  pyodide.setStderr({ write: (b) => stderr.write(b) });
  pyodide.runPython('import sys; sys.stdout.reconfigure(line_buffering=True); sys.stderr.reconfigure(line_buffering=True)');
}

function fromPython(kind, payload) {
  switch (kind) {
    case 'error': post('stderr', { text: String(payload) }); break;
    case 'info': post('info', { text: String(payload) }); break;
    case 'result': post('result', { text: String(payload) }); break;
    case 'html': post('html', { html: String(payload) }); break;
    case 'plotly': {
      const json = String(payload);
      // A figure larger than the page's limit for all the figures of one run is not even sent.
      if (json.length > config.maxFigureJsonChars) post('plotly', { chars: json.length });
      else post('plotly', { json });
      break;
    }
    case 'png': post('png', { bytes: payload instanceof Uint8Array ? payload : new Uint8Array(0) }); break;
    case 'cell': post('cell', { index: Number(payload) }); break;
    case 'cell-failed': post('cell-failed', { index: Number(payload) }); break;
    case 'block': post('block', {}); break;
    default: break;
  }
}

// Turns Pyodide's package loading errors into one clear line per package.
function reportLoadErrors(errors) {
  const names = new Set();
  for (const e of errors) {
    const m = /while loading ([A-Za-z0-9_.\-]+)/.exec(e);
    if (m) names.add(m[1]);
  }
  if (names.size === 0 && errors.length > 0) {
    post('info', { text: 'Pyodide could not load a package: ' + errors.join(' ') });
  }
  for (const name of names) {
    const why = config.offline
      ? 'this sandbox serves its own copy of Pyodide, which does not include that package'
      : 'the download from ' + config.pyodideUrl + ' failed or was blocked';
    post('info', { text: "Package '" + name + "' is part of Pyodide but could not be loaded: " + why + '.' });
  }
}

// Installs what `code` imports: Pyodide's packages, pure-Python wheels through micropip. Nothing is
// imported here, so no package's code runs: this is what a spare may do off the clock.
async function install(code) {
  const errors = [];
  post('status', { text: 'Loading packages…' });
  await pyodide.loadPackagesFromImports(code, {
    messageCallback: () => {},
    errorCallback: (m) => errors.push(String(m)),
  });
  reportLoadErrors(errors);
  const missingProxy = runner.get('missing_imports')(code);
  const missing = missingProxy.toJs();
  missingProxy.destroy();
  if (missing.length > 0) {
    post('status', { text: 'Installing ' + missing.join(', ') + '…' });
    await pyodide.loadPackage('micropip', { messageCallback: () => {}, errorCallback: () => {} });
    if (!pyodide.loadedPackages.micropip) {
      post('info', { text: 'micropip could not be loaded, so ' + missing.join(', ') + ' cannot be installed' });
    } else {
      // micropip's progress messages ('Loading packaging') are not the program's output.
      const failed = await quietly(async () => {
        const failedProxy = await runner.get('install')(missing, config.indexes, config.offline);
        const lines = failedProxy.toJs();
        failedProxy.destroy();
        return lines;
      });
      for (const line of failed) post('info', { text: line });
    }
  }
}

// Imports what `code` imports, and sets up figure capture: package code runs here, so only on the
// run's clock (after 'started'). Importing matplotlib may print 'building the font cache': not the
// program's output.
async function importPackages(code) {
  const note = await quietly(async () => runner.get('prepare')(code));
  if (note) post('info', { text: String(note) });
}

// The previous run's packages, installed while nobody waits, so that Run again starts sooner.
async function preload(code) {
  if (typeof code !== 'string' || code === '') return;
  quiet = true;
  try {
    await install(code);
  } catch (e) {
    // The run loads again and reports what fails.
  } finally {
    quiet = false;
  }
}

async function run(code, msg) {
  // A session run (runner mode) has no cells and no Input box; its files are the runner's.
  const cells = session ? [] : cellsOf(msg);
  for (const cell of cells) await install(cell);
  await install(code);
  const sessionFiles = Array.isArray(msg.files) ? msg.files : null;
  const before = session ? (sessionFiles ? placeSessionFiles(sessionFiles) : null) : placeFiles(msg.files);
  if (!session) setInput(msg);
  // The clock starts before the imports: the page arms the time limit at this message.
  post('started', {});
  let ok = false;
  try {
    for (const cell of cells) await importPackages(cell);
    await importPackages(code);
    ok = await (session
      ? runner.get('run_session')(code, fromPython, msg.stdin)
      : runner.get('run')(code, fromPython, undefined, cells));
  } finally {
    stdout.end();
    stderr.end();
  }
  if (before) {
    if (session) postSessionFiles(before);
    else postWrittenFiles(before);
  }
  post('finished', { ok: ok === true });
}

// The earlier cells of a run request: strings only.
function cellsOf(msg) {
  return Array.isArray(msg.cells) ? msg.cells.filter((c) => typeof c === 'string') : [];
}

// Input. sys.stdin and input() read the Input box's text; when it was empty and this browser can
// pause the worker (JavaScript Promise Integration), input() asks the page for a line instead and
// the program waits for the reply ({type: 'input-request', prompt} out, {type: 'input-reply',
// line} in, line null for end of input).
let inputWaiting = null;

function canPause() {
  try {
    return typeof WebAssembly.Suspending === 'function' &&
      pyodide.runPython('import pyodide.ffi\nhasattr(pyodide.ffi, "run_sync")') === true;
  } catch (e) {
    return false;
  }
}

function askInput(prompt) {
  if (inputWaiting) return Promise.resolve(null);
  return new Promise((resolve) => {
    inputWaiting = resolve;
    post('input-request', { prompt: String(prompt) });
  });
}

function onInputReply(msg) {
  if (!msg || typeof msg !== 'object' || msg.type !== 'input-reply' || !inputWaiting) return;
  const resolve = inputWaiting;
  inputWaiting = null;
  resolve(typeof msg.line === 'string' ? msg.line : undefined);
}

function setInput(msg) {
  const text = typeof msg.stdin === 'string' ? msg.stdin : '';
  const ask = text === '' && msg.interactive === true && canPause() ? askInput : undefined;
  runner.get('set_input')(text, ask);
}

// Files. Those the person added go into the working directory before the run; afterwards every
// file the run created or changed there is posted back ({type: 'file', name, size, bytes}, or
// {type: 'file', name, size, skipped} over the limits). Dot-directories (caches) are not looked at.
const HOME = '/home/pyodide';
const MAX_FILE_BYTES = 50 * 1000 * 1000;
const MAX_RUN_FILE_BYTES = 50 * 1000 * 1000;
const MAX_LISTED_FILES = 1000;

function isFileName(name) {
  return typeof name === 'string' && name !== '' && name !== '.' && name !== '..' &&
    !/[/\\\0]/.test(name) && name.length <= 255;
}

function placeFiles(files) {
  if (Array.isArray(files)) {
    for (const f of files) {
      if (f && isFileName(f.name) && f.bytes instanceof Uint8Array) pyodide.FS.writeFile(HOME + '/' + f.name, f.bytes);
    }
  }
  return homeFiles();
}

// path -> 'size mtime' of every regular file under HOME.
function homeFiles() {
  const FS = pyodide.FS;
  const found = new Map();
  const walk = (dir, depth) => {
    let names = [];
    try {
      names = FS.readdir(dir);
    } catch (e) {
      return;
    }
    for (const name of names) {
      if (name === '.' || name === '..' || found.size >= 10 * MAX_LISTED_FILES) continue;
      const path = dir + '/' + name;
      let st;
      try {
        st = FS.stat(path);
      } catch (e) {
        continue;
      }
      if (FS.isDir(st.mode)) {
        if (depth < 16 && !name.startsWith('.')) walk(path, depth + 1);
      } else if (FS.isFile(st.mode)) {
        found.set(path, st.size + ' ' + Number(st.mtime));
      }
    }
  };
  walk(HOME, 0);
  return found;
}

function postWrittenFiles(before) {
  let total = 0;
  let listed = 0;
  for (const [path, stamp] of homeFiles()) {
    if (before.get(path) === stamp) continue;
    const name = path.slice(HOME.length + 1);
    const size = Number(stamp.split(' ')[0]);
    if (++listed > MAX_LISTED_FILES) {
      post('info', { text: 'The run wrote more than ' + MAX_LISTED_FILES + ' files: only the first are listed.' });
      break;
    }
    if (size > MAX_FILE_BYTES) {
      post('file', { name, size, skipped: 'larger than the 50 MB limit for one file' });
    } else if (total + size > MAX_RUN_FILE_BYTES) {
      post('file', { name, size, skipped: 'over the 50 MB limit for the files of one run' });
    } else {
      total += size;
      post('file', { name, size, bytes: pyodide.FS.readFile(path) });
    }
  }
}

function onRun(msg) {
  if (!msg || typeof msg !== 'object' || msg.type !== 'run' || ran) return;
  // One run per worker: once it has started, nothing else is listened to.
  ran = true;
  booting.then(() => run(String(msg.code), msg)).catch((e) => {
    stdout.end();
    stderr.end();
    post('stderr', { text: 'sandgate: ' + String((e && e.message) || e) + '\n' });
    post('finished', { ok: false });
  });
}

// The runner mode (boot with `session: true`): the worker runs the programs of one runner, one
// after another, in one namespace (variables, imports and files persist), until the page
// terminates it (a timeout, Stop, reset). Each {type: 'run', code, stdin?, files?} is answered like a
// run of the link page, ending with its own 'finished'; the page sends the next one only after.
let session = false;
let sessionRuns = null;

function onSessionRun(msg) {
  if (!msg || typeof msg !== 'object' || msg.type !== 'run') return;
  const code = String(msg.code);
  const stdin = typeof msg.stdin === 'string' ? msg.stdin : null;
  const files = Array.isArray(msg.files) ? msg.files : [];
  sessionRuns = (sessionRuns || booting).then(() => run(code, { stdin, files })).catch((e) => {
    stdout.end();
    stderr.end();
    post('stderr', { text: 'sandgate: ' + String((e && e.message) || e) + '\n' });
    post('finished', { ok: false });
  });
}

// A runner's files: {name, bytes} written to the working directory before its run; afterwards
// every file the run created or changed there (dot-directories left out) is posted back, as
// {type: 'file', name, size, bytes}, or {type: 'file', name, size, skipped} past 50 MB (one file,
// or the files of one run). Python cannot post these: they come from this code only.
const SESSION_HOME = '/home/pyodide';
const SESSION_FILE_LIMIT = 50 * 1000 * 1000;
const SESSION_MAX_FILES = 1000;

function placeSessionFiles(files) {
  for (const f of files) {
    const ok = f && typeof f.name === 'string' && f.name !== '' && f.name !== '.' && f.name !== '..' &&
      f.name.length <= 255 && !/[/\\\0]/.test(f.name) && f.bytes instanceof Uint8Array;
    if (ok) pyodide.FS.writeFile(SESSION_HOME + '/' + f.name, f.bytes);
  }
  return sessionFileStamps();
}

// path -> 'size mtime' of the regular files under the working directory.
function sessionFileStamps() {
  const FS = pyodide.FS;
  const found = new Map();
  const walk = (dir, depth) => {
    let names = [];
    try { names = FS.readdir(dir); } catch (e) { return; }
    for (const name of names) {
      if (name === '.' || name === '..' || found.size >= 10 * SESSION_MAX_FILES) continue;
      const path = dir + '/' + name;
      let st;
      try { st = FS.stat(path); } catch (e) { continue; }
      if (FS.isDir(st.mode)) {
        if (depth < 16 && !name.startsWith('.')) walk(path, depth + 1);
      } else if (FS.isFile(st.mode)) {
        found.set(path, st.size + ' ' + Number(st.mtime));
      }
    }
  };
  walk(SESSION_HOME, 0);
  return found;
}

function postSessionFiles(before) {
  let total = 0;
  let listed = 0;
  for (const [path, stamp] of sessionFileStamps()) {
    if (before.get(path) === stamp) continue;
    const name = path.slice(SESSION_HOME.length + 1);
    const size = Number(stamp.split(' ')[0]);
    if (++listed > SESSION_MAX_FILES) {
      post('info', { text: 'The run wrote more than ' + SESSION_MAX_FILES + ' files: only the first are listed.' });
      break;
    }
    if (size > SESSION_FILE_LIMIT || total + size > SESSION_FILE_LIMIT) {
      post('file', { name, size, skipped: 'over the 50 MB limit for the files of one run' });
    } else {
      total += size;
      post('file', { name, size, bytes: pyodide.FS.readFile(path) });
    }
  }
}

self.onmessage = (event) => {
  const msg = event.data;
  if (!msg || typeof msg !== 'object' || msg.type !== 'boot' || booting !== null) return;
  const port = msg.port;
  if (!(port instanceof MessagePort)) return;
  send = port.postMessage.bind(port);
  // The run request comes on the port too: nothing Python could send reaches this handler.
  session = msg.session === true;
  port.onmessage = (e) => {
    if (session) onSessionRun(e.data);
    else onRun(e.data);
    onInputReply(e.data);
  };
  booting = boot(msg).then(
    () => {
      post('booted', { interactive: canPause() });
      return preload(msg.preload);
    },
    (e) => {
      post('boot-error', { message: String((e && e.message) || e) });
      throw e;
    },
  );
  booting.catch(() => {});
};

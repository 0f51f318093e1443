// The sandbox worker: boots Pyodide, loads the packages the code imports, runs the code and posts
// its outputs to the page. The page starts it as a module worker from a data: URL (so that it also
// works inside an opaque-origin iframe). A worker runs at most one program: the page terminates it
// when the run ends, however it ends, and a fresh one boots for the next run.
//
// Messages in: {type: 'boot', port, pyodideUrl, indexes, offline, preload, session?} on the
//   worker, then at most one {type: 'run', code, cells, stdin, interactive, files} on `port` (a
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

const RUNNER = String.raw`
import ast, builtins, importlib, importlib.util, inspect, io, linecache, os, sys, traceback

FILENAME = "main.py"
# What Pyodide's runPython calls the code of this runner.
RUNNER_FILENAME = "<exec>"
MAX_TEXT = 1_000_000
os.environ.setdefault("MPLBACKEND", "Agg")

class _Run:
    post = None
    shown = []
    # The file names of the user's code in this run: the opened block and the earlier cells.
    files = (FILENAME,)

def _emit(kind, payload):
    if kind == "png":
        from pyodide.ffi import to_js
        payload = to_js(payload)
    _Run.post(kind, payload)

def _clip(text):
    if len(text) > MAX_TEXT:
        return text[:MAX_TEXT] + "\n... (truncated)"
    return text

def missing_imports(code):
    missing = set()
    for top in _third_party_imports(code):
        try:
            if importlib.util.find_spec(top) is None:
                missing.add(top)
        except (ImportError, ValueError):
            missing.add(top)
    return sorted(missing)

async def install(names, indexes, offline):
    import micropip
    failed = []
    for name in names:
        try:
            await micropip.install(name, index_urls=list(indexes) or None)
        except Exception as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            if "Failed to fetch" in reason or "NetworkError" in reason:
                reason = "the network request was blocked or failed"
            elif "Can't fetch metadata" in reason or "Can't find a pure Python" in reason:
                where = "the packages served with this sandbox" if offline else "Pyodide's packages or PyPI"
                reason = "not found in " + where + " (only pure-Python wheels can be installed)"
            failed.append("package '" + name + "' is not available: " + reason)
    return failed

def _is_plotly(value):
    mod = sys.modules.get("plotly.basedatatypes")
    base = getattr(mod, "BaseFigure", None)
    return base is not None and isinstance(value, base)

def _emit_plotly(fig):
    if any(f is fig for f in _Run.shown):
        return
    _Run.shown.append(fig)
    _emit("plotly", fig.to_json())

def _is_mpl_figure(value):
    mod = sys.modules.get("matplotlib.figure")
    base = getattr(mod, "Figure", None)
    return base is not None and isinstance(value, base)

def _emit_png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", dpi=150)
    _emit("png", buf.getvalue())

def _show_mpl_figure(fig):
    # Any matplotlib figure, pyplot's or one built with Figure() alone. Once shown, pyplot forgets
    # it, so that it is not collected again at the end of the run.
    _emit_png(fig)
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close(fig)

def _emit_matplotlib():
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    for num in plt.get_fignums():
        _emit_png(plt.figure(num))
    plt.close("all")

def _prepare_figures():
    # Figures are captured, never drawn on a screen: matplotlib uses Agg and show() emits PNGs;
    # a Plotly figure's show() hands its JSON to the page, which draws it with plotly.js.
    if importlib.util.find_spec("matplotlib") is not None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.figure, matplotlib.pyplot as plt
        plt.show = lambda *args, **kwargs: _emit_matplotlib()
        # Figure.show() would only warn that Agg cannot show anything (or fail for a Figure()
        # that pyplot does not manage).
        matplotlib.figure.Figure.show = lambda self, *args, **kwargs: _show_mpl_figure(self)
    if importlib.util.find_spec("plotly") is not None:
        import plotly.basedatatypes, plotly.io
        plotly.basedatatypes.BaseFigure.show = lambda self, *args, **kwargs: _emit_plotly(self)
        def _pio_show(fig, *args, **kwargs):
            if _is_plotly(fig):
                _emit_plotly(fig)
            else:
                import plotly.graph_objects as go
                _emit_plotly(go.Figure(fig))
        plotly.io.show = _pio_show

def _format_error(e):
    tb = e.__traceback__
    # Keep only the user's frames: drop this runner's (and Pyodide's) frames above the user's code.
    while tb is not None and tb.tb_frame.f_code.co_filename not in _Run.files:
        tb = tb.tb_next
    if tb is None:
        text = "".join(traceback.format_exception_only(type(e), e))
    else:
        # Nor this runner's frames below them (its input(), say).
        report = traceback.TracebackException(type(e), e, tb, compact=True)
        report.stack = traceback.StackSummary.from_list(
            [f for f in report.stack if f.filename != RUNNER_FILENAME])
        text = "".join(report.format())
    hint = None
    message = str(e)
    if type(e).__name__ == "JsException" or isinstance(e, OSError):
        if "Failed to fetch" in message or "NetworkError" in message or "Content Security Policy" in message:
            hint = "Network access from this sandbox is limited to package downloads: the request was blocked."
    if isinstance(e, ModuleNotFoundError):
        hint = ("Module '" + str(e.name) + "' is not available in this sandbox: only Pyodide's "
                "packages and pure-Python wheels can be installed here.")
    return _clip(text), hint

def _third_party_imports(code):
    from pyodide.code import find_imports
    try:
        names = find_imports(code)
    except SyntaxError:
        return []
    tops = {name.split(".")[0] for name in names}
    return sorted(t for t in tops if t not in sys.builtin_module_names and t not in sys.stdlib_module_names)

def prepare(code):
    # The packages the code imports are imported here, on the run's clock (an import runs the
    # package's code, which may do anything), before the code itself, so that the messages of
    # importing (matplotlib's font cache) are not shown as the program's output. A failing import
    # is left for the code itself to raise, with its own traceback.
    for name in _third_party_imports(code):
        try:
            importlib.import_module(name)
        except (Exception, SystemExit):
            pass
    try:
        _prepare_figures()
    except Exception as e:
        return "Figure capture is unavailable: " + repr(e)
    return None

async def run(code, post, env=None, cells=None):
    """Runs the earlier cells (if any), then the block, in one namespace (a fresh one unless
    env is given). A cell that fails stops the run: the block does not run on a broken state."""
    _Run.post = post
    _Run.shown = []
    cells = [str(c) for c in cells] if cells is not None else []
    _Run.files = tuple(cell_filename(i) for i in range(len(cells))) + (FILENAME,)
    for i, cell in enumerate(cells):
        _register(cell, cell_filename(i))
    _register(code, FILENAME)
    builtins.display = display
    if env is None:
        env = _fresh_globals()
    # A Plotly figure left in a variable is shown at the end, unless it was there (the same
    # object under the same name) before this run: in a session, earlier runs showed it already.
    before = {name: id(obj) for name, obj in env.items() if _is_plotly(obj)}
    for i, cell in enumerate(cells):
        post("cell", i)
        ok, value = await _execute(cell, cell_filename(i), env)
        _show_outputs(value, env, before)
        if not ok:
            post("cell-failed", i)
            return False
    if cells:
        post("block", None)
    ok, value = await _execute(code, FILENAME, env)
    _show_outputs(value, env, before)
    return ok

def cell_filename(index):
    return "cell " + str(index + 1)

def _register(code, filename):
    # The compiler ends lines only at \n, \r\n and \r, not at \f, \x1c-\x1e, \x85, \u2028 or \u2029
    # as str.splitlines() does: read them the same way, so that tracebacks quote the right line.
    lines = io.StringIO(code, newline=None).readlines()
    linecache.cache[filename] = (len(code), None, lines, filename)

async def _execute(code, filename, env):
    """Runs one block in env; returns (ok, value of its last expression). Errors are posted."""
    ok = True
    value = None
    try:
        tree = ast.parse(code, filename=filename, mode="exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        body = compile(tree, filename, "exec", flags=flags, dont_inherit=True)
        pending = eval(body, env)
        if inspect.iscoroutine(pending):
            await pending
        if last is not None:
            expr = compile(last, filename, "eval", flags=flags, dont_inherit=True)
            value = eval(expr, env)
            if inspect.iscoroutine(value):
                value = await value
    except SystemExit as e:
        if e.code not in (None, 0):
            ok = False
            _Run.post("error", "SystemExit: " + str(e.code))
    except BaseException as e:
        ok = False
        sys.stdout.flush()
        sys.stderr.flush()
        text, hint = _format_error(e)
        _Run.post("error", text)
        if hint:
            _Run.post("info", hint)
    sys.stdout.flush()
    sys.stderr.flush()
    return ok, value

def _show_outputs(value, env, before):
    # What a block leaves to show: its last value, Plotly figures it built (each once per run),
    # open matplotlib figures.
    try:
        if value is not None:
            _show_value(value)
        for name, obj in list(env.items()):
            if not name.startswith("_") and _is_plotly(obj) and before.get(name) != id(obj):
                _emit_plotly(obj)
        _emit_matplotlib()
    except Exception as e:
        _Run.post("info", "Could not display a result: " + repr(e))

def _fresh_globals():
    return {"__name__": "__main__", "__file__": FILENAME, "__builtins__": __builtins__}

# The runner mode's session: one namespace for all the runs of one worker, like a Jupyter kernel.
_session = _fresh_globals()

async def run_session(code, post, stdin=None):
    # Text given beforehand is what input() and sys.stdin read during this run (then end of file).
    saved = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        return await run(code, post, _session)
    finally:
        sys.stdin = saved

class _Input(io.TextIOBase):
    """sys.stdin: the lines of the page's Input box, then, when the box was empty and the browser
    can pause this worker, the lines the person types as the program asks for them."""

    def __init__(self, text, ask):
        super().__init__()
        self._box = io.StringIO(text)
        self._had_text = bool(text)
        self._ask = ask if callable(ask) else None
        self._ended = False

    def readable(self):
        return True

    @property
    def encoding(self):
        return "utf-8"

    def read(self, size=-1):
        size = -1 if size is None else size
        text = self._box.read(size)
        if text or self._ask is None or size == 0:
            return text
        parts = []
        while size < 0 or sum(map(len, parts)) < size:
            line = self.readline()
            if not line:
                break
            parts.append(line)
        return "".join(parts)

    def readline(self, size=-1):
        return self._readline("", size)

    def _readline(self, prompt, size=-1):
        line = self._box.readline(-1 if size is None else size)
        if line or self._ask is None or self._ended:
            return line
        from pyodide.ffi import can_run_sync, run_sync
        if not can_run_sync():
            raise EOFError("EOF when reading a line: input() cannot wait for you here (it was called "
                           "from a callback that cannot pause); type the input in the Input box, then "
                           "Run again")
        line = run_sync(self._ask(prompt))
        if not isinstance(line, str):
            self._ended = True
            return ""
        # Echoed as a terminal would, so that the output reads as the conversation it was.
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        return line + "\n"

    def eof_message(self):
        if self._ended:
            return "EOF when reading a line: you ended the input"
        if self._had_text:
            return ("EOF when reading a line: input() reads from the Input box, and all its lines "
                    "have been read: add more lines there, then Run again")
        return ("EOF when reading a line: input() reads from the Input box, which is empty: type "
                "the program's input there (one line per input() call), then Run again (this "
                "browser cannot pause Python to ask as it runs)")

def _input(prompt=""):
    """input(): the prompt goes to stdout, the line comes from sys.stdin (the Input box, or the
    person when the box is empty and the browser can pause)."""
    prompt = str(prompt)
    sys.stdout.write(prompt)
    sys.stdout.flush()
    stdin = sys.stdin
    line = stdin._readline(prompt) if isinstance(stdin, _Input) else stdin.readline()
    if not line:
        raise EOFError(stdin.eof_message() if isinstance(stdin, _Input) else "EOF when reading a line")
    return line[:-1] if line.endswith("\n") else line

def set_input(text, ask):
    sys.stdin = sys.__stdin__ = _Input(str(text), ask)
    builtins.input = _input

def display(*objs, **kwargs):
    """Shows each object, in order, as Jupyter would: a figure as a figure, else its _repr_html_,
    else its repr. (IPython's keyword arguments are accepted and ignored.)"""
    for obj in objs:
        _show_value(obj)

def _show_value(value):
    if _is_plotly(value):
        _emit_plotly(value)
        return
    if _is_mpl_figure(value):
        _show_mpl_figure(value)
        return
    html = None
    if not isinstance(value, type) and callable(getattr(type(value), "_repr_html_", None)):
        try:
            html = value._repr_html_()
        except Exception:
            html = None
    if isinstance(html, str) and html:
        _emit("html", _clip(html))
        return
    try:
        text = repr(value)
    except Exception as e:
        text = "<repr() failed: " + type(e).__name__ + ">"
    _emit("result", _clip(text))
`;

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

// A Plotly figure larger than this is not even sent: the page would refuse it (its limit is the
// same, per run).
const MAX_PLOTLY_JSON_CHARS = 5_000_000;

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
      if (json.length > MAX_PLOTLY_JSON_CHARS) post('plotly', { chars: json.length });
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

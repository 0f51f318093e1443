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

#!/usr/bin/env python3
"""The benchmark run: starts every server on 127.0.0.1, loads each the same way, prints a table.

Called by tests/bench/run.sh after it has installed the tools and built the release binaries.
Servers: the bench upstream (direct), nginx as a plain reverse proxy, sandgate (mode off by request
header, link mode rewriting JSON and SSE), LiteLLM's proxy with the `openai/` provider. Load: oha at
fixed rates, wrk at maximum throughput, bench-client for streams (time to first byte, per-event
latency, with the CPU each server spends per event) and for 1,000 and 10,000 streams held open.
Every wait has a deadline; every process started here is
stopped here, by its id.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REL = os.path.join(ROOT, "target", "release")
OUT = os.path.join(ROOT, "target", "bench")
OHA = os.path.join(ROOT, "target", "bench-tools", "bin", "oha")
VENV = os.path.join(ROOT, "target", "bench-venv")
PATH_CHAT = "/v1/chat/completions"

# LiteLLM refuses to start without a master key; every server gets the same bearer token.
KEY = "sk-bench-" + os.urandom(24).hex()
AUTH = f"authorization: Bearer {KEY}"

STARTED = []  # (name, Popen) of every process started here


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name, argv, env=None, new_session=False):
    logf = open(os.path.join(OUT, f"{name}.log"), "wb")
    p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         env=env, start_new_session=new_session)
    STARTED.append((name, p))
    return p


def stop_all():
    for name, p in reversed(STARTED):
        if p.poll() is None:
            try:
                if name.startswith("litellm"):
                    os.killpg(p.pid, signal.SIGTERM)  # its own session: uvicorn and its workers
                else:
                    p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    for name, p in reversed(STARTED):
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            try:
                if name.startswith("litellm"):
                    os.killpg(p.pid, signal.SIGKILL)
                else:
                    p.kill()
            except ProcessLookupError:
                pass


def stop_one(name):
    """Stops one started process by its name (its memory is read by then), so that it does not
    take CPU or memory from the runs after it."""
    for n, p in STARTED:
        if n == name and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def post(url, body, headers=None, timeout=5.0):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json", "authorization": f"Bearer {KEY}",
                                          **(headers or {})})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def wait_ready(name, url, proc, limit):
    """Polls a JSON chat request until it answers 200, at most `limit` seconds."""
    deadline = time.monotonic() + limit
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: {name} exited with {proc.returncode}; see target/bench/{name}.log")
        try:
            status, _ = post(url + PATH_CHAT, {"model": "bench-plain", "messages": []})
            if status == 200:
                return
        except Exception as e:  # noqa: BLE001 - not up yet
            last = e
        time.sleep(0.2)
    raise SystemExit(f"bench: {name} not ready after {limit} s ({last}); see target/bench/{name}.log")


def status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid):
    """Every descendant of a process (from /proc/*/stat)."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(pid):
    """User plus system CPU time of a process and its descendants, in seconds."""
    total = 0
    for p in children(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        except (OSError, ValueError, IndexError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid):
    """VmHWM summed over a process and its descendants (nginx workers, uvicorn workers), in MB."""
    return sum(status_kb(p, "VmHWM") for p in children(pid)) / 1024


def run_cmd(argv, limit):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=limit, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        log(f"{argv[0]} exited {r.returncode}: {r.stderr.strip()[-500:]}")
    return r.stdout


def oha_rate(url, body_file, headers, rate, seconds):
    argv = [OHA, "--no-tui", "--output-format", "json", "-z", f"{seconds}s", "-q", str(rate),
            "-c", "64", "-m", "POST", "-T", "application/json", "-D", body_file,
            "--latency-correction", "--wait-ongoing-requests-after-deadline"]
    for h in [AUTH] + headers:
        argv += ["-H", h]
    argv.append(url + PATH_CHAT)
    out = run_cmd(argv, seconds + 60)
    try:
        j = json.loads(out)
    except json.JSONDecodeError:
        return None
    codes = j.get("statusCodeDistribution", {})
    ok = codes.get("200", 0)
    bad = sum(v for k, v in codes.items() if k != "200") + sum(j.get("errorDistribution", {}).values())
    lat = j.get("latencyPercentiles", {})
    return {
        "rps": j["summary"].get("requestsPerSec", 0.0),
        "p50": (lat.get("p50") or 0) * 1000,
        "p99": (lat.get("p99") or 0) * 1000,
        "ok": ok,
        "errors": bad,
    }


def wrk_max(url, lua, seconds, conns):
    out = run_cmd(["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", lua,
                   url + PATH_CHAT], seconds + 60)
    res = {"rps": 0.0, "p50": 0.0, "p99": 0.0, "errors": 0}

    def ms(v):
        for unit, f in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
            if v.endswith(unit):
                return float(v[: -len(unit)]) * f
        return float(v)

    for line in out.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            res["rps"] = float(parts[1])
        elif len(parts) == 2 and parts[0] == "50%":
            res["p50"] = ms(parts[1])
        elif len(parts) == 2 and parts[0] == "99%":
            res["p99"] = ms(parts[1])
        elif line.strip().startswith("Non-2xx"):
            res["errors"] += int(parts[-1])
        elif line.strip().startswith("Socket errors"):
            res["errors"] += sum(int(x.strip(",")) for x in parts[3::2] if x.strip(",").isdigit())
    return res


def client_stream(url, model, headers, requests, conc, limit):
    argv = [os.path.join(REL, "examples", "bench-client"), "stream", "--url", url + PATH_CHAT,
            "--model", model, "--requests", str(requests), "--concurrency", str(conc),
            "--timeout-s", str(limit)]
    for h in [AUTH] + headers:
        argv += ["--header", h]
    out = run_cmd(argv, limit + 30)
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        return None


def median_of(runs):
    """The median of each figure over the rounds (None when every round failed)."""
    if not runs:
        return None
    out = {}
    for key in runs[0]:
        vals = sorted(r[key] for r in runs if r.get(key) is not None)
        out[key] = vals[len(vals) // 2] if vals else None
    out["rounds"] = len(runs)
    return out


def fmt(v, digits=2):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def machine_state():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = open("/proc/loadavg").read().split()[:3]
    mem = status_mem()
    return (f"{os.cpu_count()} CPUs ({cpu}), {mem} MB RAM, load average {' '.join(load)} at start, "
            f"Linux {platform.release()}")


def status_mem():
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1]) // 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="short runs (about 4 minutes)")
    ap.add_argument("--latency-ms", type=int, default=0, help="fixed upstream latency")
    ap.add_argument("--no-litellm", action="store_true")
    a = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    seconds = 3 if a.quick else 5
    rounds = 2 if a.quick else 3
    rates = [200, 1000] if a.quick else [200, 1000, 2000]
    stream_requests = 200 if a.quick else 1000
    hold_streams = 1000
    many_streams = 10000
    state = machine_state()
    log(state)

    up_port, up_hold_port, ng_port, sg_port, sg_hold_port, ll_port = (free_port() for _ in range(6))
    up = f"http://127.0.0.1:{up_port}"
    start("upstream", [os.path.join(REL, "examples", "bench-upstream"), "--listen", f"127.0.0.1:{up_port}",
                       "--latency-ms", str(a.latency_ms), "--events", "20", "--interval-ms", "2"])
    # The upstream for held streams: 60 events 100 ms apart, so every stream lasts about 6 s.
    start("upstream-hold", [os.path.join(REL, "examples", "bench-upstream"), "--listen",
                            f"127.0.0.1:{up_hold_port}", "--events", "60", "--interval-ms", "100"])

    ngdir = os.path.join(OUT, "nginx")
    os.makedirs(ngdir, exist_ok=True)
    with open(os.path.join(ngdir, "nginx.conf"), "w") as f:
        f.write(f"""daemon off;
worker_processes auto;
pid {ngdir}/nginx.pid;
error_log {ngdir}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {ngdir}/body;
    proxy_temp_path {ngdir}/proxy;
    fastcgi_temp_path {ngdir}/fastcgi;
    uwsgi_temp_path {ngdir}/uwsgi;
    scgi_temp_path {ngdir}/scgi;
    upstream bench {{ server 127.0.0.1:{up_port}; keepalive 256; }}
    server {{
        listen 127.0.0.1:{ng_port};
        location / {{
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
""")
    ng = start("nginx", ["nginx", "-c", os.path.join(ngdir, "nginx.conf"), "-p", ngdir])

    sandgate_bin = os.path.join(REL, "sandgate")
    sg_url = f"http://127.0.0.1:{sg_port}"

    def sandgate(name, port, upstream_port):
        return start(name, [sandgate_bin, "serve", "--listen", f"127.0.0.1:{port}",
                            "--upstream", f"http://127.0.0.1:{upstream_port}/v1",
                            "--public-url", f"http://127.0.0.1:{port}", "--mode", "link",
                            "--set", "log_level=warn"])

    sg = sandgate("sandgate", sg_port, up_port)

    ll = None
    ll_url = f"http://127.0.0.1:{ll_port}"
    litellm_bin = os.path.join(VENV, "bin", "litellm")
    if not a.no_litellm and os.path.exists(litellm_bin):
        cfg = os.path.join(OUT, "litellm.yaml")
        with open(cfg, "w") as f:
            f.write("model_list:\n")
            for m in ("bench-plain", "bench-python"):
                f.write(f"  - model_name: {m}\n    litellm_params:\n      model: openai/{m}\n"
                        f"      api_base: {up}/v1\n      api_key: sk-bench\n")
            f.write("litellm_settings:\n  telemetry: false\n  drop_params: true\n")
        env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_TELEMETRY="False",
                   LITELLM_LOG="ERROR", LITELLM_MASTER_KEY=KEY, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        ll = start("litellm", [litellm_bin, "--config", cfg, "--host", "127.0.0.1", "--port", str(ll_port),
                               "--num_workers", "1"], env=env, new_session=True)
    elif not a.no_litellm:
        log("LiteLLM is not installed (tests/bench/install.sh installs it); its rows are left out")

    procs = {"upstream": (up, STARTED[0][1])}
    wait_ready("upstream", up, STARTED[0][1], 10)
    wait_ready("nginx", f"http://127.0.0.1:{ng_port}", ng, 10)
    wait_ready("sandgate", sg_url, sg, 10)
    if ll is not None:
        wait_ready("litellm", ll_url, ll, 180)
    del procs

    off = ["x-sandgate-mode: off"]
    json_targets = [
        ("direct", up, [], None),
        ("nginx", f"http://127.0.0.1:{ng_port}", [], ng),
        ("sandgate, mode off", sg_url, off, sg),
        ("sandgate, JSON rewritten", sg_url, [], sg),
    ]
    if ll is not None:
        json_targets.append(("LiteLLM", ll_url, [], ll))

    body_file = os.path.join(OUT, "body.json")
    with open(body_file, "w") as f:
        json.dump({"model": "bench-python", "messages": [{"role": "user", "content": "Squares in Python?"}]}, f)

    # Warm every path once (connection pools, lazy initialisation).
    for name, url, headers, _ in json_targets:
        hdrs = dict(h.split(": ", 1) for h in headers)
        for _ in range(20):
            try:
                post(url + PATH_CHAT, {"model": "bench-python", "messages": []}, hdrs)
            except Exception as e:  # noqa: BLE001
                log(f"warm-up of {name} failed: {e}")
                break

    results = {"state": state, "rates": {}, "max": {}, "streams": {}, "rss": {}, "hold": None,
               "many": None}
    # Rounds interleave the servers, so that a burst from another process on this shared machine
    # falls on one round of one server; each figure is the median over the rounds. LiteLLM, far
    # slower, runs in the first round only.
    def rounds_of(name):
        return 1 if name == "LiteLLM" else rounds

    if not os.access(OHA, os.X_OK):
        log("oha is not installed (tests/bench/install.sh installs it); the fixed-rate rows are left out")
        rates = []
    for rate in rates:
        runs = {}
        for k in range(rounds):
            for name, url, headers, proc in json_targets:
                if k >= rounds_of(name):
                    continue
                log(f"oha {rate} rps for {seconds} s, round {k + 1}: {name}")
                # The CPU the server (the upstream, for direct) spends per request at this rate.
                pid = (proc or STARTED[0][1]).pid
                cpu0 = cpu_seconds(pid)
                r = oha_rate(url, body_file, headers, rate, seconds)
                if r is not None:
                    r["cpu_us"] = (cpu_seconds(pid) - cpu0) * 1e6 / max(r["ok"], 1)
                    runs.setdefault(name, []).append(r)
        results["rates"][str(rate)] = {n: median_of(runs.get(n, [])) for n, *_ in json_targets}

    runs = {}
    for k in range(rounds):
        for name, url, headers, _ in json_targets:
            if k >= rounds_of(name):
                continue
            lua = os.path.join(OUT, f"wrk-{len(headers)}.lua")
            with open(lua, "w") as f:
                f.write('wrk.method = "POST"\nwrk.body = \'{"model":"bench-python","messages":[{"role":"user",'
                        '"content":"Squares in Python?"}]}\'\nwrk.headers["Content-Type"] = "application/json"\n')
                for h in [AUTH] + headers:
                    k2, v = h.split(": ", 1)
                    f.write(f'wrk.headers["{k2}"] = "{v}"\n')
            log(f"wrk max throughput for {seconds} s, round {k + 1}: {name}")
            runs.setdefault(name, []).append(wrk_max(url, lua, seconds, 64))
    results["max"] = {n: median_of(runs.get(n, [])) for n, *_ in json_targets}

    stream_targets = [
        ("direct", up, [], None),
        ("nginx", f"http://127.0.0.1:{ng_port}", [], ng),
        ("sandgate, mode off", sg_url, off, sg),
        ("sandgate, SSE rewritten", sg_url, [], sg),
    ]
    if ll is not None:
        stream_targets.append(("LiteLLM", ll_url, [], ll))
    # Rounds interleave the servers, as above; each figure is the median over the rounds. The CPU a
    # server spends per forwarded event is its user + system time during the run over the events
    # the client received (for direct: the upstream's own).
    runs = {}
    for k in range(rounds):
        for name, url, headers, proc in stream_targets:
            if k >= rounds_of(name):
                continue
            log(f"{stream_requests} streams (22 events, 2 ms apart), 8 at a time, round {k + 1}: {name}")
            pid = (proc or STARTED[0][1]).pid
            cpu0 = cpu_seconds(pid)
            r = client_stream(url, "bench-python", headers, stream_requests, 8, 120)
            if r is not None:
                r["cpu_us_per_event"] = (cpu_seconds(pid) - cpu0) * 1e6 / max(r["events"], 1)
                r.pop("first_error", None)
                runs.setdefault(name, []).append(r)
    results["streams"] = {n: median_of(runs.get(n, [])) for n, *_ in stream_targets}

    for name, p in (("nginx", ng), ("sandgate", sg), ("LiteLLM", ll)):
        if p is not None:
            results["rss"][name] = peak_rss_mb(p.pid)

    # 1,000 streams held open through a fresh sandgate.
    sgh = sandgate("sandgate-hold", sg_hold_port, up_hold_port)
    wait_ready("sandgate-hold", f"http://127.0.0.1:{sg_hold_port}", sgh, 10)
    log(f"{hold_streams} streams held open through sandgate")
    out = run_cmd([os.path.join(REL, "examples", "bench-client"), "hold", "--url",
                   f"http://127.0.0.1:{sg_hold_port}{PATH_CHAT}", "--model", "bench-python", "--streams",
                   str(hold_streams), "--pid", str(sgh.pid), "--timeout-s", "60", "--header", AUTH], 120)
    try:
        results["hold"] = json.loads(out)
    except json.JSONDecodeError:
        results["hold"] = None
    stop_one("sandgate-hold")

    # 10,000 streams held open through another fresh sandgate, on an upstream that sends an event a
    # second (so that the run measures what open streams hold, not 100,000 events a second). Each
    # stream takes two of sandgate's file descriptors (the client's connection and the upstream's):
    # when the hard limit (`ulimit -Hn`, which run.sh raises where it may) cannot hold that many,
    # the run opens as many as it can and says so.
    fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    many = min(many_streams, (fd_limit - 64) // 2) if fd_limit > 0 else many_streams
    if many < many_streams:
        log(f"open files limited to {fd_limit}: {many} streams instead of {many_streams}")
    up_many_port, sg_many_port = free_port(), free_port()
    start("upstream-many", [os.path.join(REL, "examples", "bench-upstream"), "--listen",
                            f"127.0.0.1:{up_many_port}", "--events", "20", "--interval-ms", "1000"])
    sgm = sandgate("sandgate-many", sg_many_port, up_many_port)
    wait_ready("sandgate-many", f"http://127.0.0.1:{sg_many_port}", sgm, 10)
    log(f"{many} streams held open through sandgate")
    out = run_cmd([os.path.join(REL, "examples", "bench-client"), "hold", "--url",
                   f"http://127.0.0.1:{sg_many_port}{PATH_CHAT}", "--model", "bench-python", "--streams",
                   str(many), "--pid", str(sgm.pid), "--timeout-s", "120", "--header", AUTH], 200)
    try:
        results["many"] = json.loads(out)
        results["many"]["wanted"] = many_streams
        results["many"]["fd_limit"] = fd_limit
    except json.JSONDecodeError:
        results["many"] = None
    stop_one("sandgate-many")

    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    table = report(results, rates, seconds, rounds, stream_requests, a.latency_ms)
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write(table)
    print(table)


def report(r, rates, seconds, rounds, stream_requests, latency_ms):
    lines = [f"Machine: {r['state']}. Upstream latency {latency_ms} ms. Load runs of {seconds} s, "
             f"median of {rounds} interleaved rounds (LiteLLM: one); everything on 127.0.0.1.", ""]
    direct = {}
    lines.append("**JSON requests** (`POST /v1/chat/completions`, an answer with a Python block; "
                 "latency in ms; added = minus direct at the same rate)")
    lines.append("")
    lines.append("| load | server | rps | p50 | p99 | added p50 | added p99 | CPU µs/req | errors |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for rate in rates:
        rows = r["rates"].get(str(rate), {})
        d = rows.get("direct")
        for name, v in rows.items():
            if v is None:
                lines.append(f"| {rate} rps | {name} | failed | | | | | | |")
                continue
            ap50 = v["p50"] - d["p50"] if d else None
            ap99 = v["p99"] - d["p99"] if d else None
            lines.append(f"| {rate} rps | {name} | {v['rps']:.0f} | {v['p50']:.3f} | {v['p99']:.3f} | "
                         f"{fmt(ap50, 3)} | {fmt(ap99, 3)} | {fmt(v.get('cpu_us'), 0)} | {v['errors']} |")
    ng = r["max"].get("nginx")
    direct = r["max"].get("direct")
    for name, v in r["max"].items():
        if v is None:
            continue
        ratio = v["rps"] / ng["rps"] if ng and ng["rps"] else None
        ap50 = v["p50"] - direct["p50"] if direct else None
        ap99 = v["p99"] - direct["p99"] if direct else None
        lines.append(f"| max (wrk, 64 conns) | {name} | {v['rps']:.0f} ({fmt(ratio)}× nginx) | "
                     f"{v['p50']:.3f} | {v['p99']:.3f} | {fmt(ap50, 3)} | {fmt(ap99, 3)} | | {v['errors']} |")
    lines.append("")
    lines.append("")
    lines.append("CPU µs/req: user + system CPU time of the server's processes during the run, per "
                 "request (for direct: the upstream's own).")
    lines.append("")
    lines.append(f"**Streams** ({stream_requests} streaming requests, 8 at a time, each 22 events 2 ms apart; "
                 "time to first byte and per-event latency in ms)")
    lines.append("")
    lines.append("| server | streams/s | TTFB p50 | TTFB p99 | added TTFB p50 | event p50 | event p99 | "
                 "added event p50 | CPU µs/event (× nginx) | errors |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    sd = r["streams"].get("direct")
    sn = r["streams"].get("nginx")
    for name, v in r["streams"].items():
        if v is None:
            lines.append(f"| {name} | failed | | | | | | | | |")
            continue
        at = (v["ttfb_p50_us"] - sd["ttfb_p50_us"]) / 1000 if sd else None
        ae = (v["event_p50_us"] - sd["event_p50_us"]) / 1000 if sd and v["events"] else None
        ev50 = v["event_p50_us"] / 1000 if v["events"] else None
        ev99 = v["event_p99_us"] / 1000 if v["events"] else None
        cpu = v.get("cpu_us_per_event")
        ratio = cpu / sn["cpu_us_per_event"] if sn and sn.get("cpu_us_per_event") and cpu is not None else None
        lines.append(f"| {name} | {v['rps']:.0f} | {v['ttfb_p50_us'] / 1000:.3f} | "
                     f"{v['ttfb_p99_us'] / 1000:.3f} | {fmt(at, 3)} | {fmt(ev50, 3)} | {fmt(ev99, 3)} | "
                     f"{fmt(ae, 3)} | {fmt(cpu, 1)} ({fmt(ratio)}×) | {v['errors'] + v['incomplete']} |")
    lines.append("")
    lines.append("CPU µs/event: user + system CPU time of the server's processes during the run over the "
                 "timestamped events the client received (22 a stream; for direct: the upstream's own).")
    lines.append("")
    lines.append("**Memory** (peak RSS, VmHWM, summed over the server's processes, after all the runs above)")
    lines.append("")
    lines.append("| server | peak RSS MB |")
    lines.append("|---|---:|")
    for name, mb in r["rss"].items():
        lines.append(f"| {name} | {mb:.1f} |")
    h = r.get("hold")
    if h:
        lines.append(f"| sandgate, {h['open']} of {h['streams']} streams open at once | "
                     f"{h['rss_open_kb'] / 1024:.1f} (idle {h['rss_before_kb'] / 1024:.1f}, peak "
                     f"{h['hwm_kb'] / 1024:.1f}; {h['done']} ended with [DONE], {h['errors']} errors) |")
    m = r.get("many")
    if m:
        per = (m["rss_open_kb"] - m["rss_before_kb"]) / max(m["open"], 1)
        cut = "" if m["streams"] >= m["wanted"] else f", cut from {m['wanted']} by the open-files limit {m['fd_limit']}"
        lines.append(f"| sandgate, {m['open']} of {m['streams']} streams open at once{cut} | "
                     f"{m['rss_open_kb'] / 1024:.1f} (idle {m['rss_before_kb'] / 1024:.1f}, peak "
                     f"{m['hwm_kb'] / 1024:.1f}, {per:.1f} KB a stream; {m['done']} ended with [DONE], "
                     f"{m['errors']} errors; all open after {m['open_after_ms']} ms) |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()

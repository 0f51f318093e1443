#!/usr/bin/env python3
"""Where each held stream's bytes go: sandgate built with the system allocator (the
`system-allocator` feature) runs under heaptrack while bench-client holds `--streams` streams open
on an upstream that sends an event a second; then heaptrack's peak consumers go to
target/bench/heap.txt and the largest are printed, each divided by the streams.

Called by tests/bench/heap.sh after it has built the binaries. Every wait has a deadline; every
process started here is stopped here, by its id.
"""

import argparse
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REL = os.path.join(ROOT, "target", "release")
HEAP_BIN = os.path.join(ROOT, "target", "bench-heap", "release", "sandgate")
OUT = os.path.join(ROOT, "target", "bench")
PATH_CHAT = "/v1/chat/completions"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_pid(exe, limit):
    """The process running `exe` (heaptrack starts it as a child of its own script)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for d in glob.glob("/proc/[0-9]*"):
            try:
                if os.readlink(d + "/exe") == exe:
                    return int(d.rsplit("/", 1)[1])
            except OSError:
                pass
        time.sleep(0.1)
    raise SystemExit(f"heap: {exe} did not start within {limit} s")


def wait_port(port, limit):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"heap: nothing listens on {port} after {limit} s")


def readable(frame):
    """A symbol as heaptrack prints it (legacy mangling escapes, a hash suffix) made readable."""
    for esc, ch in (("$LT$", "<"), ("$GT$", ">"), ("$C$", ","), ("$u20$", " "), ("$u7b$", "{"),
                    ("$u7d$", "}"), ("$RF$", "&"), ("$BP$", "*"), ("..", "::")):
        frame = frame.replace(esc, ch)
    head, _, tail = frame.rpartition("::h")
    if head and len(tail) == 16 and all(c in "0123456789abcdef" for c in tail):
        frame = head
    return frame.lstrip("_")


def consumers(text, streams, top):
    """The first `top` peak consumers of heaptrack_print's output: (KB a stream, calls, frames)."""
    units = {"B": 1 / 1024, "K": 1, "M": 1024, "G": 1024 * 1024}
    out, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        parts = line.split()
        if "peak memory consumed over" in line and parts and parts[0][-1] in units:
            kb = float(parts[0][:-1]) * units[parts[0][-1]]
            frames = [readable(l.strip()) for l in lines[i + 1:i + 12]
                      if l.strip() and not l.strip().startswith(("at ", "in ", "0x"))
                      and "consumed over" not in l][:4]
            out.append((kb / streams, parts[-3], frames))
            if len(out) == top:
                break
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--off", action="store_true", help="the x-sandgate-mode: off header")
    ap.add_argument("--top", type=int, default=12)
    a = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    data = os.path.join(OUT, "heaptrack")
    for old in glob.glob(data + ".*"):
        os.remove(old)
    up_port, sg_port = free_port(), free_port()
    started = []
    try:
        started.append(subprocess.Popen(
            [os.path.join(REL, "examples", "bench-upstream"), "--listen", f"127.0.0.1:{up_port}",
             "--events", "20", "--interval-ms", "1000"], stdout=subprocess.DEVNULL))
        started.append(subprocess.Popen(
            ["heaptrack", "-o", data, HEAP_BIN, "serve", "--listen", f"127.0.0.1:{sg_port}",
             "--upstream", f"http://127.0.0.1:{up_port}/v1", "--public-url",
             f"http://127.0.0.1:{sg_port}", "--mode", "link", "--set", "log_level=warn"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(OUT, "heap.log"), "wb")))
        pid = find_pid(os.path.realpath(HEAP_BIN), 30)
        wait_port(sg_port, 30)
        argv = [os.path.join(REL, "examples", "bench-client"), "hold", "--url",
                f"http://127.0.0.1:{sg_port}{PATH_CHAT}", "--model", "bench-python", "--streams",
                str(a.streams), "--pid", str(pid), "--timeout-s", "120", "--header",
                "authorization: Bearer bench"]
        if a.off:
            argv += ["--header", "x-sandgate-mode: off"]
        held = json.loads(subprocess.run(argv, capture_output=True, text=True, timeout=240).stdout)
        os.kill(pid, signal.SIGTERM)
        started[1].wait(timeout=120)
    finally:
        for p in started:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
    files = glob.glob(data + ".zst") + glob.glob(data + ".gz")
    if not files:
        raise SystemExit("heap: heaptrack wrote nothing; see target/bench/heap.log")
    report = subprocess.run(["heaptrack_print", "-f", files[0], "--print-peaks", "1",
                             "--print-allocators", "0", "--print-leaks", "0", "--print-temporary",
                             "0", "-n", "40", "-s", "6"], capture_output=True, text=True,
                            timeout=300).stdout
    with open(os.path.join(OUT, "heap.txt"), "w") as f:
        f.write(report)
    n = max(held["open"], 1)
    per = (held["rss_open_kb"] - held["rss_before_kb"]) / n
    print(f"{held['open']} of {held['streams']} streams open, {held['done']} ended with [DONE], "
          f"{held['errors']} errors; resident {held['rss_open_kb'] / 1024:.1f} MB (idle "
          f"{held['rss_before_kb'] / 1024:.1f}), {per:.1f} KB a stream (system allocator, under heaptrack)")
    for line in report.splitlines():
        if line.startswith("peak heap memory consumption"):
            print(line)
    print("largest peak consumers, KB a stream (whole traces in target/bench/heap.txt):")
    for kb, calls, frames in consumers(report, n, a.top):
        print(f"{kb:8.2f} KB  {calls:>7} calls  " + "  <-  ".join(f[:100] for f in frames[:3]))


if __name__ == "__main__":
    main()

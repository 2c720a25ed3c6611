#!/usr/bin/env python3
"""Cold starts of Herald's function binaries as Lambda runs them.

A small stand-in for the Lambda Runtime API: each binary is started with AWS_LAMBDA_RUNTIME_API
pointing here; we time process start to its first `GET /runtime/invocation/next` (init) and to
its first response (init + first invocation), and read its peak RSS (VmHWM) before stopping it.

Usage: runtime_api.py --bin-dir target/release --events scripts/coldstart/events.json \
           [--runs 10] [--env KEY=VALUE ...]
Prints one line per function and a summary; exits non-zero if a function fails to answer.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Invocation:
    def __init__(self, event):
        self.event = event
        self.request_id = str(uuid.uuid4())
        self.served = False
        self.next_at = None
        self.done_at = None
        self.outcome = None
        self.body = b""
        self.done = threading.Event()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _reply(self, status, body=b"", headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        inv = self.server.inv
        if self.path.endswith("/runtime/invocation/next") and inv is not None:
            now = time.perf_counter()
            if inv.served:
                # A second /next after the response: hold it until the process is stopped.
                inv.done.wait(30)
                self._reply(410)
                return
            inv.next_at = now
            inv.served = True
            deadline = int(time.time() * 1000) + 30000
            self._reply(200, json.dumps(inv.event).encode(), {
                "Content-Type": "application/json",
                "Lambda-Runtime-Aws-Request-Id": inv.request_id,
                "Lambda-Runtime-Deadline-Ms": str(deadline),
                "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:000000000000:function:herald",
                "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000;Sampled=0",
            })
            return
        self._reply(404)

    def do_POST(self):
        inv = self.server.inv
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if inv is not None and (self.path.endswith("/response") or self.path.endswith("/error")):
            inv.done_at = time.perf_counter()
            inv.outcome = "response" if self.path.endswith("/response") else "error"
            inv.body = body
            self._reply(202, b'{"status":"OK"}')
            inv.done.set()
            return
        if inv is not None and self.path.endswith("/init/error"):
            inv.outcome = "init-error"
            inv.body = body
            self._reply(202, b'{"status":"OK"}')
            inv.done.set()
            return
        self._reply(404)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A stopped function drops its pending /next: expected, not worth a traceback.
        pass


def peak_rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def run_once(binary, event, env):
    # A fresh server (and port) per run: a stopped process's last request cannot reach the next run.
    inv = Invocation(event)
    server = Server(("127.0.0.1", 0), Handler)
    server.inv = inv
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    child_env = dict(env)
    child_env["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{port}"
    start = time.perf_counter()
    proc = subprocess.Popen([binary], env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    finished = inv.done.wait(10)
    rss = peak_rss_kb(proc.pid)
    proc.kill()
    output, _ = proc.communicate(timeout=10)
    inv.done.set()
    server.shutdown()
    server.server_close()
    if not finished or inv.outcome == "init-error":
        raise RuntimeError(f"{os.path.basename(binary)}: no response ({inv.outcome}): {inv.body[:300]!r} {output[-800:]!r}")
    return (inv.next_at - start) * 1000, (inv.done_at - start) * 1000, rss, inv.outcome, inv.body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--only", action="append", default=[])
    args = ap.parse_args()

    # Lambda's environment sets none of the TLS variables some machines do (this one exports
    # SSL_CERT_FILE and SSL_CERT_DIR): inherited, they would make the functions read other files.
    tls_vars = {"SSL_CERT_FILE", "SSL_CERT_DIR", "AWS_CA_BUNDLE"}
    base_env = {k: v for k, v in os.environ.items() if k not in tls_vars}
    base_env.update({
        "AWS_LAMBDA_FUNCTION_NAME": "herald",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_REGION": base_env.get("AWS_REGION", "us-east-1"),
        "RUST_LOG": "warn",
    })
    for kv in args.env:
        k, _, v = kv.partition("=")
        base_env[k] = v

    with open(args.events) as f:
        events = json.load(f)
    failures = 0
    names = [n for n in events if not args.only or n in args.only]
    for name in list(names):
        if not os.path.exists(os.path.join(args.bin_dir, name)):
            print(f"{name:<28} missing binary {os.path.join(args.bin_dir, name)}")
            failures += 1
            names.remove(name)
    # Round robin: run i of every function, then run i + 1, so that whatever else the machine is
    # doing weighs on every function alike (and on the floor), not on the ones that ran during it.
    results = {n: {"inits": [], "firsts": [], "rss": 0, "outcome": None, "body": b"", "error": None} for n in names}
    for _ in range(args.runs):
        for name in names:
            r = results[name]
            if r["error"]:
                continue
            try:
                init_ms, first_ms, rss, r["outcome"], r["body"] = run_once(os.path.join(args.bin_dir, name), events[name], base_env)
            except RuntimeError as e:
                r["error"] = e
                continue
            r["inits"].append(init_ms)
            r["firsts"].append(first_ms)
            r["rss"] = max(r["rss"], rss or 0)
    floor_runs = results.get("herald-coldstart-floor", {}).get("inits")
    floor = statistics.median(floor_runs) if floor_runs else None  # the do-nothing Lambda's init p50
    ratios = []
    print(f"{'function':<28}{'init p50 ms':>12}{'init max ms':>12}{'× floor':>9}{'first resp p50 ms':>19}{'peak RSS MB':>13}{'size MB':>9}  outcome")
    for name in names:
        r = results[name]
        if r["error"]:
            print(f"{name:<28} FAILED: {r['error']}")
            failures += 1
            continue
        size = os.path.getsize(os.path.join(args.bin_dir, name)) / (1024 * 1024)
        summary = r["body"].decode(errors="replace")[:70].replace("\n", " ")
        init = statistics.median(r["inits"])
        ratio = f"{init / floor:>9.2f}" if floor else f"{'-':>9}"
        print(f"{name:<28}{init:>12.2f}{max(r['inits']):>12.2f}{ratio}{statistics.median(r['firsts']):>19.2f}"
              f"{r['rss'] / 1024:>13.1f}{size:>9.2f}  {r['outcome']}: {summary}")
        if floor and name != "herald-coldstart-floor":
            ratios.append((init / floor, name))
    if ratios:
        worst, who = max(ratios)
        print(f"coldstart.floor_init_p50: {floor:.2f} ms")
        print(f"coldstart.worst_ratio: {worst:.2f} ({who}; goal: at most 2.5)")
    print("leaves out: Lambda's own sandbox and image download (Firecracker), the network (a local Runtime API stand-in); "
          "same machine, same run, same profile for every binary, runs interleaved")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

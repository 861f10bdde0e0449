"""A cheap stand-in service for the supervision tests: an HTTP server on a port.

Usage: stand_in.py PORT [--exit-at-once CODE] [--child] [--detached-child] [--spam BYTES]
                   [--serve-after SECONDS]
GET /health answers 200; GET /crash answers, then exits with code 3 (a crash).
--child / --detached-child start a sleeping child (in the same / in its own session).
--spam writes BYTES bytes to stdout first (log rotation); --serve-after waits before it
listens (a slow start). Nothing is written afterwards, so
the process survives a dead supervisord (whose stdout pipe it would write to).
"""

import argparse
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("port", type=int)
parser.add_argument("--exit-at-once", type=int)
parser.add_argument("--child", action="store_true")
parser.add_argument("--detached-child", action="store_true")
parser.add_argument("--spam", type=int, default=0)
parser.add_argument("--serve-after", type=float, default=0.0)
args = parser.parse_args()

if args.exit_at_once is not None:
    print("stand-in failing at once", flush=True)
    sys.exit(args.exit_at_once)
if args.spam:
    line = b"x" * 1023 + b"\n"
    for _ in range(args.spam // 1024):
        sys.stdout.buffer.write(line)
    sys.stdout.flush()
time.sleep(args.serve_after)
print(f"stand-in serving on {args.port}", flush=True)
sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
if args.child:
    subprocess.Popen(sleeper)
if args.detached_child:
    subprocess.Popen(sleeper, start_new_session=True)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")
        if self.path == "/crash":
            threading.Timer(0.1, os._exit, args=(3,)).start()

    def log_message(self, *_: object) -> None:
        pass


ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()

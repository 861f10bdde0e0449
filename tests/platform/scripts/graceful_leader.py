"""A service leader that stops its own child on SIGTERM (like the Spark driver and its JVM).

Usage: graceful_leader.py ORDER_FILE. Each process appends what happened to ORDER_FILE.
"""

import signal
import subprocess
import sys
import time
from pathlib import Path

ORDER = sys.argv[1]
CHILD = """
import signal, sys, time
def bye(*_):
    open(sys.argv[1], "a").write("child got SIGTERM\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
time.sleep(120)
"""


def note(line: str) -> None:
    with Path(ORDER).open("a") as out:
        out.write(line + "\n")


child = subprocess.Popen([sys.executable, "-c", CHILD, ORDER])


def stop(*_: object) -> None:
    note("leader got SIGTERM")
    time.sleep(0.5)  # e.g. finishing a micro-batch
    note("leader stopping child")
    child.terminate()
    child.wait()
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
time.sleep(120)

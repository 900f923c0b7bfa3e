#!/usr/bin/env python3
"""The status page's reader for scripts/bench's packet-page mode: in the
router's namespace, fetches --base/status.json and --base/ once a second each
(one after the other, a new connection each, as a browser tab polling the
page would) until --seconds have passed or SIGTERM. Prints on stdout, when it
ends: "<answered> <failed> <bytes>", the fetches answered 200, the fetches
that failed (refused, timed out, another status) and the bytes of the bodies
answered. Prints "ready" on stderr once a first /status.json was answered."""
import argparse
import signal
import sys
import time
import urllib.request

# Set by SIGTERM: the loop ends within its next second and the counts are
# still printed.
stopped = False


def stop(*_):
    global stopped
    stopped = True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True, help="e.g. http://127.0.0.1:9900")
    p.add_argument("--seconds", type=float, required=True)
    args = p.parse_args()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    answered = failed = size = 0
    ready = False
    start = time.monotonic()
    deadline = start + args.seconds
    tick = start
    while not stopped and time.monotonic() < deadline:
        for path in ("/status.json", "/"):
            try:
                with urllib.request.urlopen(args.base + path, timeout=2) as r:
                    body = r.read()
                    if r.status == 200:
                        answered += 1
                        size += len(body)
                        if not ready and path == "/status.json":
                            ready = True
                            print("ready", file=sys.stderr, flush=True)
                    else:
                        failed += 1
            except Exception:  # refused, timed out, an HTTP error status
                failed += 1
        tick += 1.0
        while not stopped and time.monotonic() < min(tick, deadline):
            time.sleep(min(0.1, max(0.0, tick - time.monotonic())))
    print(f"{answered} {failed} {size}", flush=True)


if __name__ == "__main__":
    main()

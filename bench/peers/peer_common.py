"""The measurement protocol every Python peer follows, identical to fencelock-bench's.

uncontended: acquire (no wait) + release on a fresh name per iteration, one connection,
sequential; prints the latency of each cycle in microseconds.

handoff: WAITERS threads contend for one name. Each loops: acquire (blocking), note the grant,
hold the lock for HOLD_SECS, note the time, release, then wait until somebody else has been
granted before queueing again. A sample is the time from a release call to the next grant.
Mutual exclusion is checked on the way (a grant while another thread holds is an overlap).

Output: one JSON object on stdout: {"library", "samples_us", "elapsed_secs", "overlaps"}.
"""

import argparse
import json
import sys
import threading
import time
import uuid

HOLD_SECS = 0.005


def parse_args():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    u = sub.add_parser("uncontended")
    u.add_argument("--url", required=True)
    u.add_argument("--iterations", type=int, required=True)
    u.add_argument("--warmup", type=int, default=100)
    h = sub.add_parser("handoff")
    h.add_argument("--url", required=True)
    h.add_argument("--waiters", type=int, required=True)
    h.add_argument("--secs", type=float, required=True)
    h.add_argument("--max-handoffs", type=int, required=True)
    return parser.parse_args()


def uncontended(cycle, iterations, warmup):
    """cycle(name) acquires without waiting and releases; returns samples in µs."""
    prefix = "bench/peer/" + uuid.uuid4().hex
    for i in range(warmup):
        cycle(f"{prefix}/w/{i}")
    samples = []
    for i in range(iterations):
        name = f"{prefix}/{i}"
        started = time.perf_counter_ns()
        cycle(name)
        samples.append((time.perf_counter_ns() - started) / 1000.0)
    return samples


def handoff(acquire, release, waiters, secs, max_handoffs):
    """acquire(name) blocks until granted and returns a handle; release(handle) frees it."""
    name = "bench/peer-handoff/" + uuid.uuid4().hex
    cond = threading.Condition()
    state = {"grants": 0, "stop": False, "holding": False, "overlaps": 0}
    limit = max_handoffs + 1
    events = []
    errors = []

    def worker():
        try:
            while True:
                handle = acquire(name)
                granted_at = time.perf_counter_ns()
                with cond:
                    if state["holding"]:
                        state["overlaps"] += 1
                    state["holding"] = True
                    stopping = state["stop"] or state["grants"] >= limit
                    if not stopping:
                        events.append(("g", granted_at))
                        state["grants"] += 1
                        mine = state["grants"]
                    cond.notify_all()
                if stopping:
                    with cond:
                        state["holding"] = False
                    release(handle)
                    return
                time.sleep(HOLD_SECS)
                with cond:
                    events.append(("r", time.perf_counter_ns()))
                    state["holding"] = False
                release(handle)
                with cond:
                    while state["grants"] <= mine and not state["stop"]:
                        cond.wait()
                    if state["stop"] or state["grants"] >= limit:
                        return
        except Exception as e:  # reported, and the run fails
            errors.append(repr(e))
            with cond:
                state["stop"] = True
                cond.notify_all()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(waiters)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    with cond:
        cond.wait_for(lambda: state["grants"] >= limit or state["stop"], timeout=secs)
        state["stop"] = True
        cond.notify_all()
    elapsed = time.perf_counter() - started
    for t in threads:
        t.join(timeout=60)
    if errors:
        raise RuntimeError("; ".join(errors))
    samples = []
    released = None
    for kind, at in events:
        if kind == "r":
            released = at
        elif released is not None:
            samples.append((at - released) / 1000.0)
            released = None
    return samples, elapsed, state["overlaps"]


def emit(library, samples, elapsed=None, overlaps=0):
    json.dump(
        {"library": library, "samples_us": samples, "elapsed_secs": elapsed, "overlaps": overlaps},
        sys.stdout,
    )
    sys.stdout.write("\n")

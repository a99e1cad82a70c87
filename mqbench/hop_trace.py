"""A per-hop timing trace of requests and Raft entries across mqbench's processes, for finding
where a message's publish latency goes: on when ``MQBENCH_HOP_TRACE=DIR`` is set (off by default,
then every call site costs one attribute test).

Why per hop: on a loaded 2-core machine a publish latency of tens of milliseconds mixes queueing
inside a process, waits for the CPU between processes and the Raft round; only timestamps taken
at each hop, on one clock, say which. ``time.monotonic_ns`` is CLOCK_MONOTONIC, one clock for every
process of the machine, so marks of different processes compare directly.

What is marked (``mark(kind, a, b)``; ``a``/``b`` identify the request or the entries):

====  ============================================  =========================================
kind  where                                         a, b
====  ============================================  =========================================
q     client: a request frame queued on a channel   channel key, opaque
w     client: that frame handed to the transport    channel key, opaque
r     server: a request frame read                  channel key, opaque
p     leader: the sends of a read proposed          channel key, opaque
c     leader: their proposal committed and applied  channel key, opaque
o     server: the response queued                   channel key, opaque
x     server: the response handed to the transport  channel key, opaque
a     client: the response read                     channel key, opaque
P     Raft leader: entries proposed                 first index, last index
S     Raft: an APP sent (to peer ``dst``)           dst, last index
R     Raft: an APP read (from peer ``src``)         src, last index
F     Raft: entries appended to the log (Ready)     first index, last index
K     Raft: an APP_RESP read (from ``src``)         src, index
T     Raft: an APP_RESP sent (to ``dst``)           dst, index
C     Raft: committed entries handed to apply       first index, last index
D     Raft: their apply returned                    first index, last index
====  ============================================  =========================================

A channel key is ``"<low port>-<high port>"`` of its TCP connection, the same at both ends.
Output: ``DIR/<name>-<pid>.hops``, one ``kind a b t_ns`` line per mark, appended by a writer
thread every ``WRITE_S`` (never by the loop). ``python -m mqbench.hop_trace DIR`` joins them
(``analyze``) and prints each hop's share of the publish latency.
"""
from __future__ import annotations

import os
import sys
import threading
import time

ENV = "MQBENCH_HOP_TRACE"
WRITE_S = 1.0

#: True once ``start`` ran in a process with ``MQBENCH_HOP_TRACE`` set; call sites test it first.
ON = False
_marks: list[tuple] = []
_now = time.monotonic_ns


def start(name: str) -> bool:
    """Begin tracing this process as ``name`` when ``MQBENCH_HOP_TRACE`` names a folder (module
    doc); False when it is unset. Called once per process after start-up."""
    global ON
    folder = os.environ.get(ENV, "").strip()
    if not folder or ON:
        return ON
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}-{os.getpid()}.hops")
    ON = True
    threading.Thread(target=_writer, args=(path,), name="hop-trace", daemon=True).start()
    return True


def mark(kind: str, a: object, b: object) -> None:
    """Record ``kind`` for (``a``, ``b``) now (only when ``ON``: callers test it)."""
    _marks.append((kind, a, b, _now()))


def channel_key(transport: object) -> str | None:
    """The connection key of a TCP transport (module doc), or None for anything else."""
    get = getattr(transport, "get_extra_info", None)
    if get is None:
        return None
    local, peer = get("sockname"), get("peername")
    if not isinstance(local, tuple) or not isinstance(peer, tuple):
        return None
    low, high = sorted((local[1], peer[1]))
    return f"{low}-{high}"


def _writer(path: str) -> None:
    global _marks
    while True:
        time.sleep(WRITE_S)
        taken, _marks = _marks, []
        if taken:
            with open(path, "a", encoding="utf-8") as out:
                out.write("".join(f"{k} {a} {b} {t}\n" for k, a, b, t in taken))


# -- the analysis ---------------------------------------------------------------------------------

def _load(folder: str) -> dict[str, list[tuple[str, str, str, int]]]:
    files = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".hops"):
            with open(os.path.join(folder, name), encoding="utf-8") as lines:
                files[name[:-5]] = [(k, a, b, int(t)) for k, a, b, t in (line.split() for line in lines)]
    return files


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def analyze(folder: str, skip_s: float = 3.0) -> list[tuple[str, int, float, float, float]]:
    """Rows (hop, count, mean ms, p50 ms, p99 ms) of the sends traced in ``folder``, skipping the
    first ``skip_s`` of marks (start-up, warm-up)."""
    files = _load(folder)
    requests: dict[tuple[str, str], dict[str, int]] = {}
    leader: dict[str, list] = {}
    followers: dict[str, list] = {}
    t0 = min((m[3] for marks in files.values() for m in marks), default=0) + int(skip_s * 1e9)
    for name, marks in files.items():
        for kind, a, b, t in marks:
            if kind in "qwrpcoxa":
                requests.setdefault((a, b), {}).setdefault(kind, t)
        if any(m[0] == "P" for m in marks):
            leader[name] = marks
        elif any(m[0] == "R" for m in marks):
            followers[name] = marks
    rows = []

    def row(label: str, values: list[float]) -> None:
        if values:
            rows.append((label, len(values), sum(values) / len(values), _pct(values, 0.5), _pct(values, 0.99)))

    sends = [h for h in requests.values() if all(k in h for k in "qwrpcoxa") and h["q"] >= t0]
    hops = [("client queue (q->w)", "q", "w"), ("to leader: wire, wake-up, loop (w->r)", "w", "r"),
            ("leader before proposal (r->p)", "r", "p"), ("Raft round + apply (p->c)", "p", "c"),
            ("leader answer built (c->o)", "c", "o"), ("leader answer queued->written (o->x)", "o", "x"),
            ("to client: wire, wake-up, loop (x->a)", "x", "a"), ("publish (q->a)", "q", "a")]
    for label, first, last in hops:
        row(label, [(h[last] - h[first]) / 1e6 for h in sends])
    # Raft entries on the leader: proposed -> first APP sent -> quorum APP_RESP read -> apply
    for name, marks in leader.items():
        proposed: dict[int, int] = {}
        sent: dict[int, int] = {}
        acked: dict[int, int] = {}
        applied: dict[int, tuple[int, int]] = {}
        pend_sent: list = []
        for kind, a, b, t in marks:
            if t < t0:
                continue
            if kind == "P":
                for i in range(int(a), int(b) + 1):
                    proposed[i] = t
            elif kind == "S":
                pend_sent.append((int(b), t))
            elif kind == "K":
                acked.setdefault(int(b), t)
            elif kind == "C":
                for i in range(int(a), int(b) + 1):
                    applied[i] = (t, 0)
            elif kind == "D":
                for i in range(int(a), int(b) + 1):
                    if i in applied:
                        applied[i] = (applied[i][0], t)
        for last, t in pend_sent:
            for i in range(last, 0, -1):
                if i in sent or i not in proposed:
                    break
                sent[i] = t
        acks = sorted(acked.items())
        quorum: dict[int, int] = {}
        j = len(acks) - 1
        best = None
        for i in sorted(proposed, reverse=True):   # earliest APP_RESP covering i
            while j >= 0 and acks[j][0] >= i:
                best = acks[j][1] if best is None else min(best, acks[j][1])
                j -= 1
            if best is not None:
                quorum[i] = best
        ok = [i for i in proposed if i in sent and i in quorum and i in applied and applied[i][1]]
        row(f"[{name}] entry proposed -> APP sent", [(sent[i] - proposed[i]) / 1e6 for i in ok])
        row(f"[{name}] APP sent -> quorum APP_RESP read", [(quorum[i] - sent[i]) / 1e6 for i in ok])
        row(f"[{name}] APP_RESP read -> apply start", [(applied[i][0] - quorum[i]) / 1e6 for i in ok])
        row(f"[{name}] apply", [(applied[i][1] - applied[i][0]) / 1e6 for i in ok])
    for name, marks in followers.items():
        read = [(int(b), t) for k, a, b, t in marks if k == "R" and t >= t0]
        appended = sorted((int(b), t) for k, a, b, t in marks if k == "F" and t >= t0)
        answered = sorted((int(b), t) for k, a, b, t in marks if k == "T" and t >= t0)
        row(f"[{name}] APP read -> appended", _next_after(read, appended))
        row(f"[{name}] APP read -> APP_RESP sent", _next_after(read, answered))
    return rows


def _next_after(starts: list[tuple[int, int]], ends: list[tuple[int, int]]) -> list[float]:
    """For each (index, t) of ``starts``, the time to the first of ``ends`` covering that index."""
    out = []
    import bisect
    idx = [i for i, _ in ends]
    for index, t in starts:
        k = bisect.bisect_left(idx, index)
        if k < len(ends):
            out.append((ends[k][1] - t) / 1e6)
    return out


if __name__ == "__main__":
    for label, count, mean, p50, p99 in analyze(sys.argv[1]):
        print(f"{label:60s} n={count:7d}  mean {mean:7.2f}  p50 {p50:7.2f}  p99 {p99:7.2f} ms")

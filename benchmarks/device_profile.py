"""Top ops of a `jax.profiler` trace, read with jax's own XSpace reader (no TensorFlow, no
XProf): `jax.profiler.ProfileData` over the `*.xplane.pb` the trace wrote.

On a GPU the executed kernels are the events of each device plane's "XLA Ops" line; on a CPU
there is no device plane, and XLA:CPU's thunks (fusions, dots, convolutions) appear as events
on the host threads of the PjRt CPU client, which is what is summarised there (the thread
pool's bookkeeping events and the zero-length "end: ..." markers left out).
"""

from __future__ import annotations

import collections
import pathlib

_HOST_NOISE = ("ThreadpoolListener", "end: ")


def _self_times(events) -> list[tuple[str, float]]:
    """(name, exclusive ns) of one line's events: a container event (an XLA:CPU `while`
    thunk around its body's thunks) keeps only the time none of its children cover, so
    nothing is counted twice."""
    spans = sorted(((e.start_ns, e.end_ns, e.name) for e in events), key=lambda s: (s[0], -s[1]))
    out: list[list] = []
    stack: list[int] = []  # indices into `out` of the open enclosing events
    for start, end, name in spans:
        while stack and out[stack[-1]][2] <= start:
            stack.pop()
        if stack:
            out[stack[-1]][1] -= min(end, out[stack[-1]][2]) - start
        out.append([name, end - start, end])
        stack.append(len(out) - 1)
    return [(name, dur) for name, dur, _ in out]


def _op_events(profile) -> tuple[str, list[tuple[str, float]]]:
    """(source description, [(op name, exclusive duration ns)]) of the executed ops."""
    device_events = []
    for plane in profile.planes:
        if plane.name.startswith("/device:"):
            for line in plane.lines:
                if line.name == "XLA Ops":
                    device_events += _self_times(line.events)
    if device_events:
        return "device planes, XLA Ops lines", device_events
    host_events = []
    for plane in profile.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if "CpuClient" not in line.name and "XLAEigen" not in line.name:
                continue
            # Runtime bookkeeping (C++ scopes such as ThunkExecutor::Execute, the thread
            # pool's events) and zero-length "end: ..." markers are not ops.
            ops = [
                e for e in line.events if not e.name.startswith(_HOST_NOISE) and "::" not in e.name
            ]
            host_events += [(n, d) for n, d in _self_times(ops) if d > 0]
    return "host plane, XLA:CPU thunks (no device plane on a CPU)", host_events


def summarise_trace(trace_dir: pathlib.Path | str, top: int = 15) -> dict:
    """{source, trace_bytes, total_op_ns, top_ops: [{name, total_ns, count, share}], text}."""
    import jax

    files = sorted(pathlib.Path(trace_dir).rglob("*.xplane.pb"))
    if not files:
        return {"error": f"no .xplane.pb under {trace_dir}", "top_ops": []}
    path = files[-1]
    profile = jax.profiler.ProfileData.from_file(str(path))
    source, events = _op_events(profile)
    totals: dict[str, float] = collections.defaultdict(float)
    counts: collections.Counter = collections.Counter()
    for name, dur in events:
        totals[name] += dur
        counts[name] += 1
    total = sum(totals.values())
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:top]
    rows = [
        {"name": name, "total_ns": ns, "count": counts[name], "share": ns / total if total else 0}
        for name, ns in ranked
    ]
    lines = [f"top {len(rows)} ops by time ({source}), {total / 1e6:.2f} ms in all:"]
    lines += [
        f"{r['share'] * 100:6.2f} %  {r['total_ns'] / 1e6:9.3f} ms  x{r['count']:<5d} {r['name']}"
        for r in rows
    ]
    text = "\n".join(lines)
    (pathlib.Path(trace_dir) / "top_ops.txt").write_text(text + "\n")
    return {
        "file": str(path),
        "trace_bytes": path.stat().st_size,
        "source": source,
        "total_op_ns": total,
        "num_events": len(events),
        "top_ops": rows,
        "text": text,
    }

"""Comparison report of runs: pretext metrics (latest eval/step_N.json) and probe IoU
(probe/result.json) per run, as a markdown table and a PNG bar chart."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from etils import epath  # noqa: E402

from mim4d_jax.atomic_files import atomic_path, write_text  # noqa: E402

# (column title, where it comes from, the dotted key inside that file)
COLUMNS = (
    ("depth AbsRel (direct)", "eval", "direct.depth_abs_rel"),
    ("depth AbsRel (predicted)", "eval", "predicted.depth_abs_rel"),
    ("dense depth AbsRel", "eval", "direct.dense_depth_abs_rel"),
    ("PSNR dB (direct)", "eval", "direct.rgb_psnr_db"),
    ("probe IoU@0.5", "probe", "iou"),
    ("probe best IoU", "probe", "best_iou"),
)


def _dig(record: dict | None, dotted: str) -> float | None:
    node = record
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node)


def latest_eval(eval_dir: str | epath.PathLike) -> dict | None:
    """The highest-step step_N.json of an evaluation directory (eval/, eval/blind/, ...), or
    None if it holds none."""
    evals = sorted(
        epath.Path(eval_dir).glob("step_*.json"), key=lambda p: int(p.stem.split("_")[1])
    )
    return json.loads(evals[-1].read_text()) if evals else None


def read_run(workdir: str) -> dict:
    """{"eval": latest evaluation or None, "probe": probe result or None, "eval_step": N}."""
    root = epath.Path(workdir)
    if not root.exists():
        raise FileNotFoundError(f"run directory {workdir} does not exist")
    probe = root / "probe" / "result.json"
    record = {
        "eval": latest_eval(root / "eval"),
        "probe": json.loads(probe.read_text()) if probe.exists() else None,
    }
    if record["eval"] is None and record["probe"] is None:
        raise ValueError(f"{workdir} holds neither eval/step_*.json nor probe/result.json")
    return record


def table(runs: dict[str, dict]) -> str:
    """Markdown table, one row per run; '-' where a run lacks a metric."""
    header = "| run | " + " | ".join(title for title, _, _ in COLUMNS) + " |"
    lines = [header, "|---" * (len(COLUMNS) + 1) + "|"]
    for name, record in runs.items():
        cells = []
        for _, source, key in COLUMNS:
            value = _dig(record[source], key)
            cells.append("-" if value is None else f"{value:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def bar_chart(runs: dict[str, dict], path: epath.Path) -> None:
    """One panel per metric with any value, one bar per run."""
    shown = [
        (t, s, k) for t, s, k in COLUMNS if any(_dig(r[s], k) is not None for r in runs.values())
    ]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.4), squeeze=False)
    names = list(runs)
    colours = plt.get_cmap("tab10")(np.arange(len(names)) % 10)
    for ax, (title, source, key) in zip(axes[0], shown):
        values = [_dig(runs[n][source], key) for n in names]
        ax.bar(names, [np.nan if v is None else v for v in values], color=colours)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), dpi=90)
    plt.close(fig)


def write_report(runs: dict[str, str], out: str) -> str:
    """Writes OUT (markdown) and OUT with .png (bar chart); returns the markdown."""
    records = {name: read_run(workdir) for name, workdir in runs.items()}
    out_path = epath.Path(out)
    chart = out_path.parent / (out_path.stem + ".png")
    bar_chart(records, chart)
    text = "# Run comparison\n\n" + table(records) + f"\n![metrics]({chart.name})\n\n"
    text += "Runs:\n" + "".join(f"- {name}: `{workdir}`\n" for name, workdir in runs.items())
    write_text(out_path, text)
    return text

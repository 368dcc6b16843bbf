"""benchmarks/objectives.py's bookkeeping: run names to trainer flags, which runs get the
pretext score, and the results table (last line of a run and seed wins)."""

from __future__ import annotations

import json

import pytest

from benchmarks import objectives


def test_run_names_become_objective_weights_and_overrides():
    assert objectives._overrides("mim4d+croco@croco.mask_ratio=0.75") == [
        "--config.objectives.mim4d=1.0",
        "--config.objectives.croco=1.0",
        "--config.objectives.pointcontrast=0.0",
        "--config.croco.mask_ratio=0.75",
    ]
    with pytest.raises(SystemExit, match="unknown objective"):
        objectives._overrides("mim4d+mae")


def test_only_runs_that_train_the_renderer_get_a_pretext_score():
    assert objectives.trains_renderer("mim4d")
    assert objectives.trains_renderer("mim4d+pointcontrast")
    assert objectives.trains_renderer("mim4d@ablation.blind_images=True")
    assert not objectives.trains_renderer("croco")
    assert not objectives.trains_renderer("pointcontrast")
    assert not objectives.trains_renderer("random")


def test_table_keeps_the_last_record_of_a_run_and_orders_the_yardstick_first(tmp_path):
    probe = {"iou": 0.05, "best_iou": 0.12, "fit_iou": 0.1, "fit_best_iou": 0.2}
    pretrained = {"steps": 237, "schedule_steps": 250, "s_per_step": 2.49}
    pretrained |= {"loss_first": 8.1, "loss_last": 3.1}
    records = [
        {"run": "random", "seed": 0, "probe": {**probe, "best_iou": 0.1}},
        {"run": "mim4d", "seed": 0, **pretrained, "probe": probe},
        # A rerun added the pretext score: this line replaces the one above.
        {"run": "mim4d", "seed": 0, **pretrained, "probe": probe, "depth_abs_rel": 0.2755},
    ]
    records[-1]["own_over_shuffled"] = 0.676
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    lines = objectives.table(tmp_path).splitlines()
    assert lines[0].split(" | ")[-3:] == ["probe best IoU", "IoU@0.5", "fit best IoU |"]
    assert len(lines) == 4  # header, rule, mim4d (once), random: in DEFAULT_RUNS order
    assert lines[2] == (
        "| mim4d | 0 | 237 / 250 | 2.49 | 8.100 -> 3.100 | 0.276 | 0.676"
        " | 0.1200 | 0.0500 | 0.2000 |"
    )
    assert lines[3].startswith("| random | 0 | - | - | - | - | - | 0.1000 |")

"""Training observability: console progress line, metrics.jsonl, TensorBoard scalars/images.

Metrics are fetched ONE STEP LATE: the loop hands over step i's device metrics, and they are
read only after step i+1 has been dispatched, so the host never waits for the device to
drain before queueing more work. Every step's scalars are read (they are tiny and the NaN
check needs each one); they are written every `log_every` steps, by process 0 only.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import numpy as np
from absl import logging


def _to_image_batch(array: np.ndarray) -> np.ndarray:
    """Any (H, W), (H, W, C) or (B, H, W, C) render -> (B, H, W, C) in [0, 1] for TensorBoard."""
    image = np.asarray(array, np.float32)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim == 3:
        image = image[None]
    image = image.reshape((-1,) + image.shape[-3:])
    low, high = float(np.nanmin(image)), float(np.nanmax(image))
    if low < 0.0 or high > 1.0:  # depth in metres or normalised inputs: rescale for display
        image = (image - low) / max(high - low, 1e-6)
    return np.nan_to_num(image)


class MetricsLogger:
    """Collects per-step device metrics and writes them one step late."""

    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        total_steps: int,
        log_every: int,
        image_log_every: int,
        start_step: int,
    ) -> None:
        self.total_steps = total_steps
        self.log_every = max(int(log_every), 1)
        self.image_log_every = int(image_log_every)
        self.is_writer = jax.process_index() == 0
        self._pending: tuple[int, dict] | None = None
        self._last_time = time.perf_counter()
        self._last_step = start_step
        self._rate = 0.0
        self._jsonl = None
        self._tb = None
        if self.is_writer:
            import tensorflow as tf  # lazy: only the writing process pays the import

            # tf.io.gfile: local folders and gs:// alike (GCS "append" re-uploads the file).
            path = os.fspath(workdir)
            tf.io.gfile.makedirs(path)
            self._jsonl = tf.io.gfile.GFile(os.path.join(path, "metrics.jsonl"), "a")
            self._tb = tf.summary.create_file_writer(os.path.join(path, "tensorboard"))

    def push(self, step: int, metrics: dict) -> dict | None:
        """Queues step `step`'s device metrics; returns the PREVIOUS step's host scalars."""
        previous = self.flush()
        self._pending = (step, metrics)
        return previous

    def flush(self) -> dict | None:
        """Fetches and writes the pending step (blocks until it has finished on device)."""
        if self._pending is None:
            return None
        step, metrics = self._pending
        self._pending = None
        scalars = {
            k: float(np.asarray(v))
            for k, v in jax.device_get({k: v for k, v in metrics.items() if k != "images"}).items()
        }
        scalars["finite"] = bool(scalars["finite"])
        record = {"step": step, **scalars}
        if step % self.log_every == 0 or step == self.total_steps:
            self._write(step, record)
        if self.image_log_every > 0 and step % self.image_log_every == 0 and "images" in metrics:
            self._write_images(step, jax.device_get(metrics["images"]))
        return record

    def _write(self, step: int, record: dict) -> None:
        now = time.perf_counter()
        if step > self._last_step:
            self._rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
        self._last_time, self._last_step = now, step
        eta = (self.total_steps - step) / self._rate if self._rate > 0 else float("nan")
        if not self.is_writer:
            return
        terms = " ".join(
            f"{k}={v:.4g}" for k, v in record.items() if k not in ("step", "finite", "lr")
        )
        logging.info(
            "step %d/%d %s lr=%.3g %.2f steps/s ETA %s",
            step,
            self.total_steps,
            terms,
            record["lr"],
            self._rate,
            _format_eta(eta),
        )
        line = {k: v for k, v in record.items() if k != "finite"}
        line["steps_per_sec"] = self._rate
        self._jsonl.write(json.dumps(line) + "\n")
        self._jsonl.flush()
        import tensorflow as tf

        with self._tb.as_default(step=step):
            for key, value in line.items():
                if key != "step":
                    tf.summary.scalar(key, value)

    def _write_images(self, step: int, images: dict[str, Any]) -> None:
        if not self.is_writer:
            return
        import tensorflow as tf

        with self._tb.as_default(step=step):
            for name, value in sorted(images.items()):
                tf.summary.image(f"render/{name}", _to_image_batch(value), max_outputs=4)

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._tb.flush()
            self._tb.close()


def _format_eta(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"

"""Input pipeline: converted shards -> globally sharded device batches, exactly resumable.

Order. Epoch e is a seeded permutation of the split's N clips (`EpochOrder`); global batch j
holds the clips at global stream positions j*B .. j*B+B-1 (B = config.batch_size, the last
N mod B clips of each epoch are dropped). Each process builds only the rows its devices hold,
reading them by random access (tfrecord.RecordFile), so every process sees whole-epoch
example-level shuffling across all files. An example's randomness (target frames, patch masks,
rays) is a pure function of (config.seed, global position), so batch j is the same for any
process or local-device count that keeps B.

State. `get_state()` is the JSON-serialisable dict
  {"format": STATE_FORMAT, "split", "seed", "global_batch_size", "num_examples", "next_batch"}
where next_batch counts the batches returned by `next()` (not the ones prefetched). The trainer
stores it with Orbax JsonSave; `set_state` drops the prefetch queue and restarts at next_batch
without reading any skipped record.

Work. Per-example decode/resize/geometry/rays run on a thread pool (PIL and NumPy release the
GIL); a producer thread assembles local batches in order and transfers them with
`jax.make_array_from_process_local_data`, keeping `data.prefetch` device batches ready.
"""

from __future__ import annotations

import collections
import functools
import os
import queue
import threading
from concurrent import futures

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding

from mim4d_jax.data.batch import batch_sharding
from mim4d_jax.data.example import check_config, make_example_u8, model_images
from mim4d_jax.data.reader import ClipReader, open_dataset_dir

STATE_FORMAT = "mim4d_jax.input_pipeline/1"
_STATE_KEYS = ("split", "seed", "global_batch_size", "num_examples")


class EpochOrder:
    """Global stream position -> clip index: a fresh seeded permutation per epoch."""

    def __init__(self, num_examples: int, global_batch: int, seed: int):
        self.num_examples = num_examples
        self.batches_per_epoch = num_examples // global_batch
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"the split has {num_examples} clips, fewer than batch_size={global_batch}"
            )
        self._per_epoch = self.batches_per_epoch * global_batch
        self._seed = seed
        # thread safe; two entries so workers straddling an epoch boundary do not thrash it
        self._permutation = functools.lru_cache(maxsize=2)(self._make_permutation)

    def _make_permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self._seed, epoch, 0x5EED]).permutation(self.num_examples)

    def clip_index(self, position: int) -> int:
        epoch, offset = divmod(position, self._per_epoch)
        return int(self._permutation(epoch)[offset])


def _local_rows(sharding: NamedSharding, global_batch: int) -> range:
    """The contiguous global-batch rows held by this process's devices."""
    rows: set[int] = set()
    for index in sharding.addressable_devices_indices_map((global_batch,)).values():
        rows.update(range(global_batch)[index[0]])
    block = range(min(rows), max(rows) + 1)
    if rows != set(block):
        raise ValueError(f"this process's batch rows {sorted(rows)} are not contiguous")
    return block


class InputPipeline:
    """Iterator of global batches (docs/architecture.md); `get_state`/`set_state` for resume."""

    def __init__(
        self,
        config,
        mesh: Mesh,
        split: str,
        *,
        train: bool,
        process_index: int | None = None,
        process_count: int | None = None,
    ):
        check_config(config)
        self.config = config
        self.split = split
        self.train = train
        self.global_batch = int(config.batch_size)
        self.sharding = batch_sharding(mesh)
        shards = int(np.prod([mesh.shape[a] for a in self.sharding.spec[0]]))
        if self.global_batch % shards:
            raise ValueError(
                f"batch_size={self.global_batch} is not divisible by the {shards} "
                f"batch shards of mesh axes {self.sharding.spec[0]}"
            )
        if process_index is None and process_count is None:
            self.rows = _local_rows(self.sharding, self.global_batch)
            self._host_only = False
        else:  # an explicit split for inspection/tests; batches stay host-side unless it is ours
            process_index = jax.process_index() if process_index is None else process_index
            process_count = jax.process_count() if process_count is None else process_count
            if self.global_batch % process_count:
                raise ValueError(
                    f"batch_size={self.global_batch} not divisible by {process_count} processes"
                )
            local = self.global_batch // process_count
            self.rows = range(process_index * local, (process_index + 1) * local)
            self._host_only = process_count != jax.process_count()
        self.reader = ClipReader(config, split, open_dataset_dir(config.data.dir))
        self.seed = int(config.seed)
        self.order = EpochOrder(len(self.reader), self.global_batch, self.seed)
        workers = int(config.data.num_parallel_calls)
        self._pool = futures.ThreadPoolExecutor(workers if workers > 0 else os.cpu_count() or 1)
        self._prefetch = max(1, int(config.data.prefetch))
        self._next_batch = 0
        self._producer: _Producer | None = None
        self._normalise = jax.jit(
            lambda u8: model_images(u8, config, jnp), out_shardings=self.sharding
        )

    # --- host side ----------------------------------------------------------------------
    def example(self, position: int) -> dict[str, np.ndarray]:
        """The example at global stream `position` (pure function of seed and position), with
        `images` as padded uint8 (see `to_global`)."""
        clip, where = self.reader.read_clip(self.order.clip_index(position))
        return make_example_u8(
            clip, self.config, seed=self.seed, position=position, train=self.train, where=where
        )

    def _submit(self, batch: int) -> list[futures.Future]:
        base = batch * self.global_batch
        return [self._pool.submit(self.example, base + row) for row in self.rows]

    def host_batch(self, batch: int) -> dict[str, np.ndarray]:
        """This process's rows of global batch `batch` as NumPy (no devices involved); `images`
        are padded uint8 here."""
        return _stack([f.result() for f in self._submit(batch)])

    def to_global(self, local: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """Global sharded arrays from this process's rows; images normalised on the devices."""
        if self._host_only:
            raise RuntimeError("pipeline built for a simulated process split: use host_batch()")
        batch = {
            key: jax.make_array_from_process_local_data(
                self.sharding, value, (self.global_batch, *value.shape[1:])
            )
            for key, value in local.items()
        }
        batch["images"] = self._normalise(batch["images"])
        return batch

    # --- iteration and state --------------------------------------------------------------
    def __iter__(self) -> InputPipeline:
        return self

    def __next__(self) -> dict[str, jax.Array]:
        if self._producer is None:
            self._producer = _Producer(self, self._next_batch)
        try:
            batch = self._producer.get()
        except BaseException:
            self._producer = None  # a later next() retries from the same batch
            raise
        self._next_batch += 1
        return batch

    def get_state(self) -> dict:
        return {
            "format": STATE_FORMAT,
            "split": self.split,
            "seed": self.seed,
            "global_batch_size": self.global_batch,
            "num_examples": self.order.num_examples,
            "next_batch": self._next_batch,
        }

    def set_state(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"not an input-pipeline state of format {STATE_FORMAT!r}: {state!r}")
        mine = self.get_state()
        for key in _STATE_KEYS:
            if state.get(key) != mine[key]:
                raise ValueError(
                    f"input state has {key}={state.get(key)!r}, this pipeline "
                    f"{mine[key]!r}: the restored run would read other batches"
                )
        next_batch = state.get("next_batch")
        if not isinstance(next_batch, int) or next_batch < 0:
            raise ValueError(f"input state next_batch={next_batch!r} is not a count >= 0")
        self._stop_producer()
        self._next_batch = next_batch

    def _stop_producer(self) -> None:
        if self._producer is not None:
            self._producer.stop()
            self._producer = None

    def __enter__(self) -> InputPipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stops the worker threads and closes the shards."""
        self._stop_producer()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.reader.close()


def _stack(examples: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.stack([e[key] for e in examples]) for key in examples[0]}


class _Producer:
    """Background thread: keeps example work for `prefetch + 1` batches queued on the pool and
    up to `prefetch` assembled device batches ready, in batch order."""

    def __init__(self, pipeline: InputPipeline, start: int):
        self._pipeline = pipeline
        self._ready: queue.Queue = queue.Queue(maxsize=pipeline._prefetch)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(start,), daemon=True)
        self._thread.start()

    def _run(self, start: int) -> None:
        pending: collections.deque = collections.deque()
        submitted = start
        try:
            while not self._stop.is_set():
                while len(pending) < self._pipeline._prefetch + 1:
                    pending.append(self._pipeline._submit(submitted))
                    submitted += 1
                local = _stack([f.result() for f in pending.popleft()])
                self._put(self._pipeline.to_global(local))
        except BaseException as err:  # handed to the consumer, raised from next()
            self._put(err)
        finally:
            for batch_futures in pending:
                for f in batch_futures:
                    f.cancel()

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(self) -> dict[str, jax.Array]:
        item = self._ready.get()
        if isinstance(item, BaseException):
            self.stop()
            raise item
        return item

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def make_input_pipeline(
    config,
    mesh: Mesh,
    split: str = "train",
    *,
    train: bool | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> InputPipeline:
    """The input pipeline of `split` (train masking when split is data.train_split, unless
    `train` says otherwise); `next(pipeline)` gives global batches sharded P(('data','fsdp'))."""
    if train is None:
        train = split == config.data.train_split
    return InputPipeline(
        config, mesh, split, train=train, process_index=process_index, process_count=process_count
    )

"""nuScenes -> sharded TFRecord dataset (TFDS layout) of key-frame clips: the command line.

    python -m data_prep.convert_nuscenes --dataroot DIR --version v1.0-mini --out DATA_DIR \
        [--frames T] [--image-size WxH] [--num-shards N] [--workers W] [--resume] \
        [--on-error fail|skip] [--scene-list FILE] [--verify-jpeg] [--verbose] \
        [--runner R <Beam pipeline options>]

The dataset lands in `DATA_DIR/nuscenes_clips/<version>/` (`data_prep.convert.dataset_dir`),
which `tfds.builder_from_directory` and the input pipeline open; the run's statistics are in
`conversion_stats.json` beside it. This module only parses flags: the conversion itself is the
library `data_prep.convert` (request.py: the options and their checks; job.py: plan, write,
finish; beam_pipeline.py: the Beam runner path). Bad input or a bad flag prints one line naming
the file, token or flag, plus a hint, and exits with status 2; `--verbose` or
`MIM4D_VERBOSE=1` adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib

from etils import epath

from data_prep.convert import job, tfds_meta
from data_prep.convert.items import ON_ERROR_CHOICES, RequestError
from data_prep.convert.request import ConvertRequest, parse_image_size
from data_prep.convert.tfds_meta import dataset_dir
from mim4d_jax.user_errors import VERBOSE_ENV, VERBOSE_FLAG, run_cli

__all__ = ["convert", "dataset_dir", "main"]


def convert(
    dataroot: str | pathlib.Path,
    version: str,
    out_dir: str | pathlib.Path,
    frames: int = 3,
    image_size: tuple[int, int] | None = None,
    num_shards: int | None = None,
    workers: int = 1,
    resume: bool = False,
    on_error: str = "fail",
    scene_list: str | pathlib.Path | None = None,
) -> dict:
    """`data_prep.convert.job.convert` of a `ConvertRequest` with these fields; the stats."""
    return job.convert(
        ConvertRequest(
            dataroot,
            version,
            out_dir,
            frames=frames,
            image_size=image_size,
            num_shards=num_shards,
            workers=workers,
            resume=resume,
            on_error=on_error,
            scene_list=scene_list,
        )
    )


def _image_size(text: str) -> tuple[int, int]:
    try:
        return parse_image_size(text)
    except RequestError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Convert a nuScenes dataroot into sharded TFRecord key-frame clips (TFDS "
        "layout); see docs/converting.md."
    )
    parser.add_argument("--dataroot", required=True)
    parser.add_argument("--version", required=True, help="v1.0-mini or v1.0-trainval")
    parser.add_argument(
        "--out",
        required=True,
        help=f"DATA_DIR; the dataset goes to DATA_DIR/nuscenes_clips/{tfds_meta.VERSION}",
    )
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument(
        "--image-size", type=_image_size, default=None, help="WxH; default: pass-through"
    )
    parser.add_argument(
        "--num-shards", type=int, default=None, help="per split; default ~256 MB shards, x8"
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--on-error", choices=ON_ERROR_CHOICES, default="fail")
    parser.add_argument("--scene-list", default=None, help='JSON {"train": [...], "val": [...]}')
    parser.add_argument(
        "--verify-jpeg",
        action="store_true",
        help="decode every pass-through JPEG to find truncated scans (resized ones always are)",
    )
    parser.add_argument(
        "--runner", default=None, help="run as an Apache Beam pipeline on this runner"
    )
    # Taken out of the arguments by run_cli before parsing; listed here for --help.
    parser.add_argument(
        VERBOSE_FLAG, action="store_true", help=f"tracebacks for input errors (or {VERBOSE_ENV}=1)"
    )
    return parser


def _main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args, beam_args = parser.parse_known_args(argv)
    if beam_args and args.runner is None:
        parser.error(f"unrecognised arguments {beam_args} (Beam options need --runner)")
    request = ConvertRequest(
        args.dataroot,
        args.version,
        args.out,
        frames=args.frames,
        image_size=args.image_size,
        num_shards=args.num_shards,
        workers=args.workers,
        resume=args.resume,
        on_error=args.on_error,
        scene_list=args.scene_list,
        verify_jpeg=args.verify_jpeg,
    )
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.runner is not None:
        from data_prep.convert import beam_pipeline  # apache-beam only on this path

        stats = beam_pipeline.convert_with_beam(request, ["--runner", args.runner, *beam_args])
    else:
        stats = job.convert(request)
    summary = {
        k: stats[k]
        for k in ("dataset_dir", "clips", "bytes", "num_shards", "num_skipped", "seconds")
    }
    print(json.dumps(summary, indent=1))
    print(f"stats: {epath.Path(stats['dataset_dir']) / tfds_meta.STATS_FILE}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point (`mim4d-convert`): parses `argv` (default sys.argv), converts and
    prints the summary; user errors exit with status 2 and one line (see module docstring)."""
    run_cli(_main, argv)


if __name__ == "__main__":
    main()

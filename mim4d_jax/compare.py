"""`python -m mim4d_jax.compare --runs A=WORKDIR B=WORKDIR ... --out report.md`: a markdown
table and a PNG bar chart (report.png beside it) of the runs' pretext metrics (depth AbsRel,
PSNR) and probe IoU (mim4d_jax/evaluation/report.py)."""

from __future__ import annotations

import argparse
import sys

from mim4d_jax.evaluation.report import write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", nargs="+", required=True, help="NAME=WORKDIR ...")
    parser.add_argument("--out", required=True, help="markdown file (the .png goes beside it)")
    args = parser.parse_args(argv)
    runs = {}
    for item in args.runs:
        name, sep, workdir = item.partition("=")
        if not sep or not name or not workdir:
            parser.error(f"--runs entry {item!r} is not NAME=WORKDIR")
        if name in runs:
            parser.error(f"--runs names {name!r} twice")
        runs[name] = workdir
    try:
        print(write_report(runs, args.out))
    except (FileNotFoundError, ValueError) as error:
        print(f"compare: {error}", file=sys.stderr)
        return 2
    return 0


def cli() -> None:
    sys.exit(main())


if __name__ == "__main__":
    cli()

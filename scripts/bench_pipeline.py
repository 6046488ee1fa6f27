"""Benchmark the data pipeline: CPU and wall time per video, against two baselines.

    python scripts/bench_pipeline.py                 # every media set, prints the tables
    python scripts/bench_pipeline.py --update-docs   # and rewrites them in docs/benchmarks.md
    python scripts/bench_pipeline.py --quick         # one video, one repeat (a smoke run)
    make bench-env                                   # once: the throwaway mmaction2 environment

For each media set it times actionrec's TSN 1x1x3 train, val and test pipelines, built from the
real classes and conf/data/kinetics400_video.yaml (kinetics400.yaml for frame folders), one
video at a time at one thread. In the same run it times two baselines on the same files and the
same frame indices: the decode floor (the fastest exact way to decode only the sampled frames,
no transforms) and mmaction2's own pipeline (in the environment of ``make bench-env``, run as a
subprocess; skipped with a note when that environment is missing). It also checks exactness
(our frames against a full sequential decode, our val pixels against mmaction2's), breaks the
train and test pipelines down by stage, and measures videos/s with N DataLoader workers.

Media are generated once into ``--cache``: Kinetics-like clips (10 s, 340x256, 30 fps) as H.264
with a keyframe every 250 and every 30 frames and as MPEG-4 AVI (a keyframe every 12), frame
folders extracted from the first ones, plus mmaction2's sample media when ../shared has them.
"""

from __future__ import annotations

import os

# One thread for every library, set before they are imported: workers are the parallelism.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import torch  # noqa: E402

# The work is in scripts/benchmarks/, one module per job; this file is the command line.
from benchmarks.baselines import MMACTION2_PYTHON  # noqa: E402
from benchmarks.media import FPS, ROOT, SECONDS, SETS  # noqa: E402
from benchmarks.recipe import SPLITS  # noqa: E402
from benchmarks.report import DOCS, print_table, render_markdown, write_markdown  # noqa: E402
from benchmarks.results import build_results  # noqa: E402


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=ROOT / ".bench" / "media", help="media dir")
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma list of {SETS}")
    parser.add_argument(
        "--pipelines", default=",".join(SPLITS), help="comma list of train,val,test"
    )
    parser.add_argument("--videos", type=int, default=4, help="generated videos per set")
    parser.add_argument("--repeats", type=int, default=3, help="passes over each set")
    parser.add_argument(
        "--seconds", type=float, default=SECONDS, help="length of the generated clips"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="DataLoader workers for the throughput figure (0: skip it)",
    )
    parser.add_argument(
        "--mmaction2-python",
        type=Path,
        default=MMACTION2_PYTHON,
        help="python of the throwaway mmaction2 environment (make bench-env)",
    )
    parser.add_argument("--no-mmaction2", action="store_true", help="skip the mmaction2 baseline")
    parser.add_argument(
        "--quick", action="store_true", help="1 video per set, 1 repeat, no isolation figure"
    )
    parser.add_argument("--markdown", type=Path, help="write the tables into this file")
    parser.add_argument("--update-docs", action="store_true", help=f"--markdown {DOCS}")
    parser.add_argument("--json", type=Path, help="write the raw results as JSON")
    args = parser.parse_args(argv)
    args.sets = [s for s in args.sets.split(",") if s]
    args.pipelines = [p for p in args.pipelines.split(",") if p]
    for name, given, allowed in [
        ("--sets", args.sets, SETS),
        ("--pipelines", args.pipelines, SPLITS),
    ]:
        unknown = set(given) - set(allowed)
        if unknown or not given:
            parser.error(
                f"{name} must be a comma list of {allowed}, got {sorted(unknown) or given}"
            )
    if args.quick:
        args.videos, args.repeats = 1, 1
    if args.videos < 1 or args.repeats < 1 or args.seconds * FPS < 3:
        parser.error("--videos and --repeats must be >= 1, --seconds long enough for 3 frames")
    if args.update_docs:
        args.markdown = DOCS
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    results = build_results(args)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    if args.markdown:
        write_markdown(args.markdown, render_markdown(results))
        print(f"wrote the tables into {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

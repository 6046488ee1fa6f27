"""Re-encode videos to a short side of 256 pixels as H.264 with a keyframe every 16 frames.

Smaller frames decode faster and dense keyframes make seeking to sampled frames cheap, which is
what training on videos (dataset_type=video) spends its time on. A tree SRC/class/video.avi
becomes OUT/class/video.mp4 (audio dropped, every frame and timestamp kept). Existing outputs
are skipped, so an interrupted run resumes; each file is written under a temporary name first.
Exit code 1 when some videos fail (each is named).

Usage:
    python scripts/resize_videos.py data/kinetics400/videos_train data/kinetics400/videos_train_256
    python scripts/resize_videos.py data/sthv2/videos data/sthv2/videos_256 --level 1 --gop 8
"""

from __future__ import annotations

import argparse
import sys
from functools import partial

from actionrec.data.prepare.filelists import VIDEO_EXTENSIONS
from actionrec.data.prepare.jobs import convert_tree, default_workers


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("src", help="a video file, or a folder of (class folders of) videos")
    parser.add_argument("out", help="output folder, mirroring SRC")
    parser.add_argument(
        "--level", type=int, default=2, choices=(1, 2), help="2: SRC/class/video, 1: SRC/video"
    )
    parser.add_argument(
        "--ext", nargs="+", default=list(VIDEO_EXTENSIONS), help="video file suffixes to take"
    )
    parser.add_argument(
        "--suffix", default=".mp4", help="output container, by suffix (.mp4 or .mkv)"
    )
    parser.add_argument(
        "--short-side", type=int, default=256, help="short side in pixels, 0 keeps the size"
    )
    parser.add_argument("--gop", type=int, default=16, help="largest keyframe interval, frames")
    parser.add_argument("--crf", type=int, default=23, help="x264 quality, lower is better")
    parser.add_argument("--preset", default="veryfast", help="x264 speed preset")
    parser.add_argument(
        "--num-workers", type=int, default=default_workers(), help="processes, one video each"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="codec threads per process (0: FFmpeg chooses)"
    )
    parser.add_argument("--overwrite", action="store_true", help="re-encode existing outputs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from actionrec.data.prepare.reencode import resize_pair  # imports torch: after --help

    work = partial(
        resize_pair,
        short_side=args.short_side,
        gop=args.gop,
        crf=args.crf,
        preset=args.preset,
        threads=args.threads,
        overwrite=args.overwrite,
    )
    done, code = convert_tree(
        work,
        args.src,
        args.out,
        "re-encoding videos",
        args.num_workers,
        level=args.level,
        extensions=args.ext,
        suffix=args.suffix,
    )
    skipped = sum(video.skipped for video in done)
    print(f"{len(done) - skipped} videos re-encoded, {skipped} already done")
    return code


if __name__ == "__main__":
    sys.exit(main())

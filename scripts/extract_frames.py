"""Extract the frames of videos into mmaction2 frame folders (img_00001.jpg, ...).

A tree SRC/class/video.mp4 becomes OUT/class/video/img_00001.jpg ...; a single video SRC becomes
OUT/video/. Frames are resized to a short side (keeping the aspect ratio) and JPEG-encoded.
Finished folders hold a .done marker and are skipped when run again, so an interrupted run
resumes where it stopped. Exit code 1 when some videos fail (each is named).

Usage:
    python scripts/extract_frames.py data/ucf101/videos data/ucf101/rawframes --num-workers 8
    python scripts/extract_frames.py demo.mp4 /tmp/frames --short-side 0 --quality 90
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
    parser.add_argument("src", help="a video file, or a folder of class folders of videos")
    parser.add_argument("out", help="root of the frame folders")
    parser.add_argument(
        "--level",
        type=int,
        default=2,
        choices=(1, 2),
        help="2: SRC/class/video.ext, 1: SRC/video.ext",
    )
    parser.add_argument(
        "--ext", nargs="+", default=list(VIDEO_EXTENSIONS), help="video file suffixes to take"
    )
    parser.add_argument(
        "--short-side",
        type=int,
        default=256,
        help="short side of the frames in pixels, 0 keeps the size",
    )
    parser.add_argument(
        "--filename-tmpl", default="img_{:05}.jpg", help="frame file names (data.filename_tmpl)"
    )
    parser.add_argument(
        "--start-index", type=int, default=1, help="number of the first frame (data.start_index)"
    )
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality, 1 to 100")
    parser.add_argument(
        "--num-workers", type=int, default=default_workers(), help="processes, one video each"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="decoder threads per process (0: FFmpeg chooses)"
    )
    parser.add_argument("--overwrite", action="store_true", help="extract finished folders again")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from actionrec.data.prepare.frames import extract_pair  # imports torch: after --help

    work = partial(
        extract_pair,
        short_side=args.short_side,
        filename_tmpl=args.filename_tmpl,
        start_index=args.start_index,
        quality=args.quality,
        threads=args.threads,
        overwrite=args.overwrite,
    )
    done, code = convert_tree(
        work,
        args.src,
        args.out,
        "extracting frames",
        args.num_workers,
        level=args.level,
        extensions=args.ext,
    )
    skipped = sum(folder.skipped for folder in done)
    frames = sum(folder.frames for folder in done if not folder.skipped)
    print(f"{len(done) - skipped} videos extracted ({frames} frames), {skipped} already done")
    return code


if __name__ == "__main__":
    sys.exit(main())

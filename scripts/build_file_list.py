"""Build mmaction2 annotation lists (and classes.txt) from a folder of videos or frame folders.

The tree is SRC/class/video.mp4 (--format videos) or SRC/class/video/img_00001.jpg
(--format rawframes, whose lines carry the frame count). Labels are the class folders in sorted
order (or the order of --classes), and the videos are split per class into train and val with a
seeded shuffle; --split-style ucf101|hmdb51|sthv2 uses the official split files in --ann-dir
instead. Paths in the lists are relative to SRC: use SRC as data.data_root.

Usage:
    python scripts/build_file_list.py data/mydata/videos data/mydata --val-ratio 0.2 --seed 0
    python scripts/build_file_list.py data/ucf101/rawframes data/ucf101 --format rawframes \\
        --split-style ucf101 --ann-dir data/ucf101/annotations
    python scripts/build_file_list.py data/k400/videos_val data/k400 --val-ratio 0 --subset val \\
        --classes data/k400/classes.txt --name kinetics400
"""

from __future__ import annotations

import argparse
import sys

from actionrec.data.prepare.filelists import (
    FORMATS,
    SPLIT_STYLES,
    VIDEO_EXTENSIONS,
    build_file_lists,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("src", help="root of the videos or frame folders (data.data_root)")
    parser.add_argument("out", help="folder for the lists and classes.txt")
    parser.add_argument("--format", default="videos", choices=FORMATS)
    parser.add_argument(
        "--split-style",
        default="random",
        choices=SPLIT_STYLES,
        help="random: seeded split per class; else the official split files",
    )
    parser.add_argument(
        "--val-ratio",
        type=float,
        default=0.2,
        help="share of each class in val; 0 writes one list (see --subset)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random split")
    parser.add_argument(
        "--subset",
        default="train",
        choices=("train", "val", "test"),
        help="name of the single list written with --val-ratio 0",
    )
    parser.add_argument(
        "--name",
        default="",
        help="prefix of the list names, e.g. ucf101 (default: the split style)",
    )
    parser.add_argument("--ann-dir", help="official split files (classInd.txt, ...)")
    parser.add_argument(
        "--splits",
        type=int,
        nargs="+",
        default=[1, 2, 3],
        help="official splits to write (ucf101, hmdb51)",
    )
    parser.add_argument("--classes", help="class names, one per line, fixing the label order")
    parser.add_argument(
        "--level",
        type=int,
        default=2,
        choices=(1, 2),
        help="2: SRC/class/video, 1: SRC/video (flat, e.g. sthv2)",
    )
    parser.add_argument(
        "--ext", nargs="+", default=list(VIDEO_EXTENSIONS), help="video file suffixes to take"
    )
    parser.add_argument(
        "--filename-tmpl",
        default="img_{:05}.jpg",
        help="frame file names, for counting frames (rawframes)",
    )
    parser.add_argument(
        "--start-index", type=int, default=1, help="number of the first frame (rawframes)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        written = build_file_lists(
            args.src,
            args.out,
            format=args.format,
            split_style=args.split_style,
            val_ratio=args.val_ratio,
            seed=args.seed,
            name=args.name,
            subset=args.subset,
            ann_dir=args.ann_dir,
            splits=args.splits,
            classes_file=args.classes,
            level=args.level,
            filename_tmpl=args.filename_tmpl,
            start_index=args.start_index,
            extensions=args.ext,
        )
    except (FileNotFoundError, ValueError, KeyError) as error:
        raise SystemExit(f"error: {error}") from None
    for item in written:
        print(f"{item.path}: {item.lines} lines")
        if item.missing:
            print(
                f"  warning: {len(item.missing)} listed videos not found, e.g. {item.missing[0]}",
                file=sys.stderr,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Decode every entry of an annotation list and report the ones that cannot be read.

Each video is opened with the chosen decoder and its first, middle and last frames decoded; each
frame folder must hold every frame its line promises. Bad entries are printed with their line
number, path and reason; --out writes a cleaned list keeping only the good lines. Exit code 1
when any entry is bad, 2 when the list itself cannot be parsed.

Usage:
    python scripts/check_dataset.py --ann-file data/k400/kinetics400_val_list_videos.txt \\
        --data-root data/k400/videos_val --out data/k400/kinetics400_val_list_videos.clean.txt
    python scripts/check_dataset.py --ann-file data/ucf101/ucf101_train_split_1_rawframes.txt \\
        --data-root data/ucf101/rawframes --dataset-type rawframes
"""

from __future__ import annotations

import argparse
import sys

from actionrec.data.prepare.jobs import default_workers

DECODERS = ("pyav", "decord", "torchcodec")  # actionrec.data.decoding.BACKENDS, without torch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--ann-file", required=True, help="the list (data.ann_file_*)")
    parser.add_argument("--data-root", default="", help="prefix of its paths (data.data_root)")
    parser.add_argument("--dataset-type", default="video", help="video or rawframes (the format)")
    parser.add_argument("--filename-tmpl", default="img_{:05}.jpg", help="rawframes file names")
    parser.add_argument(
        "--start-index",
        type=int,
        default=None,
        help="first frame number (default: 1 for rawframes)",
    )
    parser.add_argument("--decoder", default="pyav", choices=DECODERS, help="video decoder")
    parser.add_argument("--with-offset", action="store_true", help="rawframes lines with offset")
    parser.add_argument("--multi-class", action="store_true", help="several labels per line")
    parser.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="check labels are below this (needed with --multi-class)",
    )
    parser.add_argument("--out", help="write the good lines to this list")
    parser.add_argument("--num-workers", type=int, default=default_workers(), help="processes")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from actionrec.data.annotations import AnnotationError
    from actionrec.data.formats import media_format
    from actionrec.data.prepare.checking import check_annotations, write_clean_list

    try:
        media = media_format(
            args.dataset_type,
            filename_tmpl=args.filename_tmpl,
            start_index=args.start_index,
            with_offset=args.with_offset,
            decoder=args.decoder,
        )
        records, bad = check_annotations(
            args.ann_file,
            args.data_root,
            media,
            multi_class=args.multi_class,
            num_classes=args.num_classes,
            num_workers=args.num_workers,
        )
    except (AnnotationError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for entry in bad:
        print(f"bad: {args.ann_file}:{entry}")
    print(f"{len(records) - len(bad)} of {len(records)} entries are good, {len(bad)} bad")
    if args.out:
        kept = write_clean_list(args.ann_file, args.out, bad)
        print(f"wrote {args.out} ({kept} lines)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""Render the embedded toy action dataset (shapes moving over noisy backgrounds).

Usage:
    python scripts/make_toy_dataset.py --root data/toy
    python scripts/make_toy_dataset.py --root data/toy --seed 1  # replaces the seed-0 set
"""

from __future__ import annotations

import argparse
import inspect

from actionrec.data.toy import SHAPES, ensure_toy_dataset, generate_toy_dataset

# Defaults come from the function, so the CLI and `python src/train.py` render the same dataset.
DEFAULTS = {
    name: p.default for name, p in inspect.signature(generate_toy_dataset).parameters.items()
}
HELP = {
    "seed": "seed of every random choice",
    "num_classes": f"shape classes, 2 to {len(SHAPES)}: {', '.join(SHAPES)}",
    "width": "frame width, even",
    "height": "frame height, even",
    "num_workers": "render processes, None: up to 2 cores; does not change the output",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data/toy", help="output directory (default: data/toy)")
    for name in (
        "seed",
        "num_classes",
        "videos_per_class_train",
        "videos_per_class_val",
        "num_frames",
        "width",
        "height",
        "fps",
        "num_workers",
    ):
        help_text = HELP.get(name, "") + " (default: %(default)s)"
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=int, default=DEFAULTS[name], help=help_text.strip()
        )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a directory that holds no toy dataset"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    try:
        ensure_toy_dataset(**vars(parse_args(argv)))
    except (FileExistsError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()

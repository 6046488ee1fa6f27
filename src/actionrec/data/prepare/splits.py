"""Official train/val splits of UCF101, HMDB51 and Something-Something V2.

Each reader returns ``(classes, train, val)``: class names in label order, and two dicts mapping
a video key (its path relative to the data root, without extension) to its 0-based label.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def read_ucf101_split(ann_dir: str | os.PathLike, split: int) -> tuple[list[str], dict, dict]:
    """UCF101's ``classInd.txt``, ``trainlist0{split}.txt``, ``testlist0{split}.txt``.

    Returns:
        ``(classes, train, val)``: train and val map a key ``Class/v_Class_g01_c01`` to its
        0-based label.
    """
    ann_dir = Path(ann_dir)
    rows = [line.split() for line in _read(ann_dir / "classInd.txt").splitlines() if line.strip()]
    classes = [name for _, name in sorted(rows, key=lambda row: int(row[0]))]
    index = {name: i for i, name in enumerate(classes)}

    def parse(name: str) -> dict[str, int]:
        keys = [line.split()[0] for line in _read(ann_dir / name).splitlines() if line.strip()]
        keys = [os.path.splitext(k)[0] for k in keys]
        return {k: index[k.split("/")[0]] for k in keys}

    return classes, parse(f"trainlist{split:02d}.txt"), parse(f"testlist{split:02d}.txt")


def read_hmdb51_split(ann_dir: str | os.PathLike, split: int) -> tuple[list[str], dict, dict]:
    """HMDB51's ``<class>_test_split{split}.txt`` files (``video.avi 1``: train, ``2``: test)."""
    ann_dir = Path(ann_dir)
    suffix = f"_test_split{split}.txt"
    files = sorted(ann_dir.glob(f"*{suffix}"))
    if not files:
        raise FileNotFoundError(f"no *{suffix} files in {ann_dir} (HMDB51's split files)")
    classes = [f.name[: -len(suffix)] for f in files]
    train, val = {}, {}
    for label, (name, path) in enumerate(zip(classes, files, strict=True)):
        for line in _read(path).splitlines():
            fields = line.split()
            if len(fields) == 2 and fields[1] in ("1", "2"):
                key = f"{name}/{os.path.splitext(fields[0])[0]}"
                (train if fields[1] == "1" else val)[key] = label
    return classes, train, val


def read_sthv2_split(ann_dir: str | os.PathLike) -> tuple[list[str], dict, dict]:
    """Something-Something V2's ``something-something-v2-{labels,train,validation}.json``."""
    ann_dir = Path(ann_dir)
    mapping = json.loads(_read(ann_dir / "something-something-v2-labels.json"))
    classes = [name for name, _ in sorted(mapping.items(), key=lambda item: int(item[1]))]

    def parse(name: str) -> dict[str, int]:
        items = json.loads(_read(ann_dir / name))
        return {
            str(item["id"]): int(mapping[item["template"].replace("[", "").replace("]", "")])
            for item in items
        }

    return (
        classes,
        parse("something-something-v2-train.json"),
        parse("something-something-v2-validation.json"),
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"split file not found: {path}; check --ann-dir") from None

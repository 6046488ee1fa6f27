"""The mmaction2 baseline: scripts/mmaction2_baseline.py run as a subprocess in the
throwaway environment of ``make bench-env``, timing mmaction2's own pipelines on our indices."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from .floors import max_diff
from .media import FILENAME_TMPL, ROOT, MediaSet
from .recipe import build_datamodule

MMACTION2_PYTHON = ROOT / ".bench" / "mmaction2-venv" / "bin" / "python"


class MMAction2:
    """scripts/mmaction2_baseline.py in the throwaway environment, answering one pass a call."""

    def __init__(self, python: Path, seed: int = 0) -> None:
        self.python = python
        script = ROOT / "scripts" / "mmaction2_baseline.py"
        self.proc = subprocess.Popen(
            [str(python), str(script), str(seed)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": ""},  # its own packages only
        )
        self.versions = self._reply()["versions"]

    def _reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise RuntimeError(
                f"the mmaction2 baseline ({self.python}) stopped with exit code {code}; its "
                "error is printed above. Recreate the environment with `make bench-env`, or "
                "pass --no-mmaction2."
            )
        return json.loads(line)

    def run(self, media: MediaSet, split: str, inds: list, dump_dir: Path | None = None) -> dict:
        """Time one pass over ``media`` (or save the outputs into ``dump_dir``)."""
        job = {
            "name": media.name,
            "kind": media.kind,
            "split": split,
            "items": [dict(item, filename_tmpl=FILENAME_TMPL) for item in media.items],
            "inds": [np.asarray(x).tolist() for x in inds],
            "dump_dir": str(dump_dir) if dump_dir else None,
        }
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def open_mmaction2(args: argparse.Namespace) -> tuple[MMAction2 | None, dict]:
    """The running baseline and where its numbers go, or None and why there are none."""
    if args.no_mmaction2:
        return None, {"skipped": "--no-mmaction2"}
    if not args.mmaction2_python.exists():
        note = (
            f"{args.mmaction2_python} not found: create the throwaway environment with "
            "`make bench-env` (or pass --mmaction2-python)"
        )
        print(f"mmaction2 baseline skipped: {note}", file=sys.stderr)
        return None, {"skipped": note}
    mm = MMAction2(args.mmaction2_python)
    return mm, {"versions": mm.versions, "results": {}}


def compare_val(mm: MMAction2, media: MediaSet, drawn: list, workdir: Path) -> dict:
    """mmaction2's val output against ours on the same indices, pixel by pixel."""
    files = mm.run(media, "val", drawn[0], dump_dir=workdir)["files"]
    dm = build_datamodule(media, workdir, isolate_decoder=False, decode_timeout=None)
    dataset = dm.build_dataset("val")
    diff, frac = 0, 0.0
    for i, path in enumerate(files):
        theirs = np.load(path)
        ours = dataset[i]["imgs"].numpy()
        diff = max(diff, max_diff(ours, theirs))
        if ours.shape == theirs.shape:
            frac = max(frac, float((ours != theirs).mean()))
    return {
        "val pixels vs mmaction2": diff,
        "val pixels differing from mmaction2 (%)": frac * 100,
    }

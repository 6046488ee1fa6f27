"""scripts/bench_pipeline.py: a quick run on a tiny generated set writes true, complete tables."""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from actionrec.data.decoding import backend_unavailable

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "bench_pipeline.py"
MMACTION2_PYTHON = ROOT / ".bench" / "mmaction2-venv" / "bin" / "python"


def run_bench(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict, str]:
    doc = tmp_path / "benchmarks.md"
    # Text around the markers must survive; the stale block between them must not.
    doc.write_text(
        "# Benchmarks\n\nintro\n\n<!-- bench_pipeline:begin -->\nSTALE\n"
        "<!-- bench_pipeline:end -->\n\n## Training step\n\nkept\n"
    )
    out = tmp_path / "results.json"
    args = ["--quick", "--seconds", "2", "--sets", "h264_g250,frames", "--pipelines", "train,val"]
    args += ["--workers", "0", "--cache", str(tmp_path / "cache"), "--markdown", str(doc)]
    args += ["--json", str(out), *extra]
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads(out.read_text()), doc.read_text()


def table_rows(text: str, first_cells: tuple[str, ...]) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and tuple(cells[: len(first_cells)]) == first_cells:
            rows.append(cells)
    return rows


def test_quick_run_without_mmaction2(tmp_path: Path) -> None:
    missing = tmp_path / "no-venv" / "bin" / "python"
    proc, results, doc = run_bench(tmp_path, "--mmaction2-python", str(missing))

    # The missing baseline is skipped with the way to get it, everywhere it would appear.
    assert "make bench-env" in proc.stderr
    assert "make bench-env" in doc
    assert "STALE" not in doc and doc.startswith("# Benchmarks\n\nintro\n")
    assert doc.rstrip().endswith("## Training step\n\nkept")

    for name in ("h264_g250", "frames"):
        entry = results["sets"][name]
        # Our frames are exactly the reference frames; so are the floor's.
        assert entry["exactness"]["ours"] == 0
        for split in ("train", "val"):
            p = entry["pipelines"][split]
            s = p["summary"]
            # The ratio is computed from the measured medians, the floor is the fastest exact
            # decoder's median: recompute both from the raw samples.
            ours = statistics.median(p["ours"]["cpu"])
            floors = {
                k: statistics.median(v["cpu"])
                for k, v in p["decoders"].items()
                if entry["exactness"][k] == 0
            }
            assert s["floor_decoder"] == min(floors, key=floors.get)
            assert s["ours_vs_floor"] == pytest.approx(ours / min(floors.values()))
            assert ours > 0 and s["ours_wall_ms"] > 0
            # One keyframe in a 2 s clip: reaching the sampled frames walks every frame before.
            walked, returned = s["frames_decoded"], s["frames_returned"]
            assert walked > returned if name == "h264_g250" else walked <= returned
            assert s["mmaction2_cpu_ms"] is None

            # The main table has the row, with the same numbers as the JSON; then the decoders'.
            row, decoders = table_rows(doc, (name, split))
            assert decoders[2] == f"{s['frames_decoded']:g} / {s['frames_returned']}"
            assert all(re.fullmatch(r"\d+\.\d\d?\*?|-", c) for c in decoders[3:])
            assert float(row[2]) == pytest.approx(ours, abs=0.051)
            floor = min(floors.values())
            assert row[4] == f"{floor:.{2 if floor < 10 else 1}f} ({s['floor_decoder']})"
            assert row[6] == f"{s['ours_vs_floor']:.2f}"
            assert row[5] == row[7] == row[8] == "-"  # no mmaction2 number, no ratio to it
    decoders = results["sets"]["h264_g250"]["pipelines"]["train"]["decoders"]
    assert "pyav seek" in decoders
    # An optional decoder that cannot work here is left out, and stderr says why.
    for row, backend in (("torchcodec exact", "torchcodec"), ("decord", "decord")):
        reason = backend_unavailable(backend)
        assert (row in decoders) == (reason is None)
        assert reason is None or f"{row}: skipped (not measured): {reason}" in proc.stderr
    # The targets line reports the measured ratio; no mmaction2, so no line against it.
    g250 = results["sets"]["h264_g250"]["pipelines"]["train"]["summary"]["ours_vs_floor"]
    verdict = "met" if g250 <= 1.15 else "missed"
    assert f"- train on videos, ours / floor <= 1.15: h264_g250 {g250:.3f} ({verdict})" in doc
    assert "ours / mm2 <=" not in doc
    # The stage breakdown is there, with numbers.
    assert "ours: read" in doc and "collate (batch of 32), per video" in doc
    assert re.search(r"\| ours, sum of stages \| \d+\.\d\d \| 100% \|", doc)


@pytest.mark.slow
@pytest.mark.skipif(
    not MMACTION2_PYTHON.exists(), reason="no .bench/mmaction2-venv (make bench-env)"
)
def test_quick_run_against_mmaction2(tmp_path: Path) -> None:
    """Same files, same indices: mmaction2's val output equals ours pixel for pixel here."""
    _, results, doc = run_bench(tmp_path)
    for name in ("h264_g250", "frames"):
        entry = results["sets"][name]
        # 340x256 frames need no resize before the centre crop, so decoding decides.
        assert entry["exactness"]["val pixels vs mmaction2"] == 0
        s = entry["pipelines"]["train"]["summary"]
        assert s["ours_vs_mmaction2"] == pytest.approx(s["ours_cpu_ms"] / s["mmaction2_cpu_ms"])
        row = table_rows(doc, (name, "train"))[0]
        assert row[7] == f"{s['ours_vs_mmaction2']:.2f}"
    assert "mmaction2: 1.2.0" in doc

"""The results: every measurement of a run, in the dict that --json writes and the tables read,
with the medians and ratios of each set and pipeline."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from .baselines import compare_val, open_mmaction2
from .floors import (
    FRAME_DECODERS,
    backend_version,
    check_exactness,
    frames_to_decode,
    usable_video_decoders,
)
from .measure import breakdown, measure, throughput, time_ours_isolated
from .media import media_size_mb, prepare_media, warm_page_cache

# A frame-folder sample costs ~1.5 ms against 5-80 ms for a video: its sets get this many times
# the passes (still well under a second each), so their medians settle on a noisy machine.
FRAME_PASSES = 5


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torchvision

    libavcodec = av.library_versions["libavcodec"]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{model}, {os.cpu_count()} cores visible",
        "load average at start": f"{os.getloadavg()[0]:.2f}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "av (PyAV)": f"{av.__version__}, libavcodec {'.'.join(map(str, libavcodec))}",
        "torchcodec": backend_version("torchcodec"),
        "decord": backend_version("decord"),
        "opencv": cv2.__version__,
        "numpy": np.__version__,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def build_results(args: argparse.Namespace) -> dict:
    sets = prepare_media(args.cache, args.sets, args.videos, args.seconds)
    if not sets:
        raise SystemExit("no media set to measure")
    results: dict = {"machine": machine(), "sets": {}, "args": vars(args).copy()}
    results["args"] = {k: str(v) for k, v in results["args"].items()}
    drawn_all: dict[str, dict] = {}
    video_decoders = usable_video_decoders()
    mm, results["mmaction2"] = open_mmaction2(args)
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
        workdir = Path(tmp)
        for name, media in sets.items():
            print(f"[{name}] {media.about}", file=sys.stderr)
            decoders = video_decoders if media.kind == "video" else FRAME_DECODERS
            entry: dict = {"about": media.about, "kind": media.kind, "pipelines": {}}
            entry["mb_per_video"] = media_size_mb(media)
            warm_page_cache(media)
            drawn_all[name] = {}
            passes = args.repeats * (1 if media.kind == "video" else FRAME_PASSES)
            for split in args.pipelines:
                ours, floors, theirs, drawn = measure(media, split, passes, workdir, decoders, mm)
                drawn_all[name][split] = drawn
                entry["pipelines"][split] = {
                    "frames_returned": len(drawn[0][0]),
                    "frames_decoded": [
                        frames_to_decode(media, media.items[i]["path"], inds)
                        for repeat in drawn
                        for i, inds in enumerate(repeat)
                    ],
                    "ours": {"cpu": ours.cpu, "wall": ours.wall},
                    "decoders": {k: {"cpu": v.cpu, "wall": v.wall} for k, v in floors.items()},
                }
                if mm is not None:
                    timed = {"cpu_ms": theirs.cpu, "wall_ms": theirs.wall}
                    results["mmaction2"]["results"].setdefault(name, {})[split] = timed
                if split == "train" and not args.quick:  # a child start costs seconds
                    iso = time_ours_isolated(media, split, passes, workdir)
                    if iso is not None:
                        timed = {"cpu": iso.cpu, "wall": iso.wall}
                        entry["pipelines"][split]["ours_isolated"] = timed
            entry["exactness"] = check_exactness(media, drawn_all[name], decoders)
            if mm is not None and "val" in drawn_all[name]:
                entry["exactness"].update(compare_val(mm, media, drawn_all[name]["val"], workdir))
            results["sets"][name] = entry
        if mm is not None:
            mm.close()
        first_video = next((n for n in ("h264_g250", "samples") if n in sets), None)
        first_frames = next((n for n in ("frames", "sample_frames") if n in sets), None)
        detailed = [n for n in (first_video, first_frames) if n]
        results["breakdown"] = {
            name: {
                split: breakdown(sets[name], split, drawn_all[name][split], workdir)
                for split in ("train", "test")
                if split in args.pipelines
            }
            for name in detailed
        }
        if args.workers > 0 and "train" in args.pipelines:
            results["throughput"] = {}
            for name in detailed:
                print(f"[{name}] DataLoader throughput", file=sys.stderr)
                results["throughput"][name] = throughput(sets[name], args.workers, workdir)
    results["machine"]["load average at end"] = f"{os.getloadavg()[0]:.2f}"
    summarize(results)
    return results


def summarize(results: dict) -> None:
    """Medians and ratios per set and pipeline (what the tables show)."""
    mm = results["mmaction2"].get("results", {})
    for name, entry in results["sets"].items():
        exact = entry["exactness"]
        for split, p in entry["pipelines"].items():
            dec = {k: statistics.median(v["cpu"]) for k, v in p["decoders"].items()}
            exact_dec = {k: v for k, v in dec.items() if exact.get(k, 255) == 0}
            floor_name = min(exact_dec, key=exact_dec.get) if exact_dec else None
            theirs = mm.get(name, {}).get(split)
            s = {
                "ours_cpu_ms": statistics.median(p["ours"]["cpu"]),
                "ours_wall_ms": statistics.median(p["ours"]["wall"]),
                "floor_cpu_ms": exact_dec.get(floor_name),
                "floor_decoder": floor_name,
                "decoders_cpu_ms": dec,
                "mmaction2_cpu_ms": statistics.median(theirs["cpu_ms"]) if theirs else None,
                "mmaction2_wall_ms": statistics.median(theirs["wall_ms"]) if theirs else None,
                "samples": len(p["ours"]["cpu"]),
                "frames_decoded": statistics.median(p["frames_decoded"]),
                "frames_returned": p["frames_returned"],
            }
            if "ours_isolated" in p:
                s["ours_isolated_cpu_ms"] = p["ours_isolated"]["cpu"][0]
                s["ours_isolated_wall_ms"] = p["ours_isolated"]["wall"][0]
            s["ours_vs_floor"] = ratio(s["ours_cpu_ms"], s["floor_cpu_ms"])
            s["ours_vs_mmaction2"] = ratio(s["ours_cpu_ms"], s["mmaction2_cpu_ms"])
            p["summary"] = s

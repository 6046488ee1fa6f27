"""The model table: parameters, compute per view and CPU time per training clip of each family.

Each model is composed as a user gets it (``model=<name>`` with the protocol it picks, 400
classes, no pretrained weights: nothing is fetched) and measured on one training view at the
protocol's training crop (224 px): the frames a training clip holds (TSN 3, TSM 8, I3D 32,
SlowOnly 4). GMACs are multiply-adds counted by ``torch.utils.flop_counter`` (mmaction2's model
zoo calls the same number "FLOPs"); the CPU time is the median wall time of one forward and
backward pass over a batch, divided by the batch, on this machine's threads.

    python scripts/bench_models.py                      # every family, batch 2, 3 rounds
    python scripts/bench_models.py --models tsm_r50 --rounds 5 --json out.json
    python scripts/bench_models.py --update-readme      # rewrite README.md's model table
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from torch.utils.flop_counter import FlopCounterMode

from actionrec import runs

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
README = ROOT / "README.md"
BEGIN, END = "<!-- bench_models:begin -->", "<!-- bench_models:end -->"
MODELS = ("tsn_r50", "tsm_r50", "i3d_r50", "slowonly_r50")
# The mmaction2 1.x recipe each model mirrors, and its published Kinetics-400 top-1 (mmaction2
# 1.2.0's model-zoo metafile.yml for that config).
PUBLISHED = {
    "tsn_r50": ("tsn_imagenet-pretrained-r50_8xb32-1x1x3-100e_kinetics400-rgb", 72.83),
    "tsm_r50": ("tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb", 73.18),
    "i3d_r50": ("i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb", 73.47),
    "slowonly_r50": (
        "slowonly_imagenet-pretrained-r50_8xb16-4x16x1-steplr-150e_kinetics400-rgb",
        74.83,
    ),
}


def build(model: str):
    """The Recognizer of ``model=<model>`` and its training view's frame count."""
    overrides = [f"model={model}", "data=kinetics400_video", "model.net.backbone.pretrained=null"]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    frames = cfg.data.num_clips * cfg.data.clip_len
    return runs.build_module(cfg), frames


def measure(model: str, batch: int, rounds: int, size: int = 224) -> dict:
    module, frames = build(model)
    net = module.net.train()
    clip = torch.randint(0, 256, (batch, frames, 3, size, size), dtype=torch.uint8)
    x = module.training_view(clip)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net.eval()(x[:1])
    macs = counter.get_total_flops() / 2
    net.train()
    times = []
    for i in range(rounds + 1):  # the first pass warms up allocators and kernels
        start = time.perf_counter()
        net(x).sum().backward()
        if i:
            times.append(time.perf_counter() - start)
        net.zero_grad(set_to_none=True)
    recipe, top1 = PUBLISHED.get(model, ("", float("nan")))
    return {
        "model": model,
        "frames": frames,
        "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
        "gmacs_per_view": macs / 1e9,
        "cpu_ms_per_clip": statistics.median(times) / batch * 1e3,
        "recipe": recipe,
        "k400_top1": top1,
    }


def table(rows: list[dict], args: argparse.Namespace) -> str:
    """The model table in Markdown, with how and where it was measured."""
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    lines = [
        f"_Measured by `python scripts/bench_models.py` on {when}: torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads of {os.cpu_count()} CPUs, batch {args.batch}, median "
        f"of {args.rounds} forward+backward passes at 224 px; GMACs of one view as "
        "`torch.utils.flop_counter` counts them (mmaction2's zoo calls them GFLOPs)._",
        "",
        "| model | frames/view | params (M) | GMACs/view | CPU ms/training clip "
        "| mmaction2 1.x recipe (`experiment=`) | K400 top-1 (mmaction2 zoo) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| `{row['model']}` | {row['frames']} | {row['params_m']:.1f} | "
            f"{row['gmacs_per_view']:.1f} | {row['cpu_ms_per_clip']:.0f} | `{row['recipe']}` | "
            f"{row['k400_top1']} |"
        )
    return "\n".join(lines) + "\n"


def write_readme(block: str) -> None:
    """Replace README.md's text between the bench_models markers."""
    text = README.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{README} has no {BEGIN} ... {END} markers")
    head, rest = text.split(BEGIN, 1)
    README.write_text(f"{head}{BEGIN}\n{block}{END}{rest.split(END, 1)[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--update-readme", action="store_true")
    args = parser.parse_args()
    rows = []
    for model in args.models:
        rows.append(measure(model, args.batch, args.rounds))
        print(f"measured {model}: {rows[-1]}", flush=True)
    block = table(rows, args)
    print(block)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    if args.update_readme:
        write_readme(block)


if __name__ == "__main__":
    main()

"""Training-step cost: the Recognizer under a Lightning Trainer against a plain PyTorch loop.

Both sides train the same network from the same weights on the same uint8 batches held in
memory, normalize on the device, use the same optimizer and the recipe's gradient clipping
(L2 norm 40), and are timed the same way: the wall time between the ends of consecutive steps,
median over the steps after a warm-up. Each variant (fp32, channels_last, bf16-mixed,
torch.compile) runs in both, alternating plain and Lightning over several rounds so that load
from other processes hits both alike. The Trainer has no logger, checkpoints, progress bar or
validation: what remains is what every training step pays.

    python scripts/bench_step.py       # fixed cost, toy CNN, ResNet-18 at 112 px (~2 min, 1 thread)
    python scripts/bench_step.py --models r18 --variants fp32 compile --rounds 5 --threads 8
"""

from __future__ import annotations

import argparse
import copy
import functools
import inspect
import itertools
import logging
import os
import platform
import re
import statistics
import time
import warnings
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from actionrec.models.backbones import ResNet, SimpleCNN
from actionrec.models.heads import TSNHead
from actionrec.models.recognizers import TSN
from actionrec.module import Recognizer

CLIP_NORM = 40.0  # conf/trainer/default.yaml: gradient_clip_val, L2 norm (mmaction2 grad_clip)
VARIANTS = ("fp32", "channels_last", "bf16", "compile", "channels_last+bf16")
# Lightning's per-fit notices, the same for every measurement.
QUIET = (
    "You defined a `validation_step` but have no `val_dataloader`",
    "`isinstance(treespec, LeafSpec)` is deprecated",
)


@dataclass(frozen=True)
class Setup:
    """A model and the batch it trains on: ``(batch, segments, 3, size, size)`` uint8."""

    build: Callable[[], nn.Module]
    optimizer: Callable[..., torch.optim.Optimizer]
    batch: int
    segments: int
    size: int
    num_classes: int = 400
    step_factor: int = 1  # runs this many times --steps (and --warmup): for millisecond steps


def tsn(backbone: nn.Module, num_classes: int) -> TSN:
    head = TSNHead(num_classes, backbone.num_features, dropout_ratio=0.4, init_std=0.01)
    return TSN(backbone, head)


SGD = functools.partial(torch.optim.SGD, lr=0.01, momentum=0.9, weight_decay=1e-4)  # conf/optim
ADAMW = functools.partial(torch.optim.AdamW, lr=3e-3, weight_decay=0.05)  # conf/optim/adamw

MODELS = {
    # Next to no compute: what is left is each loop's fixed cost per step.
    "overhead": Setup(lambda: tsn(SimpleCNN((4,)), 6), ADAMW, 2, 3, 16, 6, step_factor=25),
    # The toy recipe (conf/model/tsn_toy.yaml, conf/data/toy.yaml) at half its 16 videos.
    "toy": Setup(lambda: tsn(SimpleCNN((32, 64, 128, 256)), 6), ADAMW, 8, 3, 64, 6),
    # The R50 recipe's shape at CPU scale: ResNet-18, 3 segments, 112 px.
    "r18": Setup(lambda: tsn(ResNet(18), 400), SGD, 2, 3, 112),
    # The GPU benchmark's model (scripts/bench_gpu.py); minutes per step on a laptop CPU.
    "r50": Setup(lambda: tsn(ResNet(50), 400), SGD, 32, 8, 224),
}


def make_batches(setup: Setup, count: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """``count`` random uint8 batches as the DataLoader would give them."""
    gen = torch.Generator().manual_seed(seed)
    shape = (setup.batch, setup.segments, 3, setup.size, setup.size)
    return [
        {
            "imgs": torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen),
            "label": torch.randint(0, setup.num_classes, (setup.batch,), generator=gen),
        }
        for _ in range(count)
    ]


class Batches:
    """``steps`` batches cycled from a few held in memory: the loader costs nothing."""

    def __init__(self, batches: list[dict], steps: int) -> None:
        self.batches, self.steps = batches, steps

    def __iter__(self) -> Iterator[dict]:
        return itertools.islice(itertools.cycle(self.batches), self.steps)

    def __len__(self) -> int:
        return self.steps


def module_switches() -> set[str]:
    """The Recognizer's own switches among ``channels_last`` and ``compile``."""
    return {"channels_last", "compile"} & set(inspect.signature(Recognizer).parameters)


def parts(variant: str) -> set[str]:
    """The switches of a variant: ``"channels_last+bf16"`` is both."""
    return set(variant.split("+"))


def prepare_net(net: nn.Module, variant: str) -> nn.Module:
    """Apply ``channels_last`` and ``compile`` to a bare network (the plain loop's way)."""
    if "channels_last" in parts(variant):
        net = net.to(memory_format=torch.channels_last)
    if "compile" in parts(variant):
        net = torch.compile(net)
    return net


def build_module(net: nn.Module, setup: Setup, variant: str) -> Recognizer:
    """The Recognizer with ``variant`` through its own switches when it has them."""
    kwargs = {}
    for switch in sorted({"channels_last", "compile"} & parts(variant)):
        if switch in module_switches():
            kwargs[switch] = True
        else:
            net = prepare_net(net, switch)
    return Recognizer(net, optimizer=setup.optimizer, topk=(1,), **kwargs)


def now() -> tuple[float, float]:
    """Wall-clock and this process's CPU seconds.

    On a machine shared with other work the wall clock measures the neighbours too; the CPU
    time (all of this process's threads) counts only the work done here.
    """
    return time.perf_counter(), time.process_time()


def step_intervals(stamps: list[tuple[float, float]], warmup: int) -> list[tuple[float, float]]:
    """(wall, CPU) seconds between consecutive step ends, the first ``warmup`` steps left out."""
    pairs = itertools.pairwise(stamps[warmup:])
    return [(b[0] - a[0], b[1] - a[1]) for a, b in pairs]


def normalize(
    imgs: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, channels_last: bool
) -> torch.Tensor:
    """uint8 ``(B, T, C, H, W)`` to float; channels-last once T is folded into B (as the
    Recognizer lays its input out under ``channels_last``)."""
    if channels_last:
        flat = imgs.flatten(0, 1).contiguous(memory_format=torch.channels_last)  # (B*T, C, H, W)
        imgs = flat.view(imgs.shape)
    x = (imgs.float() - mean) / std
    if channels_last:
        x = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(x.shape)
    return x


def time_plain(
    net: nn.Module,
    setup: Setup,
    batches: list[dict],
    steps: int,
    variant: str,
    device: str,
    sync_at: Container[int] | None = None,
) -> list[tuple[float, float]]:
    """Per-step end times of a hand-written loop doing the module's training work.

    On a GPU the loop waits for the device at the end of the steps in ``sync_at`` (every step
    when None): waiting every step would expose host work that real training overlaps.
    """
    net = prepare_net(net.to(device), variant)
    net.train()
    optimizer = setup.optimizer(params=[p for p in net.parameters() if p.requires_grad])
    mean = torch.tensor((123.675, 116.28, 103.53), device=device).view(-1, 1, 1)
    std = torch.tensor((58.395, 57.12, 57.375), device=device).view(-1, 1, 1)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled="bf16" in parts(variant))
    stamps = []  # (wall, CPU) at the end of each step
    for step, batch in enumerate(Batches(batches, steps)):
        imgs = batch["imgs"].to(device, non_blocking=True)
        label = batch["label"].to(device, non_blocking=True)
        with autocast:
            x = normalize(imgs, mean, std, channels_last="channels_last" in parts(variant))
            loss = F.cross_entropy(net(x), label)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), CLIP_NORM)
        optimizer.step()
        if device == "cuda" and (sync_at is None or step in sync_at):
            torch.cuda.synchronize()
        stamps.append(now())
    return stamps


class StepClock(L.Callback):
    """Records the wall time at the end of every training step; on a GPU, after waiting for
    the device at the steps in ``sync_at`` (every step when None), as ``time_plain`` does."""

    def __init__(self, sync_at: Container[int] | None = None) -> None:
        self.stamps: list[tuple[float, float]] = []
        self.sync_at = sync_at

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = len(self.stamps)
        if pl_module.device.type == "cuda" and (self.sync_at is None or step in self.sync_at):
            torch.cuda.synchronize()
        self.stamps.append(now())


def lightning_trainer(max_steps: int, precision: str, clock: L.Callback, **kwargs) -> L.Trainer:
    """A Trainer stripped to the training loop, with the recipe's gradient clipping."""
    return L.Trainer(
        max_steps=max_steps,
        precision=precision,
        callbacks=[clock],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        gradient_clip_val=CLIP_NORM,
        gradient_clip_algorithm="norm",
        **kwargs,
    )


def time_module(
    net: nn.Module, setup: Setup, batches: list[dict], steps: int, variant: str, device: str
) -> list[tuple[float, float]]:
    """Per-step end times of the Recognizer under a Lightning Trainer."""
    module = build_module(net, setup, variant)
    clock = StepClock()
    precision = "bf16-mixed" if "bf16" in parts(variant) else "32-true"
    trainer = lightning_trainer(steps, precision, clock, accelerator=device, devices=1)
    trainer.fit(module, train_dataloaders=Batches(batches, steps))
    return clock.stamps


def measure(model: str, variant: str, args: argparse.Namespace) -> dict[str, float]:
    """Step seconds of the plain loop and the module over alternating rounds.

    Keys ``plain``, ``module``: medians of the wall clock; ``*_cpu``: medians of CPU time.
    """
    setup = MODELS[model]
    torch.manual_seed(0)
    net = setup.build()
    batches = make_batches(setup, 4)
    results: dict[str, list[tuple[float, float]]] = {"plain": [], "module": []}
    warmup = args.warmup * setup.step_factor
    steps = warmup + args.steps * setup.step_factor
    for _ in range(args.rounds):
        for name, run in (("plain", time_plain), ("module", time_module)):
            # Fresh compiler state: what another model left (a shape seen, so dynamic shapes
            # next time) would change what is compiled and measured.
            torch._dynamo.reset()
            stamps = run(copy.deepcopy(net), setup, batches, steps, variant, args.device)
            results[name] += step_intervals(stamps, warmup)
    out = {}
    for name, values in results.items():
        out[name] = statistics.median(wall for wall, _ in values)
        out[f"{name}_cpu"] = statistics.median(cpu for _, cpu in values)
    return out


def quiet_lightning() -> None:
    """Drop the Trainer's start-up lines, printed once per measurement."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in QUIET:
        warnings.filterwarnings("ignore", message=re.escape(message))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    threads = torch.get_num_threads()
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {threads} torch threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", nargs="+", choices=sorted(MODELS), default=["overhead", "toy", "r18"]
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=VARIANTS,
        default=["fp32", "channels_last", "bf16"],
        help="add `compile` to measure torch.compile (its first steps compile, ~1 min on CPU)",
    )
    parser.add_argument("--steps", type=int, default=4, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps (compile, caches)")
    parser.add_argument("--rounds", type=int, default=2, help="plain/module alternations")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; 1 keeps other work on a shared machine from skewing the comparison",
    )
    args = parser.parse_args()
    if args.steps < 2 or args.warmup < 1 or args.rounds < 1 or args.threads < 1:
        parser.error("--steps must be >= 2, --warmup, --rounds and --threads >= 1")
    quiet_lightning()
    torch.set_num_threads(args.threads)

    switches = module_switches()
    print(f"# Training step: plain PyTorch loop vs Recognizer under Lightning\n\n{machine()}")
    print(f"{args.rounds} rounds x {args.steps} timed steps after {args.warmup} warm-up steps")
    asked = set().union(*map(parts, args.variants))
    missing = sorted({"channels_last", "compile"} - switches & asked)
    if missing:
        print(f"Recognizer has no {'/'.join(missing)} switch: applied to its network here")
    print(
        "\nMedians over the steps; module / plain in wall-clock and in CPU time (the steadier\n"
        "on a machine shared with other work).\n\n"
        "| model | batch | variant | plain ms/step | module ms/step | module / plain: wall "
        "| CPU |\n|---|---|---|---:|---:|---:|---:|"
    )
    for model in args.models:
        setup = MODELS[model]
        shape = f"{setup.batch}x{setup.segments}x{setup.size}²"
        base = None
        for variant in args.variants:
            t = measure(model, variant, args)
            if variant == "fp32":
                base = t["plain"]
            note = f" ({base / t['plain']:.2f}x fp32)" if base and variant != "fp32" else ""
            print(
                f"| {model} | {shape} | {variant}{note} | {1e3 * t['plain']:.1f} "
                f"| {1e3 * t['module']:.1f} | {t['module'] / t['plain']:.3f} "
                f"| {t['module_cpu'] / t['plain_cpu']:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

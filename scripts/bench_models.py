"""The model table: parameters, compute per view, time per training clip and memory of each family.

Each model is composed as a user gets it (``model=<name>`` with the protocol it picks, 400
classes, no pretrained weights: nothing is fetched) and measured on one training view at the
protocol's training crop (224 px): the frames a training clip holds (TSN 3, TSM 8, I3D 32,
SlowOnly 4). GMACs are multiply-adds counted by ``torch.utils.flop_counter`` (mmaction2's model
zoo calls the same number "FLOPs"); the CPU time is the median wall time of one forward and
backward pass over a batch, divided by the batch, on this machine's threads.

Memory is calculated, not guessed: the tensors autograd saves for the backward pass of one
training forward, run on fake tensors (``torch.autograd.graph.saved_tensors_hooks``, each storage
counted once, parameters and buffers left out), at batches 1 and 2 give the bytes per clip (the
difference) and a fixed part (e.g. autocast's bf16 weight copies), in fp32 and under bf16
autocast; with the parameters, their gradients and the optimizer's state (SGD momentum: one copy,
AdamW: two) that gives the largest batch per 80 GB GPU at 224 px, keeping 10 % for the allocator,
cuDNN workspaces and the backward's transient buffers. ``--device cuda``
(``scripts/bench_gpu.sh`` runs it where a GPU is lent) measures training clips/s (bf16 autocast,
the network's memory format) and the peak memory of that batch instead.

    python scripts/bench_models.py                      # every family, batch 2, 3 rounds
    python scripts/bench_models.py --models tsm_r50 --rounds 5 --json out.json
    python scripts/bench_models.py --update-readme      # rewrite README.md's model table
    python scripts/bench_models.py --device cuda --batch 16 --json gpu.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import statistics
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

from actionrec import runs

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
README = ROOT / "README.md"
BEGIN, END = "<!-- bench_models:begin -->", "<!-- bench_models:end -->"
MODELS = (
    "tsn_r50",
    "tsm_r50",
    "i3d_r50",
    "slowonly_r50",
    "r2plus1d_r34",
    "x3d_s",
    "mvit_v2_s",
    "slowfast_r50",
    "videomae_vit_b16",
    "tv_r2plus1d_18",
    "tv_s3d",
    "tv_mvit_v2_s",
    "tv_swin3d_t",
)
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
    "r2plus1d_r34": ("r2plus1d_r34_8xb8-8x8x1-180e_kinetics400-rgb", 69.76),
    "x3d_s": ("x3d_s_13x6x1_facebook-kinetics400-rgb", 73.3),  # converted Facebook weights
    "mvit_v2_s": ("mvit-small-p244_32xb16-16x4x1-200e_kinetics400-rgb", 80.6),
    # torchvision's KINETICS400_V1 acc@1 (weights.meta["_metrics"], as torchvision's docs list
    # it); only R(2+1)D has a recipe here, the others are ported weights without one.
    "tv_r2plus1d_18": ("tv_r2plus1d_18_references-8xb24-16x1x1-45e_kinetics400", 67.463),
    "tv_s3d": ("", 68.368),
    "tv_mvit_v2_s": ("", 80.757),
    "tv_swin3d_t": ("", 77.715),
    "slowfast_r50": ("slowfast_r50_8xb8-4x16x1-256e_kinetics400-rgb", 75.55),
    "videomae_vit_b16": ("vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400", 81.3),
}


GPU_BYTES = 80e9  # the "80 GB" of an H100/A100 80GB
RESERVE = 0.10  # allocator fragmentation, cuDNN workspaces, the backward's transient buffers


def saved_bytes(net: torch.nn.Module, x: torch.Tensor, bf16: bool) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of ``net(x)`` (parameters and
    buffers, which stay resident anyway, left out; each storage counted once).

    The forward runs on fake CUDA tensors (``FakeTensorMode``: shapes, dtypes and storages, no
    data, no GPU needed), so a 16-frame transformer at batch 2 costs no memory here and bf16
    autocast casts by CUDA's op lists (e.g. softmax and layer norm stay fp32), not the CPU's.
    """
    saved: dict[int, int] = {}
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        state = {**dict(net.named_parameters()), **dict(net.named_buffers())}
        state = {name: mode.from_tensor(t).to("cuda") for name, t in state.items()}
        resident = {t.untyped_storage()._cdata for t in state.values()}

        def pack(t: torch.Tensor) -> torch.Tensor:
            storage = t.untyped_storage()
            if storage._cdata not in resident:  # views share their base's storage
                saved[storage._cdata] = storage.nbytes()
            return t

        with (
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
            cuda_autocast(bf16),
            FusedAttention(),
        ):
            out = torch.func.functional_call(net, state, (mode.from_tensor(x).to("cuda"),))
        del out
    return sum(saved.values())


class FusedAttention(TorchFunctionMode):
    """``F.scaled_dot_product_attention`` as a GPU runs it: a fused kernel that keeps its output
    and log-sum-exp for the backward, not the attention maps. Fake CUDA tensors cannot ask a
    device which kernels it has, so the dispatcher would pick the unfused math path; the
    memory-efficient kernel saves what FlashAttention saves and takes fp32 too."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not F.scaled_dot_product_attention:
            return func(*args, **kwargs)
        names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")
        a = {**dict(zip(names, args, strict=False)), **kwargs}
        q, k, v = a["query"], a["key"], a["value"]
        if torch.is_autocast_enabled("cuda"):  # as autocast casts scaled_dot_product_attention
            q, k, v = (t.to(torch.get_autocast_dtype("cuda")) for t in (q, k, v))
        return torch.ops.aten._scaled_dot_product_efficient_attention(
            q,
            k,
            v,
            a.get("attn_mask"),
            True,
            a.get("dropout_p", 0.0),
            a.get("is_causal", False),
            scale=a.get("scale"),
        )[0]


@contextlib.contextmanager
def cuda_autocast(enabled: bool):
    """CUDA's bf16 autocast where no GPU is present (``torch.autocast("cuda")`` switches itself
    off there); only fake tensors pass through it."""
    before = torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")
    torch.set_autocast_enabled("cuda", enabled)
    torch.set_autocast_dtype("cuda", torch.bfloat16)
    try:
        yield
    finally:
        torch.set_autocast_enabled("cuda", before[0])
        torch.set_autocast_dtype("cuda", before[1])
        torch.clear_autocast_cache()


def max_batch(net: torch.nn.Module, clip: torch.Tensor, optimizer_states: int) -> dict:
    """Largest training batch per 80 GB GPU, fp32 and bf16 autocast, by calculation."""
    n_params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    resident = 4 * n_params * (2 + optimizer_states)  # fp32 weights, grads, optimizer state
    budget = GPU_BYTES * (1 - RESERVE) - resident
    out = {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        one, two = (saved_bytes(net, torch.cat([clip[:1]] * b), bf16) for b in (1, 2))
        per_clip, fixed = two - one, 2 * one - two
        out[f"act_mb_per_clip_{name}"] = per_clip / 2**20
        out[f"max_batch_80gb_{name}"] = int((budget - fixed) // per_clip)
    return out


def optimizer_states(model: str) -> int:
    """Optimizer state copies of the model's recipe: AdamW keeps two, SGD with momentum one."""
    recipe = PUBLISHED.get(model, ("",))[0]
    experiment = CONF_DIR / "experiment" / f"{recipe}.yaml"
    cfg = compose_offline([f"experiment={recipe}"] if experiment.exists() else [f"model={model}"])
    return (
        2 if "adam" in OmegaConf.select(cfg, "optim.optimizer._target_", default="").lower() else 1
    )


def compose_offline(overrides: list[str]) -> DictConfig:
    """The train config of ``overrides`` with no pretrained weights to fetch."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    for key in ("model.net.backbone.pretrained", "model.net.backbone.weights"):
        if OmegaConf.select(cfg, key) is not None:
            OmegaConf.update(cfg, key, None)
    return cfg


def build(model: str):
    """The Recognizer of ``model=<model>`` and its training view's frame count."""
    cfg = compose_offline([f"model={model}", "data=kinetics400_video"])
    frames = cfg.data.num_clips * cfg.data.clip_len
    return runs.build_module(cfg), frames


def measure(model: str, batch: int, rounds: int, device: str, size: int = 224) -> dict:
    module, frames = build(model)
    net = module.net.train()
    clip = torch.randint(0, 256, (batch, frames, 3, size, size), dtype=torch.uint8)
    x = module.training_view(clip)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net.eval()(x[:1])
    macs = counter.get_total_flops() / 2
    net.train()
    recipe, top1 = PUBLISHED.get(model, ("", float("nan")))
    row = {
        "model": model,
        "frames": frames,
        "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
        "gmacs_per_view": macs / 1e9,
        **max_batch(net, x, optimizer_states(model)),
        "recipe": recipe,
        "k400_top1": top1,
        # torchvision's video weights publish their own acc@1 (weights.meta["_metrics"]).
        "source": "torchvision weights meta" if model.startswith("tv_") else "mmaction2 zoo",
    }
    if device == "cuda":
        row.update(measure_cuda(net, x, rounds))
    else:
        row["cpu_ms_per_clip"] = statistics.median(time_steps(net, x, rounds)) / batch * 1e3
    return row


def time_steps(net: torch.nn.Module, x: torch.Tensor, rounds: int, bf16: bool = False) -> list:
    """Wall seconds of ``rounds`` forward+backward passes after one warm-up pass."""
    times = []
    for i in range(rounds + 1):  # the first pass warms up allocators and kernels
        if x.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = net(x).float().sum()
        loss.backward()
        if x.is_cuda:
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
        net.zero_grad(set_to_none=True)
    return times


def measure_cuda(net: torch.nn.Module, x: torch.Tensor, rounds: int) -> dict:
    """Training clips/s and peak memory on the GPU: bf16 autocast, the net's memory format."""
    fmt = getattr(net, "memory_format", None) or torch.contiguous_format
    net, x = net.cuda().to(memory_format=fmt), x.cuda()
    if fmt == torch.channels_last_3d:  # 2-D networks take (B, T, C, H, W) and fold T themselves
        x = x.contiguous(memory_format=fmt)
    torch.cuda.reset_peak_memory_stats()
    times = time_steps(net, x, rounds, bf16=True)
    return {
        "gpu": torch.cuda.get_device_name(),
        "gpu_clips_per_s": len(x) / statistics.median(times),
        "gpu_peak_gb": torch.cuda.max_memory_allocated() / 1e9,
    }


def table(rows: list[dict], args: argparse.Namespace) -> str:
    """The model table in Markdown, with how and where it was measured."""
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    gpus = sorted({row["gpu"] for row in rows if "gpu" in row})
    gpu_note = (
        f"GPU clips/s on {', '.join(gpus)} (bf16 autocast, batch {args.batch})"
        if gpus
        else "GPU clips/s: none lent to this run (`bash scripts/bench_gpu.sh` measures it)"
    )
    lines = [
        f"_Measured by `python scripts/bench_models.py` on {when}: torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads of {os.cpu_count()} CPUs, batch {args.batch}, median "
        f"of {args.rounds} forward+backward passes at 224 px; GMACs of one view as "
        "`torch.utils.flop_counter` counts them (mmaction2's zoo calls them GFLOPs); "
        f"{gpu_note}. Max batch: the largest training batch per 80 GB GPU at 224 px, calculated "
        "from the activations autograd saves on a GPU (fused attention; fp32 | CUDA's bf16 "
        "autocast, which keeps softmax and norms in fp32), weights, gradients and the "
        "recipe's optimizer state, 10 % kept in reserve._",
        "",
        "| model | frames/view | params (M) | GMACs/view | CPU ms/training clip | GPU clips/s "
        "| max batch/80 GB (fp32 \\| bf16) | recipe (`experiment=`) | K400 top-1 | source |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        cpu = f"{row['cpu_ms_per_clip']:.0f}" if "cpu_ms_per_clip" in row else "-"
        gpu = f"{row['gpu_clips_per_s']:.0f}" if "gpu_clips_per_s" in row else "-"
        recipe = f"`{row['recipe']}`" if row["recipe"] else "- (torchvision's weights)"
        lines.append(
            f"| `{row['model']}` | {row['frames']} | {row['params_m']:.1f} | "
            f"{row['gmacs_per_view']:.1f} | {cpu} | {gpu} | "
            f"{row['max_batch_80gb_fp32']} \\| {row['max_batch_80gb_bf16']} | {recipe} | "
            f"{row['k400_top1']} | {row['source']} |"
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
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--merge",
        type=Path,
        help="a --json of another run (e.g. --device cuda): its GPU or CPU "
        "columns join this run's rows of the same model",
    )
    parser.add_argument("--update-readme", action="store_true")
    args = parser.parse_args()
    rows = []
    for model in args.models:
        rows.append(measure(model, args.batch, args.rounds, args.device))
        print(f"measured {model}: {rows[-1]}", flush=True)
    if args.merge:
        other = {row["model"]: row for row in json.loads(args.merge.read_text())}
        keys = ("gpu", "gpu_clips_per_s", "gpu_peak_gb", "cpu_ms_per_clip")
        for row in rows:
            row.update({k: v for k, v in other.get(row["model"], {}).items() if k in keys})
    block = table(rows, args)
    print(block)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    if args.update_readme:
        write_readme(block)


if __name__ == "__main__":
    main()

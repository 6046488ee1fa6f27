"""The benchmark scripts: the plain loop does the module's work, the GPU script runs on a CPU,
and a loader worker's memory stays flat."""

from __future__ import annotations

import copy
import importlib
import re
from pathlib import Path

import pytest
import torch

from actionrec.models.backbones import SimpleCNN
from actionrec.models.heads import TSNHead
from actionrec.models.recognizers import TSN

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture
def scripts(monkeypatch: pytest.MonkeyPatch):
    """Import a script from scripts/ by name (they import each other from there)."""
    monkeypatch.syspath_prepend(str(SCRIPTS))
    return importlib.import_module


def test_the_plain_loop_and_the_module_train_alike(scripts) -> None:
    bench_step = scripts("bench_step")
    torch.manual_seed(0)
    net = TSN(SimpleCNN((4,)), TSNHead(6, 4, dropout_ratio=0.0))  # no dropout: same draws
    setup = bench_step.Setup(lambda: net, bench_step.ADAMW, 2, 3, 16, 6)
    batches = bench_step.make_batches(setup, 2)
    bench_step.quiet_lightning()
    plain, lightning = copy.deepcopy(net), copy.deepcopy(net)
    stamps = bench_step.time_plain(plain, setup, batches, 4, "fp32", "cpu")
    bench_step.time_module(lightning, setup, batches, 4, "fp32", "cpu")
    assert len(stamps) == 4
    for (name, a), b in zip(plain.named_parameters(), lightning.parameters(), strict=True):
        assert not torch.equal(a, net.get_parameter(name)), f"{name} did not train"
        torch.testing.assert_close(a, b, msg=name)


def test_the_gpu_benchmark_runs_every_stage_on_a_cpu(scripts, tmp_path: Path, capsys) -> None:
    scripts("bench_gpu").main(["--dry-run", "--skip-ddp", "--dir", str(tmp_path / "clips")])
    out = capsys.readouterr().out
    assert "### CPU dry run" in out
    rows = re.findall(r"^\| (ceiling|same|real loading)[^|]*\| ([\d.]+) \|", out, re.MULTILINE)
    names = ["ceiling", "same", "same", "real loading", "ceiling", "same"]
    assert [name for name, _ in rows] == names
    assert all(float(value) > 0 for _, value in rows)
    assert re.search(r"Real loading reaches [\d.]+ of the ceiling", out)
    # CUDA's sync debug mode has nothing to count on a CPU.
    assert "none progress bar nan; actionrec progress bar nan; lightning progress bar nan" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_the_gpu_benchmark_refuses_to_run_without_cuda(scripts) -> None:
    with pytest.raises(SystemExit, match="measures a CUDA GPU and none is visible"):
        scripts("bench_gpu").main([])


@pytest.mark.slow
@pytest.mark.parametrize("isolate_decoder", [True, False])
def test_a_workers_memory_stays_flat_over_thousands_of_videos(
    scripts, tmp_path: Path, isolate_decoder: bool
) -> None:
    bench_memory = scripts("bench_memory")
    root = tmp_path / "toy"
    bench_memory.make_videos(root, 120)
    points = bench_memory.worker_memory(root, 3000, isolate_decoder, every=500)
    assert points[-1][0] == 3000
    # Measured: +4-6 MiB (worker and decoder) over 2500 samples; a leak of a decoded clip per
    # sample (36 KiB here) would be 90 MiB.
    assert bench_memory.growth(points, warmup=500) < 16


def test_the_model_tables_memory_is_the_saved_activations(scripts) -> None:
    bench_models = scripts("bench_models")
    net = torch.nn.Sequential(torch.nn.Linear(100, 50), torch.nn.ReLU(), torch.nn.Linear(50, 10))
    x = torch.randn(3, 100)
    # autograd keeps the first Linear's input (for its weight's gradient) and the ReLU's output
    # (which the second Linear keeps too: one storage): 100 + 50 floats per row.
    assert bench_models.saved_bytes(net, x, bf16=False) == 3 * (100 + 50) * 4
    out = bench_models.max_batch(net, x, optimizer_states=1)
    assert out["act_mb_per_clip_fp32"] * 2**20 == (100 + 50) * 4
    resident = 4 * (100 * 50 + 50 + 50 * 10 + 10) * 3  # weights, gradients, momentum
    budget = bench_models.GPU_BYTES * (1 - bench_models.RESERVE) - resident
    assert out["max_batch_80gb_fp32"] == int(budget // ((100 + 50) * 4))
    assert out["max_batch_80gb_bf16"] > out["max_batch_80gb_fp32"]  # bf16 copies, half the bytes


class _Attention(torch.nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.qkv = torch.nn.Linear(dim, 3 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).unsqueeze(1).chunk(3, dim=-1)
        return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def test_the_model_tables_memory_follows_what_a_gpu_keeps(scripts) -> None:
    bench_models = scripts("bench_models")
    # Attention as a GPU runs it, fused: no tokens x tokens map is kept, so the bytes grow with
    # the tokens, not their square (the math path, which fake CUDA tensors would otherwise take,
    # keeps a 1024 x 1024 map here: 4 MiB per clip).
    net = _Attention(16)
    short, long = (
        bench_models.saved_bytes(net, torch.randn(1, n, 16), bf16=False) for n in (256, 1024)
    )
    assert long <= 4 * short + 4096
    assert long < 1024 * 1024 * 4
    # bf16 autocast by CUDA's lists: the Linear's input is kept as a bf16 copy, but softmax runs
    # (and keeps its output) in fp32 on a GPU; a CPU's autocast would keep it in bf16.
    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Softmax(-1))
    x = torch.randn(8, 64)
    assert bench_models.saved_bytes(net, x, bf16=True) == 8 * 64 * (2 + 4)
    assert bench_models.saved_bytes(net, x, bf16=False) == 8 * 64 * (4 + 4)


def test_the_model_table_has_every_family(scripts) -> None:
    bench_models = scripts("bench_models")
    models = {p.stem for p in (SCRIPTS.parent / "conf" / "model").glob("*.yaml")}
    listed = set(bench_models.MODELS)
    assert listed <= models, "bench_models.MODELS names a model that has no conf/model file"
    families = {m.split("_")[0] for m in models - {"tsn_toy", "tsn_r18"}}
    assert families <= {m.split("_")[0] for m in listed}, "add the new family to MODELS"
    assert set(bench_models.PUBLISHED) == listed, "every row of the table needs its published top-1"

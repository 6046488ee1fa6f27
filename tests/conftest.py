"""Shared fixtures: the composed config, the mmaction2 sample media, offline W&B."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
SAMPLES = ROOT.parent / "shared" / "data" / "mmaction2-samples"

os.environ.setdefault("PROJECT_ROOT", str(ROOT))
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")


# CI lays shared/ beside the clone, so missing samples there are a failure, not a skip.
requires_samples = pytest.mark.skipif(
    not SAMPLES.is_dir() and not os.environ.get("CI"),
    reason=f"mmaction2 sample media not found at {SAMPLES} (a clone without ../shared)",
)


def requires_backend(backend: str) -> pytest.MarkDecorator:
    """Skip unless the video ``backend`` decodes here; the reason says what to install."""
    from actionrec.data.decoding import backend_unavailable

    reason = backend_unavailable(backend)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def backend_param(backend: str) -> object:
    """``backend`` as a parameter that skips, saying why, where the backend cannot decode."""
    return pytest.param(backend, marks=requires_backend(backend))


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """mmaction2's sample media (../shared/data/mmaction2-samples), read-only."""
    if not SAMPLES.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"sample media not found at {SAMPLES}")
        pytest.skip(f"sample media not found at {SAMPLES}")
    return SAMPLES


def compose_config(name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose ``conf/{name}.yaml`` as the entry points do, with outputs under ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir / "logs")
        del cfg["hydra"]
    return cfg


@pytest.fixture
def compose_train(tmp_path: Path) -> Callable[..., DictConfig]:
    return lambda *overrides: compose_config("train", list(overrides), tmp_path)


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small toy dataset rendered once per test session."""
    from actionrec.data.toy import generate_toy_dataset

    root = tmp_path_factory.mktemp("toy")
    return generate_toy_dataset(root, videos_per_class_train=4, videos_per_class_val=2, seed=0)


def toy_overrides(root: Path) -> list[str]:
    """Point the toy data config at a pre-rendered (small) toy dataset."""
    return [
        "data.prepare=null",
        f"data.data_root={root}/videos",
        f"data.data_root_val={root}/videos",
        f"data.ann_file_train={root}/train_list_videos.txt",
        f"data.ann_file_val={root}/val_list_videos.txt",
        f"data.ann_file_test={root}/val_list_videos.txt",
        f"data.label_map={root}/classes.txt",
        "data.videos_per_gpu=4",
        "data.val_videos_per_gpu=4",
        "data.test_videos_per_gpu=4",
        "data.workers_per_gpu=0",
    ]


# Two training steps, no validation: the smallest genuine run.
TINY = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=0",
    "trainer.log_every_n_steps=1",
    "data.videos_per_gpu=2",
]


@pytest.fixture(scope="session")
def tiny_checkpoint(toy_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The last checkpoint of a toy TSN trained for two steps, with its run config."""
    out = tmp_path_factory.mktemp("tiny_run")
    cfg = compose_config("train", [*toy_overrides(toy_root), *TINY], out)
    load_entry_point("train").train(cfg)
    return out / "checkpoints" / "last.ckpt"


def load_entry_point(name: str):
    """Import src/{name}.py (a script, not a package module) for in-process runs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        f"actionrec_entry_{name}", ROOT / "src" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

"""src/eval.py (and the other entry points) as typed: what weights they read, and from where."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from tests.conftest import TINY, toy_overrides
from tests.test_checkpoints import to_mmaction_key
from tests.test_train import eval_run_dir, run_script

from actionrec.models.backbones import ResNet
from actionrec.models.heads import TSNHead
from actionrec.models.recognizers import TSN

pytestmark = pytest.mark.filterwarnings("ignore:.*could not find the monitored key")


def offline(tmp_path: Path) -> dict[str, str]:
    """An environment where any download fails at once: an empty torch hub, a dead proxy."""
    dead = "http://127.0.0.1:9"
    return {
        "TORCH_HOME": str(tmp_path / "torch_home"),
        "HTTPS_PROXY": dead,
        "https_proxy": dead,
        "HTTP_PROXY": dead,
        "http_proxy": dead,
        "NO_PROXY": "",
        "no_proxy": "",
    }


@pytest.mark.parametrize("weights", [[], ["ckpt_path=null"]])
def test_eval_without_weights_refuses_and_writes_nothing(weights, toy_root, tmp_path) -> None:
    result = run_script(
        ["src/eval.py", *toy_overrides(toy_root), *weights, f"paths.log_dir={tmp_path}"]
    )
    assert result.returncode == 1, result.stdout[-2000:]
    assert "ckpt_path=" in result.stderr and "load_from=" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.rglob("metrics.json"))
    assert not list(tmp_path.rglob("confusion_matrix_*"))


def tsn_state_dict(depth: int, num_classes: int, style: str) -> dict[str, torch.Tensor]:
    """Random weights as torchvision (a bare ResNet) or mmaction2 (a TSN) would save them."""
    if style == "torchvision":
        return getattr(torchvision.models, f"resnet{depth}")().state_dict()
    width = 512 if depth < 50 else 2048
    net = TSN(ResNet(depth=depth), TSNHead(num_classes, in_channels=width))
    return {"state_dict": {to_mmaction_key(k): v for k, v in net.state_dict().items()}}


def test_the_readme_load_from_evaluation_fetches_nothing(samples_dir, tmp_path) -> None:
    """`python src/eval.py model=tsn_r50 data=kinetics400 load_from=tsn_mmaction.pth ...`"""
    weights = tmp_path / "tsn_mmaction.pth"
    torch.save(tsn_state_dict(50, 400, "mmaction2"), weights)
    command = [
        "src/eval.py",
        "model=tsn_r50",
        "data=kinetics400",
        f"load_from={weights}",
        "model.max_testing_views=50",
        # The two sample frame folders of mmaction2's tests, one clip of ten crops each.
        f"data.data_root_val={samples_dir}",
        f"data.ann_file_test={samples_dir}/annotations/rawframe_test_list.txt",
        "data.test_num_clips=1",
        "data.workers_per_gpu=0",
        f"paths.log_dir={tmp_path}/logs",
    ]
    result = run_script(command, env=offline(tmp_path))
    assert "cannot load the pretrained weights" not in result.stderr
    assert (eval_run_dir(result) / "metrics.json").is_file()
    assert not list((tmp_path / "torch_home").rglob("*.pth"))


def test_training_from_load_from_fetches_nothing(toy_root, tmp_path) -> None:
    weights = tmp_path / "resnet18.pth"
    torch.save(tsn_state_dict(18, 1000, "torchvision"), weights)
    command = [
        "src/train.py",
        *toy_overrides(toy_root),
        *TINY,
        "model=tsn_r18",  # pretrained: IMAGENET1K_V1, which load_from replaces
        f"load_from={weights}",
        f"paths.log_dir={tmp_path}/logs",
    ]
    result = run_script(command, env=offline(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "not fetching model.net.backbone.pretrained" in result.stdout + result.stderr


def test_predict_from_a_state_dict_fetches_nothing(toy_root, tmp_path) -> None:
    weights = tmp_path / "tsn_r18_mmaction.pth"
    torch.save(tsn_state_dict(18, 6, "mmaction2"), weights)
    video = toy_root / "videos" / "square" / "val_0000.mp4"
    command = ["scripts/predict.py", str(video), f"ckpt_path={weights}", "model=tsn_r18"]
    result = run_script(command, env=offline(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(result.stdout.strip().splitlines()) == 5


@pytest.fixture(scope="session")
def trained(tiny_checkpoint) -> Path:
    return tiny_checkpoint


def test_eval_says_only_what_a_user_needs(trained, tmp_path) -> None:
    result = run_script(["src/eval.py", f"ckpt_path={trained}", f"paths.log_dir={tmp_path}"])
    assert (eval_run_dir(result) / "metrics.json").is_file()
    output = result.stdout + result.stderr
    # Lightning's notices of restoring a training state, which an evaluation does not do.
    assert "Restoring states from the checkpoint" not in output
    assert "callbacks used to create the checkpoint" not in output
    assert "Loaded model weights from the checkpoint" not in output

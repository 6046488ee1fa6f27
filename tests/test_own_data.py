"""The README's "Adding a dataset" section, run as written on a user's few dozen clips.

The commands and the YAML come out of README.md itself, so the README cannot drift from what
works: only the location (a temporary ``data/`` and ``conf/``) is changed.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
import torch
import torchvision
from tests.conftest import ROOT
from tests.test_train import run_script

from actionrec.data.toy import generate_toy_dataset


def readme_blocks(section: str) -> list[tuple[str, str]]:
    """The fenced code blocks of a README section: ``(language, text)`` in order."""
    text = (ROOT / "README.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w*)\n(.*?)```", body, flags=re.S)


def commands(block: str) -> list[list[str]]:
    """The shell commands of a block, one argv each (continuations joined, comments dropped)."""
    return [shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines()]


def block_with(blocks: list[tuple[str, str]], text: str, language: str = "") -> str:
    (found,) = [b for lang, b in blocks if text in b and lang == (language or lang)]
    return found


def as_python(argv: list[str], data: Path) -> list[str]:
    """A README command for run_script: ``python`` dropped, ``data/`` made the temporary one."""
    assert argv[0] == "python", argv
    return [arg.replace("data/mydata", str(data / "mydata")) for arg in argv[1:]]


def fake_imagenet_weights(torch_home: Path) -> None:
    """torchvision's ResNet-50 ImageNet file where torchvision caches downloads (random
    weights: nothing can be downloaded here, and the name is what is tested)."""
    url = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url
    path = torch_home / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    path.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet50().state_dict(), path)


@pytest.fixture(scope="module")
def own_data(tmp_path_factory) -> Path:
    """``data/mydata/videos/<class>/<clip>.mp4``: 3 classes x 12 clips at 128x96, nothing else."""
    root = tmp_path_factory.mktemp("own")
    render = generate_toy_dataset(
        root / "render",
        num_classes=3,
        videos_per_class_train=10,
        videos_per_class_val=2,
        width=128,
        height=96,
        seed=7,
    )
    shutil.copytree(render / "videos", root / "data" / "mydata" / "videos")
    shutil.rmtree(render)
    return root


def test_the_readme_recipe_for_ones_own_data(own_data, tmp_path) -> None:
    data = own_data / "data"
    blocks = readme_blocks("Adding a dataset")
    for argv in commands(block_with(blocks, "scripts/build_file_list.py")):
        result = run_script(as_python(argv, data))
        assert result.returncode == 0, result.stderr[-3000:]
    clips = (data / "mydata" / "train_list_videos.txt").read_text().splitlines()
    assert 25 <= len(clips) <= 31  # a few dozen clips, 80% of them for training

    conf = tmp_path / "conf" / "data"
    conf.mkdir(parents=True)
    (conf / "mydata.yaml").write_text(block_with(blocks, "mydata", "yaml"))
    where = [
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]",  # conf/data/mydata.yaml, elsewhere
        f"paths.data_dir={data}",
        f"paths.log_dir={tmp_path / 'logs'}",
    ]
    limit, r50 = commands(block_with(blocks, "src/train.py data=mydata"))

    result = run_script([*as_python(limit, data), *where])
    assert result.returncode == 0, result.stderr[-3000:]
    run = Path(re.search(r"Run directory: (.+)", result.stdout).group(1))
    best = run / "checkpoints" / "best.ckpt"
    assert best.is_file()  # what every evaluate / predict / export example points at
    assert "val/top1" in json.loads((run / "metrics.json").read_text())

    # The ResNet-50 recipe, cut to one batch: its ImageNet weights load by their name.
    torch_home = tmp_path / "torch"
    fake_imagenet_weights(torch_home)
    cut = ["trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1"]
    result = run_script([*as_python(r50, data), *where, *cut], env={"TORCH_HOME": str(torch_home)})
    assert result.returncode == 0, result.stderr[-3000:]

    few = "data.test_num_clips=2"  # the README's override; UCF-101's 25 x 3 crops is slow here
    result = run_script(["src/eval.py", f"ckpt_path={best}", few, f"paths.log_dir={tmp_path}"])
    assert result.returncode == 0, result.stderr[-3000:]
    evaluated = Path(re.search(r"Run directory: (.+)", result.stdout).group(1))
    assert "test/top1" in json.loads((evaluated / "metrics.json").read_text())

    video = next((data / "mydata" / "videos").glob("*/*.mp4"))
    result = run_script(["scripts/predict.py", str(video), f"ckpt_path={best}", few])
    assert result.returncode == 0, result.stderr[-3000:]
    classes = (data / "mydata" / "classes.txt").read_text().split()
    shown = [line.split()[1] for line in result.stdout.splitlines()]
    assert sorted(shown) == sorted(classes)  # names from the run's label map, top 3 of 3


def test_the_readme_commands_are_found() -> None:
    """The parsing above finds what it runs (a README edit must not silently skip a step)."""
    blocks = readme_blocks("Adding a dataset")
    assert len(commands(block_with(blocks, "scripts/build_file_list.py"))) == 2
    assert [argv[:3] for argv in commands(block_with(blocks, "src/train.py data=mydata"))] == [
        ["python", "src/train.py", "data=mydata"],
        ["python", "src/train.py", "data=mydata"],
    ]

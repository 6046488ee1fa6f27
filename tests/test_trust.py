"""Checkpoints never run code: hostile files against every entry point that reads one.

Two kinds of hostile file, each with a marker file it would create if its code ran:
- one that loads with ``torch.load(weights_only=True)`` but whose ``run_config`` names a
  dangerous ``_target_`` (``torch.load`` of a second file, unrestricted);
- one that needs ``weights_only=False``: a pickled object whose ``__reduce__`` writes the marker.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from tests.conftest import CONF_DIR, TINY, compose_config, toy_overrides
from tests.test_predict_export import mmaction_checkpoint
from tests.test_train import run_script

from actionrec import runs, trust
from actionrec.trust import UntrustedCheckpointError

pytestmark = pytest.mark.filterwarnings("ignore:.*could not find the monitored key")
# The groups a checkpoint's run_config hands to eval, predict and export.
RESTORED_CONF = [p for g in runs.RESTORED_GROUPS for p in sorted((CONF_DIR / g).rglob("*.yaml"))]


class WritesMarker:
    """Unpickling this creates ``path``: what a malicious checkpoint would do instead."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="session")
def trained(tiny_checkpoint) -> Path:
    return tiny_checkpoint


def pickle_bomb(path: Path, marker: Path) -> Path:
    """A file that only ``weights_only=False`` loads, and that writes ``marker`` when it does."""
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": WritesMarker(marker)}, path)
    return path


def with_run_config(src: Path, dst: Path, edit) -> Path:
    """Copy the checkpoint ``src`` to ``dst`` with ``edit(run_config)`` applied."""
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    edit(ckpt["run_config"])
    torch.save(ckpt, dst)
    return dst


def naming_torch_load(src: Path, dst: Path, marker: Path) -> Path:
    """``src`` whose run_config builds its loss with ``torch.load`` of a pickle bomb."""
    bomb = pickle_bomb(dst.with_suffix(".bomb.pt"), marker)
    hostile = {"_target_": "torch.load", "f": str(bomb), "weights_only": False}
    return with_run_config(src, dst, lambda rc: rc["model"].update(loss=hostile))


def one_error_line(result) -> str:
    """The one ``error: ...`` line a refused command ends with; no traceback."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    assert "Traceback" not in output, output[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


def command(entry: str, path: Path, toy_root: Path, tmp_path: Path) -> list[str]:
    """What a user types to hand ``path`` to ``entry``."""
    logs = f"paths.log_dir={tmp_path}/logs"
    video = str(toy_root / "videos" / "square" / "val_0000.mp4")
    return {
        "train ckpt_path": [
            "src/train.py",
            *toy_overrides(toy_root),
            *TINY,
            "trainer.max_epochs=2",  # one epoch more than the checkpoint's run trained
            f"ckpt_path={path}",
            logs,
        ],
        "train load_from": [
            "src/train.py",
            *toy_overrides(toy_root),
            *TINY,
            f"load_from={path}",
            logs,
        ],
        "eval ckpt_path": ["src/eval.py", f"ckpt_path={path}", logs],
        "eval load_from": ["src/eval.py", *toy_overrides(toy_root), f"load_from={path}", logs],
        "predict": ["scripts/predict.py", video, f"ckpt_path={path}"],
        "export": ["scripts/export.py", f"ckpt_path={path}", f"out_dir={tmp_path}/export"],
        "convert": ["scripts/convert_mmaction_checkpoint.py", str(path), str(tmp_path / "out.pth")],
    }[entry]


ENTRY_POINTS = [
    "train ckpt_path",
    "train load_from",
    "eval ckpt_path",
    "eval load_from",
    "predict",
    "export",
    "convert",
]
# The entry points that rebuild the run from the checkpoint's config.
REBUILDS = {"eval ckpt_path", "predict", "export"}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_pickled_object_is_refused_and_never_runs(entry, toy_root, tmp_path) -> None:
    marker = tmp_path / "pwned"
    bomb = pickle_bomb(tmp_path / "bomb.ckpt", marker)
    line = one_error_line(run_script(command(entry, bomb, toy_root, tmp_path)))
    assert not marker.exists()
    assert "bomb.ckpt is refused: it pickles Python objects" in line
    assert "weights_only=False" not in line and "`False`" not in line


def slow(*values):
    return pytest.param(*values, marks=pytest.mark.slow)


# The entry points that only take weights from a file never built from its config, before
# either: theirs are guards, run with the slow tests, to keep the default suite short.
@pytest.mark.parametrize("entry", [e if e in REBUILDS else slow(e) for e in ENTRY_POINTS])
def test_a_target_in_the_run_config_never_runs(entry, trained, toy_root, tmp_path) -> None:
    marker = tmp_path / "pwned"
    if entry == "convert":  # an mmaction2 checkpoint, as the script takes, with the same config
        src = tmp_path / "mmaction.pth"
        mmaction_checkpoint(src)
        torch.save({**torch.load(src, weights_only=True), "run_config": {"model": {}}}, src)
    else:
        src = trained
    hostile = naming_torch_load(src, tmp_path / "hostile.ckpt", marker)
    result = run_script(command(entry, hostile, toy_root, tmp_path))
    assert not marker.exists()
    if entry in REBUILDS:
        line = one_error_line(result)
        assert f"ckpt_path={hostile}: run_config.model.loss names _target_ 'torch.load'" in line
        assert "trust_checkpoint_targets=[torch.load]" in line
    else:  # the weights are all these take from the file: they work, the config stays data
        assert result.returncode == 0, result.stderr[-3000:]


# Every entry point reads files through one function; the default run keeps the two commands
# that printed torch's traceback or its advice to load unrestricted.
@pytest.mark.parametrize(
    ("entry", "kind"),
    [
        ("train ckpt_path", "text"),
        ("eval ckpt_path", "jpeg"),
        slow("train load_from", "truncated"),
        slow("eval load_from", "text"),
        slow("predict", "truncated"),
        slow("export", "jpeg"),
        slow("convert", "truncated"),
    ],
)
def test_a_file_that_is_no_checkpoint_gets_one_line(
    entry, kind, trained, samples_dir, toy_root, tmp_path
) -> None:
    path = tmp_path / "weights.ckpt"
    if kind == "text":
        path.write_text("epoch: 3\nbest: 0.91\n")
    elif kind == "truncated":
        path.write_bytes(trained.read_bytes()[:5000])
    else:
        path.write_bytes((samples_dir / "imgs" / "img_00001.jpg").read_bytes())
    line = one_error_line(run_script(command(entry, path, toy_root, tmp_path)))
    expected = "is a damaged or truncated checkpoint" if kind == "truncated" else "is not a"
    assert f"{path} {expected}" in line
    assert "weights_only=False" not in line and "`False`" not in line


# ---------------------------------------------------------------- the allow-list, in process


def saved_run(tmp_path: Path, edit=None) -> Path:
    """A checkpoint file holding only the run config of the composed toy training config."""
    from omegaconf import OmegaConf

    cfg = compose_config("train", [], tmp_path)
    run_config = OmegaConf.to_container(cfg, resolve=True)
    if edit is not None:
        edit(run_config)
    path = tmp_path / "run.ckpt"
    torch.save({"run_config": run_config}, path)
    return path


def restore(tmp_path: Path, path: Path, *overrides: str):
    cfg = compose_config("eval", [f"ckpt_path={path}", *overrides], tmp_path)
    return runs.restore_run_config(cfg, path, [f"ckpt_path={path}", *overrides])


EVIL = {"_target_": "torch.load", "f": "x.pt", "weights_only": False}


def put_in_pipeline(rc):
    rc["data"]["test_pipeline"].insert(1, EVIL)


def put_partial_optimizer(rc):
    rc["optim"]["optimizer"] = {**EVIL, "_partial_": True}


def put_in_args(rc):
    rc["model"]["net"]["head"]["_args_"] = [{"nested": [EVIL]}]


def put_in_datamodule(rc):
    rc["data"]["_target_"] = "actionrec.checkpoints.torch.load"  # a module's import of torch


def put_project_function(rc):
    rc["model"]["loss"] = {"_target_": "actionrec.runs.write_metrics", "metrics": {}}


@pytest.mark.parametrize(
    ("edit", "key", "target"),
    [
        (put_in_pipeline, "data.test_pipeline.1", "torch.load"),
        (put_partial_optimizer, "optim.optimizer", "torch.load"),
        (put_in_args, "model.net.head._args_.0.nested.0", "torch.load"),
        (put_in_datamodule, "data", "actionrec.checkpoints.torch.load"),
        (put_project_function, "model.loss", "actionrec.runs.write_metrics"),
    ],
)
def test_every_target_from_the_file_is_checked(edit, key, target, tmp_path) -> None:
    path = saved_run(tmp_path, edit)
    with pytest.raises(UntrustedCheckpointError) as info:
        restore(tmp_path, path)
    assert f"run_config.{key} names _target_ '{target}'" in str(info.value)
    assert f"ckpt_path={path}" in str(info.value)


@pytest.mark.parametrize(
    "value", ["${oc.env:EVIL_TARGET}", "${oc.decode:'{_target_: torch.load}'}", "a ${x} b"]
)
def test_interpolations_from_the_file_are_refused(value, tmp_path) -> None:
    path = saved_run(tmp_path, lambda rc: rc["model"]["net"]["head"].update(dropout_ratio=value))
    with pytest.raises(UntrustedCheckpointError, match=r"run_config\.model\.net\.head\.dropout"):
        restore(tmp_path, path)


def test_the_users_own_targets_stay_allowed(tmp_path) -> None:
    # The file's hostile loss, replaced on the command line by one that no config uses.
    path = saved_run(tmp_path, lambda rc: rc["model"].update(loss=EVIL))
    cfg = restore(tmp_path, path, "model.loss={_target_:torch.nn.MultiMarginLoss,margin:2}")
    assert cfg.model.loss._target_ == "torch.nn.MultiMarginLoss"  # merged, as Hydra merges
    assert restore(tmp_path, path, "model.loss=null").model.loss is None
    head = saved_run(tmp_path, lambda rc: rc["model"]["net"]["head"].update(_target_="torch.load"))
    cfg = restore(tmp_path, head, "model.net.head._target_=my_package.heads.MyHead")
    assert cfg.model.net.head._target_ == "my_package.heads.MyHead"
    assert restore(tmp_path, path, "model=tsn_toy").model.loss is None  # the user's group


def test_trusting_a_target_is_a_deliberate_act(tmp_path) -> None:
    path = saved_run(tmp_path, lambda rc: rc["model"].update(loss=EVIL))
    cfg = restore(tmp_path, path, "trust_checkpoint_targets=[torch.load]")
    assert cfg.model.loss._target_ == "torch.load"
    with pytest.raises(UntrustedCheckpointError):
        restore(tmp_path, path, "trust_checkpoint_targets=[torch.save]")


def test_a_genuine_run_config_restores(tmp_path) -> None:
    cfg = restore(
        tmp_path, saved_run(tmp_path), "data.test_num_clips=2", "~model.net.head.init_std"
    )
    assert cfg.data.test_num_clips == 2 and "init_std" not in cfg.model.net.head
    assert cfg.optim.optimizer._target_ == "torch.optim.AdamW"


@pytest.mark.parametrize("path", RESTORED_CONF, ids=lambda p: str(p.relative_to(CONF_DIR)))
def test_every_target_of_the_configs_is_allowed(path: Path) -> None:
    """The allow-list keeps step with conf/: a checkpoint of any recipe restores (its
    data.prepare step, which writes files, is left out of a restored config)."""
    for key, target in trust.find_targets(yaml.safe_load(path.read_text()), ""):
        assert key.startswith("prepare.") or trust.is_allowed(target), f"{path}: {key} = {target}"


@pytest.mark.parametrize(
    "target",
    [
        "torch.load",
        "os.system",
        "builtins.exec",
        "actionrec.checkpoints.torch.load",
        "actionrec.runs.write_metrics",
        "actionrec.data.toy.ensure_toy_dataset",  # writes a dataset where it is told
        "actionrecx.Evil",
        "actionrec",
        "actionrec.models.backbones.torchvision.models.resnet50",
    ],
)
def test_what_the_allow_list_refuses(target: str) -> None:
    assert not trust.is_allowed(target)
    assert trust.is_allowed(target, trusted=[target])

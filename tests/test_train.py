"""Training end to end: in process, as the literal command, under DDP, resumed."""

from __future__ import annotations

import csv
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import ROOT, load_entry_point, toy_overrides

from actionrec import runs
from actionrec.data.decoding import backend_unavailable

SHORT = [
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "callbacks.checkpoints.every_n_epochs=1",
]


@pytest.fixture(scope="module")
def train_entry():
    return load_entry_point("train")


def run_script(
    args: list[str], cwd: Path = ROOT, env: dict | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def completed_epochs(ckpt: dict) -> int:
    return ckpt["loops"]["fit_loop"]["epoch_progress"]["current"]["completed"]


def test_train_in_process_saves_checkpoints_and_metrics(
    train_entry, compose_train, toy_root, tmp_path
) -> None:
    cfg = compose_train(*toy_overrides(toy_root), *SHORT, "test=true")
    metrics = train_entry.train(cfg)
    for key in (
        "train/loss",
        "train/top1",
        "val/loss",
        "val/top1",
        "val/top5",
        "val/mean_class_acc",
        "test/top1",
        "test/mean_class_acc",
    ):
        assert key in metrics, key
    ckpts = {p.name for p in (tmp_path / "checkpoints").iterdir()}
    assert {"best.ckpt", "last.ckpt", "epoch_1.ckpt", "epoch_2.ckpt"} <= ckpts  # after N epochs
    path = runs.write_metrics(metrics, tmp_path)
    assert json.loads(path.read_text())["val/top1"] == metrics["val/top1"]


SAMPLE_LISTS = {
    "video": ("video", "video_test_list.txt", []),
    "rawframes": ("rawframes", "rawframe_test_list.txt", []),
    "rawframes_with_offset": (
        "rawframes",
        "rawframe_test_list_with_offset.txt",
        ["data.with_offset=true"],
    ),
    "video_multi_label": ("video", "video_test_list_multi_label.txt", ["data.multi_class=true"]),
    "rawframes_multi_label": (
        "rawframes",
        "rawframe_test_list_multi_label.txt",
        ["data.multi_class=true"],
    ),
}


@pytest.mark.parametrize("kind", list(SAMPLE_LISTS))
def test_train_on_mmaction2_sample_media(train_entry, compose_train, samples_dir, kind) -> None:
    fmt, name, extra = SAMPLE_LISTS[kind]
    ann = samples_dir / "annotations" / name
    cfg = compose_train(
        "model=tsn_r18",
        "model.net.backbone.pretrained=null",
        "data=kinetics400",
        f"data.dataset_type={fmt}",
        f"data.data_root={samples_dir}",
        f"data.data_root_val={samples_dir}",
        f"data.ann_file_train={ann}",
        f"data.ann_file_val={ann}",
        f"data.ann_file_test={ann}",
        "data.videos_per_gpu=2",
        "data.val_videos_per_gpu=2",
        "data.test_videos_per_gpu=1",
        "data.workers_per_gpu=0",
        "data.test_num_clips=2",
        "trainer.max_epochs=1",
        "trainer.check_val_every_n_epoch=1",
        "trainer.limit_test_batches=1",
        "test=true",
        *extra,
    )
    metrics = train_entry.train(cfg)
    assert 0.0 <= metrics["val/top1"] <= 1.0
    assert "test/top1" in metrics
    if "multi_label" in kind:
        assert 0.0 <= metrics["val/mAP"] <= 1.0 and "val/mean_class_acc" not in metrics
    else:
        assert "val/mean_class_acc" in metrics


def test_resume_from_last_continues_the_run(train_entry, compose_train, toy_root, tmp_path) -> None:
    first = compose_train(*toy_overrides(toy_root), *SHORT[1:], "trainer.max_epochs=1")
    train_entry.train(first)
    last = tmp_path / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert completed_epochs(state) == 1 and state["global_step"] == 3
    assert state["optimizer_states"][0]["state"]  # momentum buffers are saved
    resumed = compose_train(
        *toy_overrides(toy_root), *SHORT[1:], "trainer.max_epochs=2", f"ckpt_path={last}"
    )
    train_entry.train(resumed)
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert completed_epochs(state) == 2 and state["global_step"] == 6


def test_load_from_initialises_weights_only(train_entry, compose_train, toy_root, tmp_path) -> None:
    first = compose_train(*toy_overrides(toy_root), *SHORT[1:], "trainer.max_epochs=1")
    train_entry.train(first)
    saved = tmp_path / "first.ckpt"
    (tmp_path / "checkpoints" / "last.ckpt").rename(saved)
    # One step at lr 0: the parameters must stay exactly the loaded ones; the epochs restart.
    second = compose_train(
        *toy_overrides(toy_root),
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=0",
        "optim.optimizer.lr=0",
        "optim.optimizer.weight_decay=0",
        f"load_from={saved}",
    )
    train_entry.train(second)
    state = torch.load(
        tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    loaded = torch.load(saved, map_location="cpu", weights_only=False)["state_dict"]
    assert completed_epochs(state) == 1 and state["global_step"] == 1
    params = [k for k in loaded if not k.endswith(("running_mean", "running_var", "_tracked"))]
    assert len(params) > 10
    for key in params:
        torch.testing.assert_close(state["state_dict"][key], loaded[key])


def test_the_literal_command(toy_root, tmp_path) -> None:
    result = run_script(
        ["src/train.py", *toy_overrides(toy_root), *SHORT, f"paths.log_dir={tmp_path}"]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("Run directory: "))
    run_dir = Path(line.removeprefix("Run directory: "))
    assert run_dir.is_relative_to(tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"val/top1", "val/top5", "val/mean_class_acc", "train/loss"} <= set(metrics)
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "csv" / "metrics.csv").is_file()
    shown = result.stdout + result.stderr
    assert shown.count(str(run_dir)) == 1  # the run directory is said once (the log keeps its own)
    # Lightning's noise that a user cannot act on: a notice per checkpoint, an advert, a warning
    # about its own use of torch.
    for noise in ("`weights_only` was not set", "Tip:", "LeafSpec"):
        assert noise not in shown, noise
    logged = (run_dir / "train.log").read_text()
    assert f"run directory: {run_dir}" in logged
    assert "epoch 2/2  " in logged and "val/top1=" in logged  # the progress, after a crash too
    assert shown.count("epoch 2/2  ") == 1  # printed once, not echoed by the file's handler


def test_a_schedule_that_trains_nothing_is_refused(train_entry, compose_train, toy_root) -> None:
    cfg = compose_train(*toy_overrides(toy_root), "trainer.max_epochs=0")
    with pytest.raises(ValueError, match=r"trainer.max_epochs=0 trains nothing"):
        train_entry.train(cfg)


def test_ddp_on_two_cpu_processes(toy_root, tmp_path) -> None:
    # An odd test list: with padding, one video would count twice on 2 devices.
    odd = tmp_path / "odd_test_list.txt"
    lines = (toy_root / "val_list_videos.txt").read_text().splitlines()
    odd.write_text("\n".join(lines[:11]) + "\n")
    result = run_script(
        [
            "src/train.py",
            *toy_overrides(toy_root),
            *SHORT,
            "trainer=ddp_cpu",
            "test=true",
            f"data.ann_file_test={odd}",
            f"paths.log_dir={tmp_path}",
        ],
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs_dir = tmp_path / "train" / "runs"
    (run_dir,) = list(runs_dir.iterdir())  # both processes write into one run directory
    ddp = json.loads((run_dir / "metrics.json").read_text())
    assert "val/top1" in ddp
    assert "world_size=2" in result.stderr + result.stdout or "2 processes" in result.stderr
    # The same checkpoint on one process gives the same test metrics, to the last video.
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    single = run_script(
        ["src/eval.py", f"ckpt_path={ckpt}", f"paths.log_dir={tmp_path}/e", f"out={tmp_path}/1.npz"]
    )
    one = json.loads((eval_run_dir(single) / "metrics.json").read_text())
    for key in ("test/top1", "test/top5", "test/mean_class_acc", "test/loss"):
        assert ddp[key] == pytest.approx(one[key], abs=1e-6), key
    # Per-video outputs gathered from 2 processes: every video once, in list order.
    two = run_script(
        [
            "src/eval.py",
            f"ckpt_path={ckpt}",
            "trainer=ddp_cpu",
            f"paths.log_dir={tmp_path}/e2",
            f"out={tmp_path}/2.npz",
        ],
        timeout=400,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    one_out, two_out = np.load(tmp_path / "1.npz"), np.load(tmp_path / "2.npz")
    assert two_out["index"].tolist() == list(range(11))
    np.testing.assert_allclose(two_out["scores"], one_out["scores"], atol=1e-5)
    assert two_out["video"].tolist() == one_out["video"].tolist()


def test_missing_data_stops_with_the_keys_to_set(tmp_path) -> None:
    result = run_script(
        ["src/train.py", "model=tsn_r50", "data=kinetics400"],
        env={"PROJECT_ROOT": str(tmp_path), "TORCH_HOME": str(tmp_path)},
    )
    assert result.returncode != 0
    assert "kinetics400_train_list_rawframes.txt" in result.stderr
    assert "data.ann_file_train" in result.stderr and "data.data_root" in result.stderr
    assert "Traceback" not in result.stderr
    assert "kinetics400_train_list_rawframes.txt" not in result.stdout  # said once, in stderr
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").rglob("*.log"))


def test_unavailable_pretrained_weights_name_the_ways_out(toy_root, tmp_path) -> None:
    result = run_script(
        ["src/train.py", *toy_overrides(toy_root), "model=tsn_r18"],
        env={"TORCH_HOME": str(tmp_path)},
    )
    assert result.returncode != 0
    assert "ResNet18_Weights.IMAGENET1K_V1" in result.stderr
    assert "model.net.backbone.pretrained=null" in result.stderr
    assert "Traceback" not in result.stderr


def test_misspelled_option_lists_the_choices() -> None:
    result = run_script(["src/train.py", "model=tsn_r05"])
    assert result.returncode != 0
    assert "tsn_r50" in result.stderr and "tsn_toy" in result.stderr


def test_batch_larger_than_the_list(toy_root, tmp_path) -> None:
    result = run_script(
        [
            "src/train.py",
            *toy_overrides(toy_root),
            "data.videos_per_gpu=1000",
            f"paths.log_dir={tmp_path}",
        ]
    )
    assert result.returncode != 0
    assert "data.videos_per_gpu=1000" in result.stderr
    assert "Traceback" not in result.stderr


MISSING_BACKENDS = [b for b in ("decord", "torchcodec") if backend_unavailable(b)]


@pytest.mark.skipif(not MISSING_BACKENDS, reason="every optional video backend works here")
def test_a_decoder_that_cannot_run_here_names_the_key_and_the_fix(toy_root, tmp_path) -> None:
    backend = MISSING_BACKENDS[-1]  # torchcodec without FFmpeg, on a fresh machine
    result = run_script(
        ["src/train.py", *toy_overrides(toy_root), f"data.decoder={backend}"],
        env={"PROJECT_ROOT": str(tmp_path)},
    )
    assert result.returncode != 0
    error = result.stderr.splitlines()[-2]  # Hydra's "full_key: data" line comes last
    assert error.startswith(f'ValueError("data.decoder={backend}: ')
    assert "install" in error and "data.decoder=pyav" in error
    assert "Traceback" not in result.stderr


def test_unknown_depth_says_what_is_allowed(toy_root, tmp_path) -> None:
    result = run_script(
        [
            "src/train.py",
            *toy_overrides(toy_root),
            "model=tsn_r50",
            "model.net.backbone.depth=42",
            f"paths.log_dir={tmp_path}",
        ]
    )
    assert result.returncode != 0
    assert "depth=42" in result.stderr and "(18, 34, 50, 101, 152)" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("logger", ["tensorboard", "wandb"])
def test_other_loggers(train_entry, compose_train, toy_root, tmp_path, logger) -> None:
    cfg = compose_train(
        *toy_overrides(toy_root), *SHORT[1:], "trainer.max_epochs=1", f"logger={logger}"
    )
    metrics = train_entry.train(cfg)
    assert "val/top1" in metrics
    if logger == "tensorboard":
        assert list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    else:
        (run,) = list((tmp_path / "wandb").glob("offline-run-*"))
        assert list(run.glob("*.wandb"))


def eval_run_dir(result: subprocess.CompletedProcess) -> Path:
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("Run directory: "))
    return Path(line.removeprefix("Run directory: "))


def test_eval_reports_and_per_video_outputs(train_entry, compose_train, toy_root, tmp_path) -> None:
    cfg = compose_train(*toy_overrides(toy_root), *SHORT[1:], "trainer.max_epochs=1")
    train_entry.train(cfg)
    # Training leaves the latest validation's confusion matrix in its run directory.
    assert (tmp_path / "confusion_matrix_val.csv").is_file()
    assert (tmp_path / "confusion_matrix_val.png").is_file()
    ckpt = tmp_path / "checkpoints" / "best.ckpt"
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)["run_config"]
    assert saved["data"]["ann_file_train"] == f"{toy_root}/train_list_videos.txt"
    # No data or model arguments: they come from the checkpoint.
    common = [f"ckpt_path={ckpt}", "data.test_num_clips=2", f"paths.log_dir={tmp_path / 'logs'}"]

    run_dir = eval_run_dir(run_script(["src/eval.py", *common, f"out={tmp_path}/scores.pkl"]))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"test/top1", "test/top5", "test/mean_class_acc", "test/loss"} <= set(metrics)
    with open(tmp_path / "scores.pkl", "rb") as f:
        out = pickle.load(f)
    lines = (toy_root / "val_list_videos.txt").read_text().split()
    videos, labels = lines[0::2], [int(x) for x in lines[1::2]]
    assert out["scores"].shape == (len(videos), 6)
    assert list(out["video"]) == [f"{toy_root}/videos/{v}" for v in videos]  # list order
    assert out["label"].tolist() == labels
    assert list(out["class_names"]) == (toy_root / "classes.txt").read_text().split()
    # The scores are the ones the metrics were computed from.
    top1 = float((out["scores"].argmax(1) == out["label"]).mean())
    assert top1 == pytest.approx(metrics["test/top1"], abs=1e-6)
    rows = list(csv.reader((run_dir / "confusion_matrix_test.csv").open()))
    assert rows[0][1:] == list(out["class_names"])
    confmat = np.array([[int(x) for x in row[1:]] for row in rows[1:]])
    assert confmat.sum() == len(videos) and confmat.trace() == round(top1 * len(videos))

    # Weights alone (load_from), with the data and model named on the command line: the same.
    by_weights = eval_run_dir(
        run_script(
            [
                "src/eval.py",
                *toy_overrides(toy_root),
                f"load_from={ckpt}",
                "data.test_num_clips=2",
                f"paths.log_dir={tmp_path / 'logs'}",
            ]
        )
    )
    again = json.loads((by_weights / "metrics.json").read_text())
    assert again["test/top1"] == pytest.approx(metrics["test/top1"], abs=1e-6)

    feats_dir = eval_run_dir(
        run_script(["src/eval.py", *common, "feature_extraction=true", f"out={tmp_path}/f.npz"])
    )
    feats = np.load(tmp_path / "f.npz")
    width = compose_train(*toy_overrides(toy_root)).model.net.head.in_channels
    assert feats["features"].shape == (len(videos), width)
    assert "scores" not in feats and feats["label"].tolist() == labels
    assert json.loads((feats_dir / "metrics.json").read_text())["test/num_videos"] == len(videos)


def test_eval_refuses_an_unknown_output_format(tmp_path) -> None:
    result = run_script(["src/eval.py", "ckpt_path=x.ckpt", f"out={tmp_path}/s.csv"])
    assert result.returncode == 1
    assert "out=" in result.stderr and ".json, .npz, .pkl" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_default_run_learns_the_toy_data(tmp_path) -> None:
    """The README's promise: `python src/train.py` reaches val/top1 >= 0.9 (~2.5 min, 2 cores)."""
    data_dir = ROOT / "data"  # the real default location, shared with `make train`
    result = run_script(
        ["src/train.py", f"paths.log_dir={tmp_path}", f"paths.data_dir={data_dir}"], timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("Run directory: "))
    metrics = json.loads((Path(line.removeprefix("Run directory: ")) / "metrics.json").read_text())
    assert metrics["val/top1_best"] >= 0.9, metrics


def test_a_missing_video_is_skipped_counted_and_named(
    train_entry, compose_train, toy_root, tmp_path, caplog
) -> None:
    lines = (toy_root / "train_list_videos.txt").read_text().splitlines()
    broken = tmp_path / "train_with_missing.txt"
    broken.write_text("\n".join(["missing/gone.mp4 0", *lines]) + "\n")
    cfg = compose_train(
        *toy_overrides(toy_root),
        f"data.ann_file_train={broken}",
        "trainer.max_epochs=1",
        "trainer.limit_val_batches=0",
        "data.isolate_decoder=false",
    )
    with caplog.at_level("WARNING"):
        metrics = train_entry.train(cfg)
    assert metrics["data/skipped"] >= 1
    assert "missing/gone.mp4 (list line 1)" in caplog.text

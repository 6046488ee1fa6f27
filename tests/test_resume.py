"""Resuming: a run killed at any moment goes on from its checkpoints and ends where it would have.

The runs here are `src/train.py` processes, killed as the OOM killer or a lost node kills them:
SIGKILL to the whole process group (loader workers and decoder children included).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from omegaconf import OmegaConf
from tests.conftest import ROOT, compose_config, toy_overrides
from tests.test_train import run_script

from actionrec import resume
from actionrec.checkpointing import completed_epochs

# Three epochs of two batches, decoded in the training process (cheap to start). The killed
# runs load with a worker and its decoder child: the kill must reach every process of the run,
# and they must end as the reference run without them (data randomness lives in no process).
THREE_EPOCHS = [
    "trainer.max_epochs=3",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "callbacks.checkpoints.every_n_epochs=1",
    "data.isolate_decoder=false",
]
PROCESSES = ["data.workers_per_gpu=1", "data.isolate_decoder=true"]
ENV = {"PYTHONPATH": str(ROOT)}  # tests.crash, for the runs that pause where they are killed


def overrides(toy_root: Path) -> list[str]:
    return [*toy_overrides(toy_root), *THREE_EPOCHS]


def state(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def csv_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "csv" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def assert_same_end(run: Path, reference: Path) -> None:
    """The same final weights (bit for bit), metrics.json and CSV log as ``reference``."""
    ours, theirs = state(run / "checkpoints/last.ckpt"), state(reference / "checkpoints/last.ckpt")
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key
    assert json.loads((run / "metrics.json").read_text()) == json.loads(
        (reference / "metrics.json").read_text()
    )
    assert csv_rows(run) == csv_rows(reference)  # the log continued: no row lost, none twice


def only_run(logs: Path) -> Path:
    (run,) = (logs / "train" / "runs").iterdir()
    return run


@pytest.fixture(scope="module")
def whole_run(toy_root, tmp_path_factory) -> Path:
    """The uninterrupted run, as `python src/train.py ...` runs it."""
    logs = tmp_path_factory.mktemp("whole") / "logs"
    result = run_script(["src/train.py", *overrides(toy_root), f"paths.log_dir={logs}"])
    assert result.returncode == 0, result.stderr[-3000:]
    return only_run(logs)


def start_paused_run(args: list[str], marker: Path) -> subprocess.Popen:
    """`src/train.py args` in a process group of its own; returns once it wrote ``marker``."""
    proc = subprocess.Popen(
        [sys.executable, "src/train.py", *args],
        cwd=ROOT,
        env={**os.environ, **ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run ended before pausing: {proc.stderr.read().decode()[-3000:]}")
        time.sleep(0.2)
    return proc


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the run's whole process group, then check that none of its processes is left."""
    family = psutil.Process(proc.pid).children(recursive=True)
    assert family, "the run should have a loader worker and a decoder child"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    _, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, f"processes left behind: {alive}"


@pytest.mark.parametrize(
    ("where", "epochs_saved", "by_name"),
    [
        (["+callbacks.pause.epoch=2"], 2, False),  # between epochs
        (["+callbacks.pause.epoch=1", "+callbacks.pause.batch=0"], 1, True),  # inside one
    ],
    ids=["between-epochs", "inside-an-epoch"],
)
def test_a_killed_run_resumes_from_last_ckpt_exactly(
    whole_run, toy_root, tmp_path, where, epochs_saved, by_name
) -> None:
    logs, marker = tmp_path / "logs", tmp_path / "paused"
    args = [*overrides(toy_root), *PROCESSES, f"paths.log_dir={logs}"]
    pause = ["+callbacks.pause._target_=tests.crash.PauseAt", f"+callbacks.pause.marker={marker}"]
    proc = start_paused_run([*args, *pause, *where], marker)
    kill_group(proc)
    run = only_run(logs)
    last = run / "checkpoints" / "last.ckpt"
    assert completed_epochs(torch.load(last, weights_only=True)) == epochs_saved  # every epoch
    assert not (run / "metrics.json").exists()

    result = run_script(["src/train.py", *args, "ckpt_path=" + ("last" if by_name else str(last))])
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Run directory: {run}" in result.stdout  # it went on in the run's directory
    assert_same_end(run, whole_run)
    assert "differs from its run's" not in result.stdout + result.stderr
    # The run's own config stays in .hydra/; the resumed invocation's goes beside it.
    (resumed_cfg,) = (run / ".hydra").glob("resumed_*/config.yaml")
    assert OmegaConf.load(resumed_cfg).ckpt_path == ("last" if by_name else str(last))


def test_resuming_from_an_epoch_or_best_checkpoint_is_exact(whole_run, toy_root, tmp_path) -> None:
    ckpts = whole_run / "checkpoints"
    names = {p.name for p in ckpts.iterdir()}
    assert {"last.ckpt", "best.ckpt", "epoch_1.ckpt", "epoch_2.ckpt", "epoch_3.ckpt"} <= names
    assert not any(name.endswith(".tmp") for name in names)
    best_epochs = completed_epochs(torch.load(ckpts / "best.ckpt", weights_only=True))
    # Each resumes a copy of the run (moved elsewhere: the best score must follow it).
    for name in ["epoch_1.ckpt", "best.ckpt"] if best_epochs < 3 else ["epoch_1.ckpt"]:
        logs = tmp_path / name / "logs"
        copy = logs / "train" / "runs" / "copy"
        shutil.copytree(whole_run, copy)
        ckpt = copy / "checkpoints" / name
        args = ["src/train.py", *overrides(toy_root), f"paths.log_dir={logs}", f"ckpt_path={ckpt}"]
        result = run_script(args)
        assert result.returncode == 0, result.stderr[-3000:]
        assert_same_end(copy, whole_run)


def test_a_save_killed_half_way_leaves_the_previous_checkpoint_whole(toy_root, tmp_path) -> None:
    logs = tmp_path / "logs"
    args = ["src/train.py", *overrides(toy_root), f"paths.log_dir={logs}"]
    killed = run_script(
        [*args, "+trainer.plugins=[{_target_: tests.crash.KillInsideSave, kill_at: 2}]"], env=ENV
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run = only_run(logs)
    last = run / "checkpoints" / "last.ckpt"
    assert completed_epochs(torch.load(last, weights_only=True)) == 1  # the first save, whole
    result = run_script([*args, f"ckpt_path={last}"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert completed_epochs(torch.load(last, weights_only=True)) == 3


def test_last_never_picks_another_run_and_a_finished_run_is_left_as_it_is(
    whole_run, toy_root, tmp_path
) -> None:
    logs = tmp_path / "logs"
    finished = logs / "train" / "runs" / "finished"
    shutil.copytree(whole_run, finished)
    metrics = (finished / "metrics.json").read_bytes()
    args = ["src/train.py", *overrides(toy_root), f"paths.log_dir={logs}"]

    # The latest run finished: `last` resumes nothing, and its results stay.
    result = run_script([*args, "ckpt_path=last"])
    assert result.returncode == 1
    assert "has trained 3 epochs, all of trainer.max_epochs=3" in result.stderr
    assert "Traceback" not in result.stderr
    assert (finished / "metrics.json").read_bytes() == metrics
    # Naming its checkpoint: the same.
    result = run_script([*args, f"ckpt_path={finished / 'checkpoints' / 'last.ckpt'}"])
    assert result.returncode == 1
    assert "has trained 3 epochs, all of trainer.max_epochs=3" in result.stderr
    assert (finished / "metrics.json").read_bytes() == metrics

    # A newer run that died before its first checkpoint: `last` names it, takes no other.
    newer = logs / "train" / "runs" / "newer"
    (newer / ".hydra").mkdir(parents=True)
    (newer / ".hydra" / "config.yaml").write_text("{}\n")
    (newer / "train.log").write_text("killed in epoch 1\n")
    result = run_script([*args, "ckpt_path=last"])
    assert result.returncode == 1
    assert f"the latest run of task_name=train, {newer}, has no checkpoints/last.ckpt" in (
        result.stderr
    )
    assert (finished / "metrics.json").read_bytes() == metrics
    # The failed invocations left no directories of their own behind.
    assert {p.name for p in (logs / "train" / "runs").iterdir()} == {"finished", "newer"}

    # Training it further is a choice: a larger trainer.max_epochs continues the finished run.
    ckpt = finished / "checkpoints" / "last.ckpt"
    result = run_script([*args, f"ckpt_path={ckpt}", "trainer.max_epochs=4"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert completed_epochs(torch.load(ckpt, weights_only=True)) == 4


def test_a_preempted_slurm_job_is_requeued_and_resumes(whole_run, toy_root, tmp_path) -> None:
    """submitit's local executor stands in for SLURM: SIGUSR2 is what SLURM sends (through
    submitit's ``--signal``) before it preempts a job or its time runs out."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the slurm extra")
    logs, marker = tmp_path / "logs", tmp_path / "paused"
    launcher = "hydra_plugins.actionrec_launchers.RequeueingLocalLauncher"
    args = ["-m", "hydra/launcher=submitit_local", f"hydra.launcher._target_={launcher}"]
    pause = ["+callbacks.pause._target_=tests.crash.PauseAt", f"+callbacks.pause.marker={marker}"]
    proc = start_paused_run(
        [*args, *overrides(toy_root), f"paths.log_dir={logs}", *pause, "+callbacks.pause.epoch=2"],
        marker,
    )
    os.kill(int(marker.read_text()), signal.SIGUSR2)  # the job's process, not the launcher
    assert proc.wait(timeout=600) == 0, proc.stderr.read().decode()[-3000:]
    (job,) = (logs / "train" / "multiruns").glob("*/0")
    assert_same_end(job, whole_run)
    (resumed_cfg,) = (job / ".hydra").glob("resumed_*/overrides.yaml")
    assert "ckpt_path=last" in resumed_cfg.read_text()  # what the requeued job ran with
    assert "ckpt_path=last" not in (job / ".hydra" / "overrides.yaml").read_text()


def test_a_sweep_run_again_into_its_directory_resumes_its_unfinished_jobs(
    toy_root, tmp_path
) -> None:
    sweep = tmp_path / "logs" / "train" / "multiruns" / "sweep"
    args = ["src/train.py", "-m", *overrides(toy_root), "trainer.max_epochs=2"]
    args += ["optim.lr=0.001,0.002", f"paths.log_dir={tmp_path / 'logs'}"]
    args += [f"hydra.sweep.dir={sweep}"]
    result = run_script(args)
    assert result.returncode == 0, result.stderr[-3000:]
    finished = (sweep / "0" / "metrics.json").read_bytes()
    end = state(sweep / "1" / "checkpoints" / "last.ckpt")
    # Job 1 as if the sweep had been killed between its two epochs.
    (sweep / "1" / "metrics.json").unlink()
    shutil.copy(sweep / "1" / "checkpoints" / "epoch_1.ckpt", sweep / "1" / "checkpoints/last.ckpt")

    result = run_script([*args, "ckpt_path=last"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert (sweep / "0" / "metrics.json").read_bytes() == finished  # left as it was
    resumed = state(sweep / "1" / "checkpoints" / "last.ckpt")
    assert all(torch.equal(resumed[k], v) for k, v in end.items())
    assert (sweep / "1" / "metrics.json").is_file()
    assert "ckpt_path" not in (sweep / "1" / ".hydra" / "overrides.yaml").read_text()


def test_a_requeued_job_resumes_only_from_its_own_checkpoint(tmp_path) -> None:
    from actionrec.requeue import requeue_overrides

    assert requeue_overrides(["optim.lr=0.1"], tmp_path) == ["optim.lr=0.1"]  # none yet
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert requeue_overrides(["optim.lr=0.1", "ckpt_path=x.ckpt"], tmp_path) == [
        "optim.lr=0.1",
        "ckpt_path=last",
    ]


def test_last_is_the_most_recently_active_run(tmp_path) -> None:
    task = tmp_path / "train"
    with pytest.raises(FileNotFoundError, match=r"ckpt_path=last: no run in"):
        resume.find_last_checkpoint(task)
    older = task / "runs" / "a"
    newer = task / "multiruns" / "s" / "3"
    for i, run in enumerate([newer, older]):  # the older run started first ...
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "config.yaml").write_text("{}")
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
        os.utime(run / ".hydra" / "config.yaml", (time.time() + i, time.time() + i))
        os.utime(run / "checkpoints" / "last.ckpt", (time.time() + i, time.time() + i))
    assert resume.find_last_checkpoint(task) == older / "checkpoints" / "last.ckpt"
    # ... and the newer one wrote its last.ckpt after it: it is the most recently active.
    later = time.time() + 9
    os.utime(newer / "checkpoints" / "last.ckpt", (later, later))
    assert resume.find_last_checkpoint(task) == newer / "checkpoints" / "last.ckpt"
    assert resume.find_last_checkpoint(task, exclude=[newer]) == older / "checkpoints/last.ckpt"
    assert resume.checkpoint_run_dir(newer / "checkpoints/last.ckpt") == newer
    assert resume.checkpoint_run_dir(tmp_path / "elsewhere.ckpt") is None


def test_the_run_directory_follows_the_checkpoint(tmp_path) -> None:
    ckpt = tmp_path / "logs" / "train" / "runs" / "old" / "checkpoints" / "epoch_3.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")

    def dirs(**top) -> tuple[str, str]:
        cfg = OmegaConf.create(
            {
                "task_name": "train",
                "paths": {"log_dir": str(tmp_path / "logs")},
                **top,
                "hydra": {
                    "run": {"dir": "${run_dir:NEW}"},
                    "output_subdir": "${config_subdir:.hydra,STAMP}",
                },
            }
        )
        return cfg.hydra.run.dir, cfg.hydra.output_subdir

    assert dirs(train=True, ckpt_path=None) == ("NEW", ".hydra")
    assert dirs(train=True, ckpt_path=str(ckpt)) == (str(ckpt.parents[1]), ".hydra/resumed_STAMP")
    assert dirs(train=True, ckpt_path="last") == ("NEW", ".hydra")  # no last.ckpt: train stops
    assert dirs(ckpt_path=str(ckpt)) == ("NEW", ".hydra")  # evaluation: a new directory


def test_resuming_from_nothing_says_where_it_looked(toy_root, tmp_path) -> None:
    from tests.conftest import load_entry_point

    cfg = compose_config("train", [*toy_overrides(toy_root), "ckpt_path=last"], tmp_path)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "logs" / "train" / "runs")):
        load_entry_point("train").train(cfg)


def test_a_changed_config_is_named_value_by_value(whole_run, toy_root, tmp_path) -> None:
    other = compose_config("train", [*overrides(toy_root), "optim.lr=0.02"], tmp_path)
    changes = resume.config_changes(other, whole_run / "checkpoints" / "last.ckpt")
    assert changes == ["optim.lr: 0.003 -> 0.02", "optim.optimizer.lr: 0.003 -> 0.02"]


def test_rewinding_tensorboard_purges_what_followed_the_checkpoint(tmp_path) -> None:
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    killed = TensorBoardLogger(tmp_path, name=None, version="")
    for step in range(6):  # the killed run logged up to step 5; its checkpoint is at step 3
        killed.log_metrics({"train/loss": float(step)}, step=step)
    killed.experiment.flush()
    ckpt = tmp_path / "last.ckpt"
    torch.save({"global_step": 3}, ckpt)
    resumed = TensorBoardLogger(tmp_path, name=None, version="")
    resume.rewind_logs([resumed], ckpt)
    for step in range(3, 5):
        resumed.log_metrics({"train/loss": 10.0 + step}, step=step)
    resumed.experiment.flush()
    events = EventAccumulator(str(tmp_path)).Reload().Scalars("train/loss")
    assert [(e.step, e.value) for e in events] == [(0, 0), (1, 1), (2, 2), (3, 13), (4, 14)]

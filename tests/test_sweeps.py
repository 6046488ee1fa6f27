"""Multiruns: a directory and metrics.json per job, the results table, Optuna, W&B per job."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import yaml
from tests.conftest import toy_overrides
from tests.test_loggers import wandb_records
from tests.test_train import run_script

from actionrec.sweeps import write_summary

# One batch each way: a job is the whole loop in a few seconds.
TINY = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "data.isolate_decoder=false",
]


def sweep_dir(log_dir: Path) -> Path:
    (path,) = (log_dir / "train" / "multiruns").iterdir()
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def fake_job(sweep: Path, num: int, overrides: list[str], metrics: dict | None) -> None:
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))


def test_the_table_lists_what_varies_and_failed_jobs(tmp_path) -> None:
    fixed = "data.data_root=/videos"
    fake_job(tmp_path, 0, ["optim.lr=0.01", fixed], {"val/top1": 0.5, "train/loss": 1.0})
    fake_job(tmp_path, 1, ["optim.lr=0.02", fixed], None)  # failed: no metrics.json
    fake_job(tmp_path, 10, ["optim.lr=0.03", fixed], {"val/top1": 0.75, "train/loss": 0.5})
    table = write_summary(tmp_path, ["val/top1", "val/top1_best"])
    rows = read_csv(tmp_path / "sweep_results.csv")
    assert [r["job"] for r in rows] == ["0", "1", "10"]  # by job number, not as text
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    assert [r["optim.lr"] for r in rows] == ["0.01", "0.02", "0.03"]
    assert "data.data_root" not in rows[0]  # the same for every job: not a column
    assert rows[2]["val/top1"] == "0.75" and rows[2]["train/loss"] == "0.5"  # every metric
    assert rows[1]["val/top1"] == ""
    header = table.splitlines()[0]
    assert "optim.lr" in header and "val/top1" in header and "train/loss" not in header
    assert (tmp_path / "sweep_results.md").read_text() == table


def test_the_literal_multirun(toy_root, tmp_path) -> None:
    result = run_script(
        [
            "src/train.py",
            "-m",
            "optim.lr=0.01,0.02",
            "data.num_clips=3,8",
            *toy_overrides(toy_root),
            *TINY,
            f"paths.log_dir={tmp_path}",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = sweep_dir(tmp_path)
    rows = read_csv(sweep / "sweep_results.csv")
    assert [(r["optim.lr"], r["data.num_clips"]) for r in rows] == [
        ("0.01", "3"),
        ("0.01", "8"),
        ("0.02", "3"),
        ("0.02", "8"),
    ]
    for row in rows:
        job = sweep / row["job"]
        metrics = json.loads((job / "metrics.json").read_text())
        assert row["status"] == "ok" and float(row["val/top1"]) == metrics["val/top1"]
        config = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
        assert config["optim"]["lr"] == float(row["optim.lr"])
        assert config["data"]["num_clips"] == int(row["data.num_clips"])
        assert (job / "checkpoints" / "last.ckpt").is_file()
    printed = result.stdout[result.stdout.index("Sweep results") :]
    assert "| optim.lr" in printed and printed.count("| ok ") == 4


def test_an_optuna_search_on_the_toy_data_with_a_wandb_run_per_trial(toy_root, tmp_path) -> None:
    result = run_script(
        [
            "src/train.py",
            "hparams_search=toy_optuna",
            "hydra.sweeper.n_trials=2",
            "logger=wandb",
            *toy_overrides(toy_root),
            *TINY,
            f"paths.log_dir={tmp_path}",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = sweep_dir(tmp_path)
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    rows = read_csv(sweep / "sweep_results.csv")
    assert len(rows) == 2 and {r["status"] for r in rows} == {"ok"}
    assert best["best_value"] == max(float(r["val/top1"]) for r in rows)
    assert set(best["best_params"]) == {
        "optim.lr",
        "optim.optimizer.weight_decay",
        "data.num_clips",
    }
    ids = set()
    for row in rows:
        job = sweep / row["job"]
        assert 3e-4 <= float(row["optim.lr"]) <= 1e-2
        # Each trial is its own W&B run, named by its overrides, grouped by the sweep.
        run = wandb_records(job)
        hydra = yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]
        assert run["run"].display_name == hydra["job"]["override_dirname"]
        assert f"optim.lr={row['optim.lr']}" in run["run"].display_name
        assert run["run"].run_group == sweep.name
        assert run["exit_code"] == 0
        # A few training clips as the model received them (one image per clip, 4 per batch).
        assert len(list(job.glob("wandb/offline-run-*/files/media/images/train/clips_*.png"))) == 4
        ids.add(run["run"].run_id)
    assert len(ids) == 2


def test_an_optuna_study_in_sqlite_resumes_where_it_stopped(toy_root, tmp_path) -> None:
    storage = f"sqlite:///{tmp_path / 'toy.db'}"
    search = [
        "src/train.py",
        "hparams_search=toy_optuna",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=resumed",
        *toy_overrides(toy_root),
        *TINY,
    ]
    first = run_script([*search, f"paths.log_dir={tmp_path / 'first'}"])
    assert first.returncode == 0, first.stderr[-3000:]
    before = optuna.load_study(study_name="resumed", storage=storage).trials
    # A new sampler seed, as the config says: the same one would draw the first trials again.
    again = run_script(
        [*search, "hydra.sweeper.sampler.seed=1", f"paths.log_dir={tmp_path / 'again'}"]
    )
    assert again.returncode == 0, again.stderr[-3000:]
    after = optuna.load_study(study_name="resumed", storage=storage).trials
    assert len(before) == 2 and len(after) == 4
    assert [(t.params, t.value) for t in after[:2]] == [(t.params, t.value) for t in before]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in after)
    assert all(t.params not in [b.params for b in before] for t in after[2:])
    # The second sweep ran only its own 2 trials, each a job with its metrics.
    rows = read_csv(sweep_dir(tmp_path / "again") / "sweep_results.csv")
    assert len(rows) == 2 and {r["status"] for r in rows} == {"ok"}

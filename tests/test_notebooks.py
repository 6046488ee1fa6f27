"""The notebooks run top to bottom against the toy data, so they cannot rot."""

from __future__ import annotations

import json
import os

import matplotlib
import numpy as np
import pytest
from tests.conftest import ROOT, load_entry_point, toy_overrides

from actionrec import runs

NOTEBOOKS = ROOT / "notebooks"


def run_notebook(name: str, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, int]:
    """Execute a notebook's code cells in order from ``notebooks/``, as Jupyter does.

    Returns the namespace the cells leave and the number of figures they drew. A cell that
    raises fails the test with the cell's number in the traceback.
    """
    matplotlib.use("Agg")  # drawn, never shown
    import matplotlib.pyplot as plt

    plt.close("all")
    path = NOTEBOOKS / f"{name}.ipynb"
    monkeypatch.chdir(NOTEBOOKS)
    cells = json.loads(path.read_text())["cells"]
    namespace: dict = {"__name__": "__notebook__"}
    for i, cell in enumerate(c for c in cells if c["cell_type"] == "code"):
        source = "".join(cell["source"])
        exec(compile(source, f"{path.name}[code cell {i}]", "exec"), namespace)
    assert os.getcwd() == str(NOTEBOOKS)  # a notebook that changes directory breaks the next
    figures = len(plt.get_fignums())
    plt.close("all")
    return namespace, figures


def test_every_notebook_has_a_test() -> None:
    assert {p.stem for p in NOTEBOOKS.glob("*.ipynb")} == {"data_pipeline_tour", "run_analysis"}


def test_data_pipeline_tour(monkeypatch) -> None:
    ns, figures = run_notebook("data_pipeline_tour", monkeypatch)
    assert figures == 2  # the sampling timeline and the crop boxes (the rest are PIL images)
    assert len(ns["draws"]) == 5 and all(len(d) == ns["num_clips"] for d in ns["draws"])
    assert len(ns["boxes"]) > len(ns["sizes"]) > 1
    assert tuple(ns["views"].shape[:2]) == (10, 1)  # ten crops of the one-frame clip


def test_run_analysis_of_a_short_toy_run(compose_train, toy_root, tmp_path, monkeypatch) -> None:
    cfg = compose_train(
        *toy_overrides(toy_root),
        "logger=csv",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=2",
        "trainer.check_val_every_n_epoch=1",
        "data.isolate_decoder=false",  # no decoder processes to start: seconds on 2 cores
    )
    metrics = load_entry_point("train").train(cfg)
    runs.write_metrics(metrics, tmp_path)
    monkeypatch.setenv("ACTIONREC_RUN", str(tmp_path))
    written = tmp_path / "confusion_matrix_val.csv"
    assert written.is_file()  # callbacks.ConfusionMatrixReport writes it at every validation

    ns, figures = run_notebook("run_analysis", monkeypatch)
    assert figures == 3  # curves, confusion matrix, per-class accuracy
    assert ns["run"] == tmp_path
    curves = ns["curves"]
    assert curves["epoch"].tolist() == [0, 1]
    lrs = [k for k in curves if k.startswith("lr-")]  # the learning-rate monitor's
    for key in ("train/loss", "train/top1", "val/loss", "val/top1", *lrs):
        assert np.isfinite(curves[key]).all(), key
    assert lrs
    assert curves["val/top1"][-1] == pytest.approx(metrics["val/top1"])

    names, confusion = ns["names"], ns["confusion"]
    assert names == (toy_root / "classes.txt").read_text().split()
    assert confusion.sum(axis=1).tolist() == [2] * 6  # the toy_root val list: 2 videos a class
    acc = ns["per_class_acc"]
    assert ((acc >= 0) & (acc <= 1)).all()
    np.testing.assert_allclose(acc, np.diag(confusion) / 2)
    # The file holds the last validation, which is what metrics.json reports.
    assert acc.mean() == pytest.approx(metrics["val/mean_class_acc"])
    assert np.trace(confusion) / 12 == pytest.approx(metrics["val/top1"])
    counts = [n for _, _, n in ns["worst_pairs"]]
    assert counts == sorted(counts, reverse=True) and all(n > 0 for n in counts)
    assert sum(counts) <= 12 - np.trace(confusion)
    for true, predicted, n in ns["worst_pairs"]:
        assert true != predicted and confusion[names.index(true), names.index(predicted)] == n

    # Without the file the notebook scores the list itself: with the last checkpoint (the
    # weights of that last validation) it must find the same matrix.
    written.unlink()
    (tmp_path / "checkpoints" / "best.ckpt").unlink()
    ns, _ = run_notebook("run_analysis", monkeypatch)
    assert ns["names"] == names
    np.testing.assert_array_equal(ns["confusion"], confusion)

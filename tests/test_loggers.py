"""W&B: offline runs that hold the config and end with the job's exit code; resumable ids."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from tests.conftest import toy_overrides
from tests.test_train import run_script

from actionrec import loggers
from actionrec.callbacks import SampleClips


def wandb_records(run_dir: Path) -> dict:
    """The run, config and exit records of the offline W&B run in ``run_dir/wandb``.

    Reads W&B's transaction log (``run-ID.wandb``): LevelDB-style blocks of 32 KiB whose
    records (7-byte header: checksum, length, type) hold protobuf ``Record`` messages.
    """
    from wandb.proto import wandb_internal_pb2

    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    out: dict = {"config": {}}
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            kind_name = record.WhichOneof("record_type")
            if kind_name == "run":
                out["run"] = record.run
            elif kind_name == "config":
                out["config"].update({u.key: u.value_json for u in record.config.update})
            elif kind_name == "exit":
                out["exit_code"] = record.exit.exit_code
    return out


def test_a_failed_run_is_finished_as_failed(toy_root, tmp_path) -> None:
    lines = (toy_root / "train_list_videos.txt").read_text().splitlines()
    broken = tmp_path / "train.txt"
    broken.write_text("\n".join(["missing/gone.mp4 0", *lines]) + "\n")
    result = run_script(
        [
            "src/train.py",
            *toy_overrides(toy_root),
            "logger=wandb",
            f"data.ann_file_train={broken}",
            "data.on_error=raise",
            "data.isolate_decoder=false",
            "trainer.max_epochs=1",
            f"paths.log_dir={tmp_path / 'logs'}",
        ]
    )
    assert result.returncode == 1
    assert "error: cannot load" in result.stderr and "Traceback" not in result.stderr
    (run_dir,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    run = wandb_records(run_dir)
    assert run["exit_code"] == 1
    data = json.loads(run["config"]["data"])  # the composed config, resolved
    assert data["num_clips"] == 3 and data["ann_file_train"] == str(broken)
    assert "wandb sync" in result.stdout + result.stderr  # offline: how to upload it


def test_a_run_directory_keeps_its_wandb_run(tmp_path) -> None:
    first = loggers.wandb_logger(offline=True, save_dir=str(tmp_path), project="p")
    run_id = first._wandb_init["id"]
    assert (tmp_path / loggers.RUN_ID_FILE).read_text().strip() == run_id
    # A resumed run writes into the same directory: it continues the same W&B run.
    again = loggers.wandb_logger(offline=True, save_dir=str(tmp_path), project="p")
    assert again._wandb_init["id"] == run_id and again._wandb_init["resume"] == "allow"
    other = loggers.wandb_logger(offline=True, save_dir=str(tmp_path / "new"), project="p")
    assert other._wandb_init["id"] != run_id


def test_sample_clips_show_the_frames_side_by_side(tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    imgs = torch.randint(0, 256, (5, 3, 3, 8, 10), dtype=torch.uint8)  # (B, T, C, H, W)
    logger = TensorBoardLogger(tmp_path, name=None, version="")
    trainer = SimpleNamespace(loggers=[logger], datamodule=None, global_step=0)
    clips = SampleClips(num_clips=2)
    clips.on_train_batch_start(trainer, None, {"imgs": imgs, "label": torch.arange(5)}, 0)
    clips.on_train_batch_start(trainer, None, {"imgs": imgs, "label": torch.arange(5)}, 1)  # once
    logger.experiment.flush()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0}).Reload()
    (logged,) = events.Images("train/clips")
    assert (logged.width, logged.height) == (3 * 10, 2 * 8)  # T frames side by side, 2 clips
    assert len(events.Images("train/clips")) == 1
    pixels = torch.from_numpy(np.array(Image.open(io.BytesIO(logged.encoded_image_string))))
    clip, frame = 1, 2
    shown = pixels[clip * 8 : (clip + 1) * 8, frame * 10 : (frame + 1) * 10]  # (H, W, C)
    assert torch.equal(shown, imgs[clip, frame].permute(1, 2, 0))


def test_a_resumed_run_continues_its_wandb_run(toy_root, tmp_path) -> None:
    logs = tmp_path / "logs"
    common = [
        "src/train.py",
        *toy_overrides(toy_root),
        "logger=wandb",
        "data.isolate_decoder=false",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
        f"paths.log_dir={logs}",
    ]
    first = run_script([*common, "trainer.max_epochs=1"], env={"WANDB_MODE": "offline"})
    assert first.returncode == 0, first.stderr[-3000:]
    again = run_script(
        [*common, "trainer.max_epochs=2", "ckpt_path=last"], env={"WANDB_MODE": "offline"}
    )
    assert again.returncode == 0, again.stderr[-3000:]
    (run_dir,) = (logs / "train" / "runs").iterdir()  # the resumed run went on in its directory
    run_id = (run_dir / loggers.RUN_ID_FILE).read_text().strip()
    offline = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 2  # one W&B process per invocation, both for the same run id
    assert all(p.name.endswith(f"-{run_id}") for p in offline), [p.name for p in offline]

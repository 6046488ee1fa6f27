"""Loader defaults: one thread per worker, pinning only for CUDA, uint8 batches to the device."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch.utils.data import Dataset

from actionrec.data.datamodule import THREAD_ENV_VARS, VideoDataModule, pin_memory_for
from actionrec.data.decoding import backend_unavailable
from actionrec.data.isolation import DecoderProcess
from actionrec.data.transforms import CenterCrop
from actionrec.models.backbones import SimpleCNN
from actionrec.models.heads import TSNHead
from actionrec.models.recognizers import TSN
from actionrec.module import Recognizer

cv2 = pytest.importorskip("cv2")


class ThreadProbe(Dataset):
    """Each sample reports the thread settings of the process that made it."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, idx: int) -> dict:
        env = {name: os.environ.get(name, "unset") for name in THREAD_ENV_VARS}
        return {
            "pid": os.getpid(),
            "torch": torch.get_num_threads(),
            "cv2": cv2.getNumThreads(),
            "env": env,
        }


def toy_datamodule(toy_root: Path, **kwargs) -> VideoDataModule:
    kwargs = {"videos_per_gpu": 4, "workers_per_gpu": 2, "isolate_decoder": False, **kwargs}
    return VideoDataModule(
        num_classes=6,
        ann_file_train=str(toy_root / "train_list_videos.txt"),
        ann_file_val=str(toy_root / "val_list_videos.txt"),
        data_root=str(toy_root / "videos"),
        num_clips=3,
        train_pipeline=[CenterCrop(64)],
        val_pipeline=[CenterCrop(64)],
        **kwargs,
    )


def test_workers_run_one_thread_for_every_library() -> None:
    dm = VideoDataModule(num_classes=2, videos_per_gpu=1, workers_per_gpu=2)
    dm.datasets["val"] = ThreadProbe()
    loader = dm.val_dataloader()
    assert loader.persistent_workers and loader.prefetch_factor == 2
    samples = list(loader)
    assert len({int(s["pid"]) for s in samples}) == 2  # both workers answered
    for sample in samples:
        assert int(sample["pid"]) != os.getpid()
        assert int(sample["torch"]) == 1 and int(sample["cv2"]) == 1
        assert all(value == ["1"] for value in sample["env"].values()), sample["env"]


def test_pin_memory_only_when_batches_go_to_cuda() -> None:
    assert pin_memory_for(True, torch.device("cuda", 1))
    assert not pin_memory_for(True, torch.device("cpu"))
    assert not pin_memory_for(True, None)  # no trainer: nowhere to copy to
    assert not pin_memory_for(False, torch.device("cuda", 0))


@pytest.mark.parametrize(("device", "pinned"), [("cpu", False), ("cuda", True)])
def test_the_loader_pins_by_the_trainers_device(device: str, pinned: bool) -> None:
    dm = VideoDataModule(num_classes=2, videos_per_gpu=1, workers_per_gpu=0)
    dm.datasets["val"] = ThreadProbe()
    # Only the device is read; a stand-in lets the CUDA case run without a GPU.
    strategy = SimpleNamespace(root_device=torch.device(device, 0 if device == "cuda" else None))
    dm.trainer = SimpleNamespace(strategy=strategy, world_size=1)
    assert dm.val_dataloader().pin_memory is pinned


def test_the_decoder_process_is_replaced_after_max_jobs() -> None:
    process = DecoderProcess(timeout=60.0, max_jobs=2)
    try:
        pids = [process.call(os.getpid) for _ in range(3)]
    finally:
        process.close()
    assert pids[0] == pids[1] != pids[2] and os.getpid() not in pids


def test_prefetch_factor_below_one_names_the_key() -> None:
    with pytest.raises(ValueError, match=r"data\.prefetch_factor=0"):
        VideoDataModule(num_classes=2, prefetch_factor=0)


class Recording(Recognizer):
    """Records what reaches the training step and what reaches the network."""

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.seen_batches.append((batch["imgs"].dtype, batch["imgs"].device))
        return super().training_step(batch, batch_idx)


def test_frames_stay_uint8_until_the_module_normalizes_them(toy_root: Path) -> None:
    dm = toy_datamodule(toy_root)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))  # collated in the workers
    assert batch["imgs"].dtype == torch.uint8 and batch["imgs"].shape == (4, 3, 3, 64, 64)

    net = TSN(SimpleCNN((8,)), TSNHead(num_classes=6, in_channels=8))
    net_inputs: list[torch.dtype] = []
    net.register_forward_pre_hook(lambda _, args: net_inputs.append(args[0].dtype))
    module = Recording(net, optimizer=functools.partial(torch.optim.SGD, lr=0.01))
    module.seen_batches = []
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module, datamodule=dm)
    assert module.seen_batches == [(torch.uint8, torch.device("cpu"))] * 2
    assert net_inputs == [torch.float32] * 2


def test_normalization_runs_on_the_batchs_device() -> None:
    # The meta device holds no data: any detour through host memory would fail or come back
    # on the CPU.
    net = TSN(SimpleCNN((8,)), TSNHead(num_classes=2, in_channels=8))
    module = Recognizer(net, optimizer=functools.partial(torch.optim.SGD, lr=0.01)).to("meta")
    out = module.normalize(torch.empty(2, 3, 3, 8, 8, dtype=torch.uint8, device="meta"))
    assert out.device.type == "meta" and out.dtype == torch.float32


@pytest.mark.parametrize(
    ("dataset_type", "isolate", "expected"),
    [("video", None, True), ("rawframes", None, False), ("rawframes", True, True)],
)
def test_decoders_are_isolated_for_videos_by_default(dataset_type, isolate, expected) -> None:
    dm = VideoDataModule(num_classes=2, dataset_type=dataset_type, isolate_decoder=isolate)
    assert dm.isolate_decoder is expected
    assert dm.media.name == dataset_type


@pytest.mark.parametrize("backend", ["decord", "torchcodec"])
def test_a_decoder_that_is_not_installed_stops_the_config(monkeypatch, backend) -> None:
    monkeypatch.setitem(sys.modules, backend, None)  # what `import` meets without the package
    backend_unavailable.cache_clear()
    try:
        with pytest.raises(ValueError, match=f"data.decoder={backend}: .*pip install {backend}"):
            VideoDataModule(num_classes=2, decoder=backend)
        # Frame folders never open a video: the decoder setting does not matter to them.
        VideoDataModule(num_classes=2, dataset_type="rawframes", decoder=backend)
    finally:
        backend_unavailable.cache_clear()
    with pytest.raises(ValueError, match=r"data.decoder='opencv' is not one of \("):
        VideoDataModule(num_classes=2, decoder="opencv")


FORKED_WORKERS = """
import sys
import numpy as np
from torch.utils.data import DataLoader, Dataset
from actionrec.data.pyav_reader import PyAVReader

path = sys.argv[1]
with PyAVReader(path) as reader:  # the parent converts frames before the workers fork
    reader.read(np.array([5]))


class Frames(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        with PyAVReader(path) as reader:
            return reader.read(np.array([i * 5]))


for _ in DataLoader(Frames(), batch_size=2, num_workers=2, multiprocessing_context="fork"):
    pass
print("done")
"""


def write_clip(path: Path) -> Path:
    """20 frames of 340x256 H.264, large enough for swscale to split into slices."""
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 340, 256, "yuv420p"
        noise = np.random.default_rng(0).integers(0, 256, (256, 340, 3), dtype=np.uint8)
        for i in range(20):
            frame = av.VideoFrame.from_ndarray(np.roll(noise, i, axis=1), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_reading_a_video_starts_no_threads(tmp_path: Path) -> None:
    # One thread per worker: neither the decoder nor the colour conversion (swscale's default
    # is a thread per CPU) may start threads of their own.
    import numpy as np

    from actionrec.data.pyav_reader import PyAVReader

    path = write_clip(tmp_path / "clip.mp4")
    before = len(os.listdir("/proc/self/task"))
    with PyAVReader(path) as reader:
        reader.read(np.array([3, 11, 19]))
        assert len(os.listdir("/proc/self/task")) == before


def test_workers_forked_after_the_parent_decoded_do_not_hang(tmp_path: Path) -> None:
    # A colour converter set up in the parent with swscale's thread pool would wait forever
    # in a forked worker, which has none of those threads (seen once with a shared converter).
    import signal
    import subprocess
    import sys

    path = write_clip(tmp_path / "clip.mp4")
    # Its own session, so that a hang is killed with the workers it forked.
    child = subprocess.Popen(
        [sys.executable, "-c", FORKED_WORKERS, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = child.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        pytest.fail("DataLoader workers forked after the parent decoded a video hung")
    assert child.returncode == 0 and "done" in out, err[-2000:]

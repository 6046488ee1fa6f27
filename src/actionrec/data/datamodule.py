"""The LightningDataModule: mmaction2's data config vocabulary in, DataLoaders out."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from actionrec.data.annotations import load_annotations, read_label_map
from actionrec.data.dataset import VideoDataset
from actionrec.data.formats import MediaFormat, media_format
from actionrec.data.sampling import SampleFrames
from actionrec.data.transforms import Compose

# Read by OpenMP, MKL, OpenBLAS, numexpr and Accelerate when they start: in a worker they reach
# libraries it imports later and the decoder process it starts (actionrec.data.isolation).
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def worker_init(worker_id: int) -> None:
    """One thread per worker for every library: workers are the parallelism.

    N workers each running a library's default pool of one thread per core oversubscribe the
    machine N times over. Decoders get one thread each from ``open_video(num_threads=1)``.
    """
    for name in THREAD_ENV_VARS:
        os.environ[name] = "1"
    torch.set_num_threads(1)  # torch's intra-op pool, already started: the variable is too late
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # a broken OpenCV install must not stop the worker
        pass


def build_media(
    dataset_type: str,
    filename_tmpl: str,
    start_index: int | None,
    with_offset: bool,
    decoder: str,
) -> MediaFormat:
    """The media format the ``data.`` keys name (see :func:`actionrec.data.formats.media_format`).

    Stops at construction when a key is wrong, or the format cannot be read here: a decoder
    that is missing would otherwise fail every sample in the workers, each failure counted as
    a skipped sample until the run gives up.
    """
    try:
        media = media_format(
            dataset_type,
            filename_tmpl=filename_tmpl,
            start_index=start_index,
            with_offset=with_offset,
            decoder=decoder,
        )
    except ValueError as err:  # it names the key: these are the data config's
        raise ValueError(f"data.{err}") from None
    reason = media.unavailable()
    if reason is not None:
        raise ValueError(f"data.{reason}; or set data.decoder=pyav (the default)")
    return media


def pin_memory_for(enabled: bool, device: torch.device | None) -> bool:
    """Whether to pin host batches: only when they go to a CUDA device.

    Page-locked memory speeds up the copy to a GPU; elsewhere it only costs (and PyTorch warns).
    """
    return enabled and device is not None and device.type == "cuda"


def build_sampler(
    factory: Callable[..., SampleFrames], split: str, **protocol: int
) -> SampleFrames:
    """The ``split``'s sampler: ``factory`` (``data.<split>_sampler``) called with ``protocol``.

    ``protocol`` holds the clip protocol's stable keys (``clip_len``, ``frame_interval``,
    ``num_clips``; the test split's ``num_clips`` is ``data.test_num_clips``). They are passed
    here rather than written into each sampler's config so that they stay one setting that
    the model's view layout shares, and that an override on top of a checkpoint's resolved
    config (``data.test_num_clips=25`` in eval) still reaches the sampler.
    """
    if isinstance(factory, partial):
        for key in sorted(set(factory.keywords) & set(protocol)):
            stable = "test_num_clips" if split == "test" and key == "num_clips" else key
            raise ValueError(
                f"data.{split}_sampler.{key}={factory.keywords[key]!r}: the sampler gets it from "
                f"data.{stable}; override data.{stable} instead"
            )
    return factory(**protocol)


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...``: a strict partition of the dataset, no padding."""

    def __init__(self, length: int, rank: int, world: int) -> None:
        self.indices = range(rank, length, world)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class EpochShuffleSampler(Sampler[tuple[int, int]]):
    """One device's training order: ``(index, epoch)`` pairs, shuffled by ``(seed, epoch)``.

    The permutation depends on the seed and the epoch only, so a resumed run visits the videos
    in the order the uninterrupted one would have. It is dealt round-robin over the ``world``
    devices with the tail dropped, so each device steps alike and sees each video at most once.
    The epoch travels with each index: workers, persistent ones too, get it with the sample
    (:meth:`VideoDataset.__getitem__ <actionrec.data.dataset.VideoDataset.__getitem__>`).
    Lightning calls :meth:`set_epoch` before each epoch.
    """

    def __init__(self, length: int, seed: int = 0, rank: int = 0, world: int = 1) -> None:
        self.length, self.seed, self.rank, self.world = length, seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        epoch = self.epoch
        order = np.random.default_rng([self.seed, epoch]).permutation(self.length)
        mine = order[: len(self) * self.world][self.rank :: self.world]
        return ((int(i), epoch) for i in mine)

    def __len__(self) -> int:
        return self.length // self.world


class VideoDataModule(L.LightningDataModule):
    """Train / val / test loaders over mmaction2 annotation lists.

    The arguments keep mmaction2's names (``videos_per_gpu`` is the batch size per device).
    Paths in a list are relative to ``data_root`` (``data_root_val`` for val and test).
    Train and val sample ``num_clips`` segments of ``clip_len`` frames (random offsets in
    training, centres in val); test samples ``test_num_clips`` clips and turns them into views.
    Which sampler does it is each split's ``*_sampler``, a factory that gets those numbers.

    Args:
        num_classes: K.
        ann_file_train, ann_file_val, ann_file_test: the annotation lists.
        train_pipeline, val_pipeline, test_pipeline: transforms on uint8 ``(T, C, H, W)``.
        lazy: the train pipeline's ``Resize`` -> crop -> ``Resize`` resamples each frame once,
            from the crop box in the original frame (mmaction2 0.x's ``lazy=True``; see
            :class:`~actionrec.data.transforms.Compose`). It changes nothing for frames already
            at the first resize's size; for others, pixels differ from the three-step chain by
            interpolation only. Val and test pipelines always run step by step, as mmaction2's.
        train_sampler, val_sampler, test_sampler: make each split's sampler from
            ``clip_len=``, ``frame_interval=`` and ``num_clips=`` (``test_num_clips`` for test),
            e.g. ``functools.partial(DenseSampleFrames, sample_range=32)``; Hydra's
            ``_partial_: true`` nodes of the protocol config. None: ``SampleFrames``, in test
            mode for val and test (with ``twice_sample`` for test; that argument serves this
            default only).
        prepare: an optional callable run once before setup (e.g. rendering the toy data).
        split: the official split of datasets that have several (UCF-101, HMDB-51); the config
            puts it into the list names, here it is only kept for the record.
        dataset_type, filename_tmpl, start_index, with_offset, decoder: choose the media format
            (:func:`build_media`), held as ``media``.
        isolate_decoder: decode in a child process (a crash or hang costs one sample); None:
            the format's default (videos yes, frame folders no).
        label_map: a text file naming class i on line i (mmaction2's ``label_map``); reports
            such as the confusion matrix use the names. None: classes are numbered.
        workers_per_gpu: DataLoader worker processes per device, one thread each (0: decode in
            the training process).
        pin_memory: pin batches when the trainer runs on a CUDA device (never on the CPU).
        persistent_workers: keep workers (and their decoder processes) across epochs.
        prefetch_factor: batches each worker prepares ahead.
        See :class:`~actionrec.data.dataset.VideoDataset` for the rest.
    """

    def __init__(
        self,
        num_classes: int,
        ann_file_train: str | None = None,
        ann_file_val: str | None = None,
        ann_file_test: str | None = None,
        dataset_type: str = "video",
        data_root: str = "",
        data_root_val: str | None = None,
        filename_tmpl: str = "img_{:05}.jpg",
        start_index: int | None = None,
        with_offset: bool = False,
        multi_class: bool = False,
        delimiter: str | None = None,
        clip_len: int = 1,
        frame_interval: int = 1,
        num_clips: int = 3,
        test_num_clips: int = 25,
        twice_sample: bool = False,
        train_sampler: Callable[..., SampleFrames] | None = None,
        val_sampler: Callable[..., SampleFrames] | None = None,
        test_sampler: Callable[..., SampleFrames] | None = None,
        train_pipeline: Sequence[Callable] = (),
        val_pipeline: Sequence[Callable] = (),
        test_pipeline: Sequence[Callable] | None = None,
        lazy: bool = True,
        videos_per_gpu: int = 32,
        val_videos_per_gpu: int | None = None,
        test_videos_per_gpu: int | None = None,
        workers_per_gpu: int = 2,
        decoder: str = "pyav",
        on_error: str = "skip",
        decode_timeout: float | None = 60.0,
        isolate_decoder: bool | None = None,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        prefetch_factor: int = 2,
        prepare: Callable[[], Any] | None = None,
        split: int | None = None,
        label_map: str | None = None,
    ) -> None:
        super().__init__()
        self.media = build_media(dataset_type, filename_tmpl, start_index, with_offset, decoder)
        for name, value in [
            ("num_classes", num_classes),
            ("videos_per_gpu", videos_per_gpu),
            ("clip_len", clip_len),
            ("num_clips", num_clips),
        ]:
            if value < 1:
                raise ValueError(f"data.{name}={value} must be >= 1")
        if workers_per_gpu < 0:
            raise ValueError(f"data.workers_per_gpu={workers_per_gpu} must be >= 0")
        if prefetch_factor < 1:
            raise ValueError(f"data.prefetch_factor={prefetch_factor} must be >= 1")
        self.num_classes = num_classes
        self.ann_files = {"train": ann_file_train, "val": ann_file_val, "test": ann_file_test}
        self.roots = {
            "train": data_root,
            "val": data_root_val or data_root,
            "test": data_root_val or data_root,
        }
        self.filename_tmpl = filename_tmpl
        self.multi_class = multi_class
        self.delimiter = delimiter
        given = {"train": train_sampler, "val": val_sampler, "test": test_sampler}
        defaults = {
            "train": SampleFrames,
            "val": partial(SampleFrames, test_mode=True),
            "test": partial(SampleFrames, test_mode=True, twice_sample=twice_sample),
        }
        self.samplers = {
            split: build_sampler(
                given[split] or default,
                split,
                clip_len=clip_len,
                frame_interval=frame_interval,
                num_clips=test_num_clips if split == "test" else num_clips,
            )
            for split, default in defaults.items()
        }
        self.pipelines = {
            "train": Compose(list(train_pipeline), lazy=lazy),
            "val": Compose(list(val_pipeline)),
            "test": Compose(list(val_pipeline if test_pipeline is None else test_pipeline)),
        }
        self.batch_sizes = {
            "train": videos_per_gpu,
            "val": val_videos_per_gpu or videos_per_gpu,
            "test": test_videos_per_gpu or val_videos_per_gpu or videos_per_gpu,
        }
        self.workers_per_gpu = workers_per_gpu
        self.decoder = decoder
        self.on_error = on_error
        self.decode_timeout = decode_timeout
        self.isolate_decoder = (
            self.media.isolate_by_default if isolate_decoder is None else isolate_decoder
        )
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.prefetch_factor = prefetch_factor
        self.prepare = prepare
        self.split = split
        self.label_map = label_map
        self.datasets: dict[str, VideoDataset] = {}

    @property
    def class_names(self) -> list[str] | None:
        """The names of the K classes from ``label_map``, or None without one."""
        if not self.label_map:
            return None
        return read_label_map(self.label_map, self.num_classes, key="data.label_map")

    def prepare_data(self) -> None:
        if self.prepare is not None:
            self.prepare()

    def setup(self, stage: str | None = None) -> None:
        splits = {
            "fit": ["train", "val"],
            "validate": ["val"],
            "test": ["test"],
            "predict": ["test"],
        }.get(stage or "fit", ["train", "val", "test"])
        if self.trainer is not None and self.trainer.limit_val_batches == 0:
            splits = [split for split in splits if split != "val"]  # validation is off
        for split in splits:
            if split not in self.datasets:
                self.datasets[split] = self.build_dataset(split)
        if "train" in splits:
            self._check_batch_fits(len(self.datasets["train"]))
        _ = self.class_names  # a missing or short label map stops the run now, not after an epoch

    def build_dataset(self, split: str) -> VideoDataset:
        ann_file = self.ann_files[split]
        if ann_file is None:
            raise ValueError(f"no annotation list for the {split} split: set data.ann_file_{split}")
        records = load_annotations(
            ann_file,
            data_root=self.roots[split],
            media=self.media,
            multi_class=self.multi_class,
            num_classes=self.num_classes,
            delimiter=self.delimiter,
            key=f"data.ann_file_{split}",
        )
        root = self.roots[split]  # checked after the list: a missing list is named first
        if root and not os.path.isdir(root):
            key = "data.data_root" if split == "train" else "data.data_root_val"
            raise FileNotFoundError(
                f"{key}={root} is not a directory: the paths in data.ann_file_{split} "
                f"({ann_file}) are relative to it; set {key} to the folder that holds the "
                f"{self.media.noun}"
            )
        if not records:
            off = " (or turn validation off: trainer.limit_val_batches=0)" if split == "val" else ""
            raise ValueError(
                f"data.ann_file_{split}={ann_file} lists no videos: fill it, or point "
                f"data.ann_file_{split} at another list{off}"
            )
        self.media.check_list(records)
        return VideoDataset(
            records,
            self.samplers[split],
            self.pipelines[split],
            media=self.media,
            num_classes=self.num_classes,
            multi_class=self.multi_class,
            on_error=self.on_error,
            decode_timeout=self.decode_timeout,
            isolate_decoder=self.isolate_decoder,
            seed=self.seed,
        )

    def teardown(self, stage: str | None = None) -> None:
        # Decoder children of the main process (workers' own end with the workers).
        for dataset in self.datasets.values():
            dataset.close()

    def _check_batch_fits(self, num_videos: int) -> None:
        world = self.trainer.world_size if self.trainer is not None else 1
        needed = self.batch_sizes["train"] * world
        if num_videos < needed:
            raise ValueError(
                f"the training list has {num_videos} videos, fewer than one batch: "
                f"data.videos_per_gpu={self.batch_sizes['train']} x {world} device(s) = {needed} "
                f"(the last incomplete batch is dropped). Lower data.videos_per_gpu to at most "
                f"{max(1, num_videos // world)} or use fewer devices."
            )

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        workers = self.workers_per_gpu
        sampler = self._sampler(split, shuffle)
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_sizes[split],
            sampler=sampler,
            drop_last=split == "train",
            num_workers=workers,
            pin_memory=pin_memory_for(self.pin_memory, self._device()),
            persistent_workers=self.persistent_workers and workers > 0,
            prefetch_factor=self.prefetch_factor if workers > 0 else None,
            worker_init_fn=worker_init if workers > 0 else None,
        )

    def _device(self) -> torch.device | None:
        """The device batches go to: the trainer's (None without a trainer)."""
        return self.trainer.strategy.root_device if self.trainer is not None else None

    def _sampler(self, split: str, shuffle: bool) -> Sampler | None:
        """This device's share (the trainer leaves sampling to us, see conf/trainer).

        Training shuffles by seed and epoch and drops the tail so every device steps alike;
        evaluation gives every video to exactly one device, none padded in twice, so metrics
        equal one device's.
        """
        trainer = self.trainer
        world = trainer.world_size if trainer is not None else 1
        rank = trainer.global_rank if world > 1 else 0
        length = len(self.datasets[split])
        if shuffle:
            sampler = EpochShuffleSampler(length, self.seed, rank, world)
            # Workers start drawing indices when the loader's iterator is made, which a resumed
            # run does before Lightning's set_epoch: start at the trainer's epoch.
            sampler.set_epoch(trainer.current_epoch if trainer is not None else 0)
            return sampler
        return ShardSampler(length, rank, world) if world > 1 else None

    @property
    def seed(self) -> int:
        """The run's seed (``seed_everything`` puts it in ``PL_GLOBAL_SEED``), 0 without one."""
        return int(os.environ.get("PL_GLOBAL_SEED", 0))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        if "val" not in self.datasets:
            self.setup("validate")
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        if "test" not in self.datasets:
            self.setup("test")
        return self._loader("test", shuffle=False)

"""Time mmaction2's own TSN pipelines on given files and frame indices (a benchmark baseline).

Runs under the throwaway environment that ``make bench-env`` creates (.bench/mmaction2-venv),
never under actionrec's: ``scripts/bench_pipeline.py`` (``scripts/benchmarks/baselines.py``)
starts it with that environment's python and sends it one pass at a time (see :func:`serve`), so
that its passes alternate with ours on a machine whose load changes. mmaction2 is a baseline to
measure against, not a dependency. Only the standard library, numpy and mmaction2's stack are
imported.

The pipelines are those of mmaction2's TSN R50 1x1x3 Kinetics-400 configs (video: DecordInit,
DecordDecode; frames: RawFrameDecode), with one change: ``SampleFrames`` is replaced by a step
that sets the frame indices actionrec's sampler drew, so both decode the same frames (it still
runs its own ``SampleFrames`` first, so the time includes drawing indices, as ours does).
"""

from __future__ import annotations

import os
import sys

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

_AUG = {
    "train": [
        dict(type="Resize", scale=(-1, 256)),
        dict(
            type="MultiScaleCrop",
            input_size=224,
            scales=(1, 0.875, 0.75, 0.66),
            random_crop=False,
            max_wh_scale_gap=1,
        ),
        dict(type="Resize", scale=(224, 224), keep_ratio=False),
        dict(type="Flip", flip_ratio=0.5),
    ],
    "val": [dict(type="Resize", scale=(-1, 256)), dict(type="CenterCrop", crop_size=224)],
    "test": [dict(type="Resize", scale=(-1, 256)), dict(type="TenCrop", crop_size=224)],
}


_SAMPLE = {
    "train": dict(type="SampleFrames", clip_len=1, frame_interval=1, num_clips=3),
    "val": dict(type="SampleFrames", clip_len=1, frame_interval=1, num_clips=3, test_mode=True),
    "test": dict(type="SampleFrames", clip_len=1, frame_interval=1, num_clips=25, test_mode=True),
}


def _pipeline(kind: str, split: str) -> list[dict]:
    # mmaction2 draws its own indices (its cost counts), then decodes the ones ours drew.
    sample = [_SAMPLE[split], dict(type="GivenFrameInds")]
    if kind == "video":
        load = [dict(type="DecordInit", num_threads=1), *sample, dict(type="DecordDecode")]
    else:
        load = [*sample, dict(type="RawFrameDecode")]
    tail = [dict(type="FormatShape", input_format="NCHW"), dict(type="PackActionInputs")]
    return load + _AUG[split] + tail


def _register_given_inds() -> None:
    from mmaction.registry import TRANSFORMS
    from mmcv.transforms import BaseTransform

    @TRANSFORMS.register_module(force=True)
    class GivenFrameInds(BaseTransform):
        """SampleFrames's output, taken from ``results["given_inds"]`` (clip_len 1)."""

        def transform(self, results: dict) -> dict:
            inds = np.asarray(results["given_inds"], dtype=np.int64)
            results.update(frame_inds=inds, clip_len=1, frame_interval=1, num_clips=len(inds))
            return results


def _versions() -> dict[str, str]:
    import cv2
    import decord
    import mmaction
    import mmcv
    import mmengine
    import torch

    return {
        "mmaction2": mmaction.__version__,
        "mmengine": mmengine.__version__,
        "mmcv": mmcv.__version__,
        "decord (mmaction2 env)": decord.__version__,
        "opencv (mmaction2 env)": cv2.__version__,
        "numpy (mmaction2 env)": np.__version__,
        "torch (mmaction2 env)": torch.__version__,
    }


def _setup(seed: int):
    """One thread everywhere, mmaction2's transforms registered; returns mmengine's Compose."""
    import random

    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    # mmaction2 1.2.0's wheel lacks a module its models package imports; the transforms and
    # the registry scope are all a data pipeline needs.
    import mmaction.datasets.transforms  # noqa: F401
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope

    init_default_scope("mmaction")
    _register_given_inds()
    np.random.seed(seed)
    random.seed(seed)
    return Compose


def _inputs(item: dict, kind: str, inds: list[int]) -> dict:
    """What mmaction2's VideoDataset / RawframeDataset hand their pipeline, plus the indices."""
    if kind == "video":
        data = dict(filename=item["path"], label=0, start_index=0, modality="RGB")
    else:
        data = dict(
            frame_dir=item["path"],
            total_frames=item["total_frames"],
            label=0,
            filename_tmpl=item["filename_tmpl"],
            start_index=1,
            offset=0,
            modality="RGB",
        )
    data["given_inds"] = inds
    return data


def serve(seed: int) -> int:
    """Answer jobs, one JSON object per line on stdin, one JSON reply per line.

    A job: ``{"kind", "split", "items": [{"path", ...}], "inds": [[...] per item]}``, with
    ``"dump_dir"`` to save each output (uint8 ``(T, C, H, W)`` ``.npy``) instead of timing.
    The reply: ``{"cpu_ms": [...], "wall_ms": [...]}`` per item, or ``{"files": [...]}``.
    """
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr  # anything mmaction2 prints must not mix with the replies
    compose = _setup(seed)
    pipelines: dict = {}
    out.write(json.dumps({"versions": _versions()}) + "\n")
    out.flush()
    for line in sys.stdin:
        job = json.loads(line)
        key = (job["kind"], job["split"])
        if key not in pipelines:
            pipelines[key] = compose(_pipeline(*key))
            first = job["items"][0]
            pipelines[key](_inputs(first, job["kind"], job["inds"][0]))  # warm-up
        pipeline = pipelines[key]
        if not job.get("dump_dir"):  # warm code before a timed pass, as ours gets
            pipeline(_inputs(job["items"][-1], job["kind"], job["inds"][-1]))
        reply: dict = {"cpu_ms": [], "wall_ms": [], "files": []}
        for n, (item, inds) in enumerate(zip(job["items"], job["inds"], strict=True)):
            data = _inputs(item, job["kind"], inds)
            if job.get("dump_dir"):
                path = Path(job["dump_dir"]) / f"{job['name']}_{n}.npy"
                np.save(path, pipeline(data)["inputs"].numpy())
                reply["files"].append(str(path))
                continue
            c0, w0 = time.process_time(), time.perf_counter()
            pipeline(data)
            reply["cpu_ms"].append((time.process_time() - c0) * 1e3)
            reply["wall_ms"].append((time.perf_counter() - w0) * 1e3)
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.exit("usage: mmaction2_baseline.py SEED  (run by scripts/bench_pipeline.py)")
    sys.exit(serve(int(sys.argv[1])))

"""mmaction2's own test scores on the sample videos: the oracle fixtures of the parity tests.

Run it in the throwaway environment of ``make bench-env`` (never in actionrec's; CI has no
mmaction2), from the repository root::

    .bench/mmaction2-venv/bin/python scripts/mmaction2_reference.py [--config NAME ...]

For each mmaction2 1.x config below (its own file, from the installed package's ``.mim``), it

1. builds the config's model (``Config.fromfile`` + ``MODELS.build``) with ``NUM_CLASSES``
   classes and no pretrained weights, and writes its state-dict keys and shapes, in order, to
   ``tests/fixtures/mmaction2/reference/<config>_keys.json``;
2. gives it the seeded stand-in weights of ``tests/fixtures/mmaction2/weights.py``;
3. runs the config's own test pipeline (``test_dataloader.dataset`` with its ``test_pipeline``:
   DecordInit, SampleFrames, DecordDecode, Resize, Ten/ThreeCrop, FormatShape) on the sample
   videos, and calibrates every BatchNorm on those real clips: the backbone in train mode with
   ``momentum=None`` (cumulative average of the batch statistics) over a subset of the test
   views, then the statistics rounded to float16 (the fixture's precision; a network without
   BatchNorm, such as a ViT, keeps its LayerNorms' seeded weights and has none). Random weights
   give scores dominated by a part common to every input, so the classifier's bias is set
   to cancel it: ``bias = -W @ m``, ``m`` the mean pooled feature over the same views in eval
   mode (float16 too). Then the logits of a video are what sets it apart from the others,
   and a wrong sampling or view layout moves them visibly. These tensors are written to
   ``<config>_bn.npz`` (float16; keys are checkpoint keys, the BN ``running_mean`` and
   ``running_var`` plus ``cls_head.fc_cls.bias``, X3D's ``cls_head.fc2.bias``);
4. loads ``write_checkpoint(keys, bn_stats=npz)`` -- the very file the parity test writes --
   with mmengine's ``load_checkpoint`` and scores every video with ``model.test_step`` (the
   recognizer's own view reshaping, consensus and ``average_clips``), writing
   ``<config>_scores.json``: per video the frame indices the test SampleFrames drew, the
   number of views the head scored, the class scores after ``average_clips`` and their logs;
5. unless ``--no-sensitivity``, scores wrong protocols the same way (every frame index one
   later; one clip fewer, or TSM's ``twice_sample``; with ``target_fps``, the video's own rate;
   X3D with ImageNet's mean and std) and records how far each falls from the
   reference (``sensitivity`` in the scores file), so the fixture shows that a parity check of
   top-1 plus a centred log-probability correlation above 0.9999 rejects them.

3-D configs get ``test_cfg.max_testing_views`` (mmaction2's own option) so the 30 views go
through the backbone 10 at a time; eval-mode BatchNorm scores each view alone, so this changes
memory, not scores. Only torch, numpy and mmaction2's stack are imported.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "mmaction2"
OUT_DIR = FIXTURES / "reference"
SAMPLES = ROOT.parent / "shared" / "data" / "mmaction2-samples"

NUM_CLASSES = 16
SEED = 0
# The sample videos and the labels the annotation list gives them (labels do not change scores).
VIDEOS = (("test.mp4", 0), ("demo.mp4", 1))

CONFIGS = {
    "tsn_imagenet-pretrained-r50_8xb32-1x1x3-100e_kinetics400-rgb": "tsn",
    "tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb": "tsm",
    "i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb": "i3d",
    "slowonly_imagenet-pretrained-r50_8xb16-4x16x1-steplr-150e_kinetics400-rgb": "slowonly",
    "r2plus1d_r34_8xb8-8x8x1-180e_kinetics400-rgb": "r2plus1d",
    "x3d_s_13x6x1_facebook-kinetics400-rgb": "x3d",
    "mvit-small-p244_32xb16-16x4x1-200e_kinetics400-rgb": "mvit",
    "slowfast_r50_8xb8-4x16x1-256e_kinetics400-rgb": "slowfast",
    "vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400": "videomae",
}
# Calibration uses every `CALIB_STRIDE`-th unit of the test input (a frame for TSN, one crop's
# 8 segments for TSM, one clip-crop view for the 3-D networks), `CALIB_BATCH` units at a time.
CALIB_STRIDE = {
    "tsn": 5,
    "tsm": 3,
    "i3d": 3,
    "slowonly": 3,
    "r2plus1d": 3,
    "x3d": 3,
    "mvit": 2,
    "slowfast": 3,
    "videomae": 3,
}
CALIB_BATCH = {
    "tsn": 50,
    "tsm": 4,
    "i3d": 5,
    "slowonly": 10,
    "r2plus1d": 5,
    "x3d": 10,
    "mvit": 3,
    "slowfast": 5,
    "videomae": 5,
}
MAX_TESTING_VIEWS = {
    "i3d": 10,
    "slowonly": 15,
    "r2plus1d": 10,
    "x3d": 15,
    "slowfast": 10,
    "videomae": 5,
}
# The wrong protocols are scored on the first videos only where a pass is slow on a CPU.
SENSITIVITY_VIDEOS = {
    "tsn": 1,
    "tsm": 2,
    "i3d": 1,
    "slowonly": 1,
    "r2plus1d": 1,
    "x3d": 2,
    "mvit": 1,
    "slowfast": 1,
    "videomae": 1,
}
# Heads whose classifier is not `fc_cls` on the pooled features: (its key, the layers before it).
CLASSIFIERS = {"x3d": ("fc2", lambda head, x: head.relu(head.fc1(x)))}  # X3DHead


def _stub_missing_drn() -> None:
    """mmaction2 1.2.0's wheel lacks ``models/localizers/drn`` (a packaging slip upstream), so
    ``import mmaction.models`` fails; a placeholder module lets the recognizers import. DRN, a
    temporal grounding model, is never built here."""
    import importlib.util
    import types

    spec = importlib.util.find_spec("mmaction")
    if spec is None or not spec.submodule_search_locations:
        return
    localizers = Path(next(iter(spec.submodule_search_locations))) / "models" / "localizers"
    if (localizers / "drn" / "drn.py").exists():
        return
    pkg = types.ModuleType("mmaction.models.localizers.drn")
    pkg.__path__ = []
    mod = types.ModuleType("mmaction.models.localizers.drn.drn")
    mod.DRN = type("DRN", (), {})
    sys.modules[pkg.__name__] = pkg
    sys.modules[mod.__name__] = mod


def _load_weights_module():
    spec = importlib.util.spec_from_file_location(
        "actionrec_fixture_weights", FIXTURES / "weights.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


WEIGHTS = _load_weights_module()


def config_path(name: str) -> Path:
    import mmaction

    family = CONFIGS[name]
    return (
        Path(mmaction.__file__).parent / ".mim" / "configs" / "recognition" / family / f"{name}.py"
    )


def centred_corr(a, b) -> float:
    """Pearson correlation of two log-probability vectors (each centred over its classes)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a - a.mean()
    b = b - b.mean()
    return float(a @ b / math.sqrt((a @ a) * (b @ b)))


class Reference:
    """One config: its model, its test dataset and the recorded test of every video."""

    def __init__(self, name: str, ann_file: Path) -> None:
        from mmengine.config import Config

        _stub_missing_drn()
        from mmaction.registry import DATASETS, MODELS
        from mmaction.utils import register_all_modules

        register_all_modules(init_default_scope=True)
        self.name = name
        self.kind = CONFIGS[name]
        cfg = Config.fromfile(str(config_path(name)))
        cfg.model.cls_head.num_classes = NUM_CLASSES
        cfg.model.backbone.pretrained = None
        if "pretrained2d" in cfg.model.backbone:
            cfg.model.backbone.pretrained2d = False
        if self.kind in MAX_TESTING_VIEWS:
            cfg.model.test_cfg = dict(max_testing_views=MAX_TESTING_VIEWS[self.kind])
        self.cfg = cfg
        self.model = MODELS.build(cfg.model).eval()
        self.shapes = {k: list(v.shape) for k, v in self.model.state_dict().items()}
        self.dataset_cfg = copy.deepcopy(cfg.test_dataloader.dataset)
        self.dataset_cfg.ann_file = str(ann_file)
        self.dataset_cfg.data_prefix = dict(video=str(SAMPLES))
        self._build_dataset = lambda dcfg: DATASETS.build(dcfg)
        self.test_sampler = next(t for t in cfg.test_pipeline if t["type"] == "SampleFrames")

    # -- data -----------------------------------------------------------------------------
    def load(
        self, sampler_change: dict | None = None, shift: int = 0, videos: int | None = None
    ) -> list[dict]:
        """Run the test pipeline on every video; record the frame indices SampleFrames drew.

        ``sampler_change`` overrides SampleFrames' arguments, ``shift`` adds to every index
        (mod the frame count): the wrong protocols of the sensitivity check; ``videos``: only
        the first ones.
        """
        dcfg = copy.deepcopy(self.dataset_cfg)
        for step in dcfg.pipeline:
            if step["type"] == "SampleFrames":
                step.update(sampler_change or {})
        dataset = self._build_dataset(dcfg)
        items = []
        for i, (path, label) in enumerate(VIDEOS[:videos]):
            results = dataset.get_data_info(i)
            assert Path(results["filename"]).name == path, results["filename"]
            frame_inds = total_frames = avg_fps = None
            for transform in dataset.pipeline.transforms:
                results = transform(results)
                if "frame_inds" in results and frame_inds is None:
                    total_frames = int(results["total_frames"])
                    avg_fps = results.get("avg_fps")
                    if shift:
                        results["frame_inds"] = (results["frame_inds"] + shift) % total_frames
                    frame_inds = np.asarray(results["frame_inds"]).tolist()
            items.append(
                dict(
                    path=path,
                    label=label,
                    packed=results,
                    frame_inds=frame_inds,
                    total_frames=total_frames,
                    avg_fps=None if avg_fps is None else float(avg_fps),
                )
            )
        return items

    def _units(self, inputs: torch.Tensor) -> torch.Tensor:
        """The preprocessed test input of one video as a stack of the backbone's units."""
        if self.kind == "tsn":
            return inputs.reshape((-1, *inputs.shape[-3:]))  # frames (N*T, C, H, W)
        if self.kind == "tsm":
            return inputs.reshape((-1, 8, *inputs.shape[-3:]))  # crops of 8 segments
        return inputs.reshape((-1, *inputs.shape[-4:]))  # views (C, T, H, W)

    def _backbone(self, units: torch.Tensor) -> torch.Tensor:
        if self.kind == "tsm":
            units = units.reshape((-1, *units.shape[-3:]))
        return self.model.backbone(units)

    def _preprocess(self, item: dict) -> torch.Tensor:
        data = self.model.data_preprocessor(
            dict(inputs=[item["packed"]["inputs"]], data_samples=[item["packed"]["data_samples"]]),
            training=False,
        )
        return data["inputs"]

    # -- calibration ------------------------------------------------------------------------
    def calibrate(self, items: list[dict]) -> dict[str, np.ndarray]:
        """BN statistics (train mode, cumulative) and the bias that removes the common part."""
        bns = {
            n: m
            for n, m in self.model.named_modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        }
        for m in bns.values():
            m.reset_running_stats()
            m.momentum = None
        stride, batch = CALIB_STRIDE[self.kind], CALIB_BATCH[self.kind]
        subsets = [self._units(self._preprocess(it))[::stride] for it in items]
        self.model.backbone.train()
        with torch.no_grad():
            for units in subsets if bns else []:  # LayerNorm networks have nothing to calibrate
                for start in range(0, len(units), batch):
                    self._backbone(units[start : start + batch])
        self.model.eval()
        stats = {}
        for n, m in bns.items():
            stats[f"{n}.running_mean"] = m.running_mean.numpy().astype(np.float16)
            stats[f"{n}.running_var"] = m.running_var.numpy().astype(np.float16)
            m.running_mean.copy_(torch.from_numpy(stats[f"{n}.running_mean"].astype(np.float32)))
            m.running_var.copy_(torch.from_numpy(stats[f"{n}.running_var"].astype(np.float32)))
        feats = []
        with torch.no_grad():
            for units in subsets:
                for start in range(0, len(units), batch):
                    x = self._backbone(units[start : start + batch])
                    if isinstance(x, tuple) and self.kind == "slowfast":
                        x = pooled(x)  # both pathways pooled, fast first, as its head joins them
                    elif isinstance(x, tuple):  # a transformer's scales: the head picks its input
                        x = self.model.cls_head.pre_logits(x)  # (n, D)
                    elif x.dim() > 2:  # feature maps; a ViT's features come pooled
                        x = self._classifier_input(x.mean(dim=tuple(range(2, x.dim()))))
                    feats.append(x)
        mean_feat = torch.cat(feats).mean(0)
        name = CLASSIFIERS.get(self.kind, ("fc_cls",))[0]
        fc = getattr(self.model.cls_head, name)
        stats[f"cls_head.{name}.bias"] = (
            (-(fc.weight.detach() @ mean_feat)).numpy().astype(np.float16)
        )
        return stats

    def _classifier_input(self, pooled: torch.Tensor) -> torch.Tensor:
        """What the head's classifier sees for pooled features ``(n, D)``."""
        if self.kind in CLASSIFIERS:
            return CLASSIFIERS[self.kind][1](self.model.cls_head, pooled)
        return pooled

    # -- test -------------------------------------------------------------------------------
    def load_checkpoint(self, path: Path) -> None:
        from mmengine.runner import load_checkpoint

        load_checkpoint(self.model, str(path), map_location="cpu", strict=True, logger="silent")
        self.model.eval()

    def score(self, items: list[dict]) -> list[dict]:
        rows = []
        head = self.model.cls_head
        seen = {}

        def hook(_module, _inputs, output):
            seen["views"] = int(output.shape[0])
            seen["logits"] = output.detach().double().numpy()

        handle = head.register_forward_hook(hook)
        try:
            for it in items:
                with torch.no_grad():
                    out = self.model.test_step(
                        dict(
                            inputs=[it["packed"]["inputs"]],
                            data_samples=[it["packed"]["data_samples"]],
                        )
                    )
                scores = out[0].pred_score.double().numpy()
                rows.append(
                    dict(
                        path=it["path"],
                        label=it["label"],
                        total_frames=it["total_frames"],
                        avg_fps=it["avg_fps"],
                        frame_inds=it["frame_inds"],
                        input_shape=list(it["packed"]["inputs"].shape),
                        num_views=seen["views"],
                        view_logits_std=float(seen["logits"].std(axis=1).mean()),
                        scores=scores.tolist(),
                        log_probs=np.log(scores).tolist(),
                        top1=int(scores.argmax()),
                    )
                )
        finally:
            handle.remove()
        return rows


def pooled(maps) -> torch.Tensor:
    """Backbone maps averaged over all but (n, C); SlowFast's (slow, fast) pair concatenated
    as its head concatenates them: fast, then slow."""
    if isinstance(maps, tuple):
        return torch.cat([pooled(m) for m in reversed(maps)], dim=1)
    return maps.mean(dim=tuple(range(2, maps.dim())))  # (n, 2048)


def keys_json(shapes: dict[str, list[int]]) -> str:
    """The keys and shapes as JSON, one key a line, in the state dict's order."""
    lines = (f"{json.dumps(k)}: {json.dumps(v)}" for k, v in shapes.items())
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _versions() -> dict[str, str]:
    import decord
    import mmaction
    import mmcv
    import mmengine

    return {
        "mmaction2": mmaction.__version__,
        "mmcv": mmcv.__version__,
        "mmengine": mmengine.__version__,
        "torch": torch.__version__,
        "decord": decord.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _variants(kind: str, sampler: dict) -> dict[str, dict]:
    """Wrong test protocols that the parity check must reject."""
    variants = {"frame_inds+1": dict(shift=1)}
    if kind == "tsm":
        # Clip counts other than 8 break the shift's groups of 8; TSM's twice_sample test
        # (16 clips: the centres and the starts of the 8 segments) is the wrong count here.
        variants["twice_sample"] = dict(sampler_change=dict(twice_sample=True))
    else:
        n = sampler["num_clips"] - 1
        variants[f"num_clips={n}"] = dict(sampler_change=dict(num_clips=n))
    if sampler.get("target_fps") is not None:  # a video's own rate (demo.mp4: 28 fps)
        variants["target_fps=None"] = dict(sampler_change=dict(target_fps=None))
    if kind == "x3d":  # its own normalization, not the ImageNet one of the other recipes
        imagenet = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
        variants["imagenet_mean_std"] = dict(preprocess=imagenet)
    return variants


def score_with_preprocess(ref: Reference, change: dict) -> list[dict]:
    """Score the sensitivity videos with the data preprocessor's mean and std replaced."""
    change = dict(change)
    norm = change.pop("preprocess", None)
    items = ref.load(**change, videos=SENSITIVITY_VIDEOS[ref.kind])
    if norm is None:
        return ref.score(items)
    pre = ref.model.data_preprocessor
    saved = pre.mean.clone(), pre.std.clone()
    pre.mean.copy_(torch.tensor(norm["mean"]).view_as(pre.mean))
    pre.std.copy_(torch.tensor(norm["std"]).view_as(pre.std))
    try:
        return ref.score(items)
    finally:
        pre.mean.copy_(saved[0])
        pre.std.copy_(saved[1])


def run(name: str, sensitivity: bool, workdir: Path) -> dict:
    t0 = time.time()
    ann = workdir / "video_test_list.txt"
    ann.write_text("".join(f"{p} {label}\n" for p, label in VIDEOS))
    ref = Reference(name, ann)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / f"{name}_keys.json").write_text(keys_json(ref.shapes))
    seeded = WEIGHTS.write_checkpoint(workdir / f"{name}_seeded.pth", ref.shapes, seed=SEED)
    ref.load_checkpoint(seeded)
    items = ref.load()
    print(f"[{name}] loaded {len(items)} videos in {time.time() - t0:.0f}s", flush=True)
    stats = ref.calibrate(items)
    np.savez_compressed(OUT_DIR / f"{name}_bn.npz", **stats)
    print(f"[{name}] calibrated in {time.time() - t0:.0f}s", flush=True)
    # The parity test's own checkpoint: seeded weights with the npz's tensors in place.
    with np.load(OUT_DIR / f"{name}_bn.npz") as npz:
        bn = {k: npz[k] for k in npz.files}
    ckpt = WEIGHTS.write_checkpoint(workdir / f"{name}.pth", ref.shapes, bn_stats=bn, seed=SEED)
    ref.load_checkpoint(ckpt)
    videos = ref.score(items)
    print(f"[{name}] scored in {time.time() - t0:.0f}s", flush=True)
    for v in videos:
        print(
            f"  {v['path']}: top1 {v['top1']} views {v['num_views']}",
            f"logp {np.round(v['log_probs'], 3)}",
        )
    sampler = dict(ref.test_sampler)
    sampler.pop("type")
    heads = ref.cfg.model.cls_head
    pipeline = [dict(t) for t in ref.cfg.test_pipeline]
    crop = next(t for t in pipeline if t["type"] in ("TenCrop", "ThreeCrop", "CenterCrop"))
    result = dict(
        config=name,
        config_file=f"recognition/{CONFIGS[name]}/{name}.py",
        num_classes=NUM_CLASSES,
        seed=SEED,
        versions=_versions(),
        test_pipeline=pipeline,
        protocol=dict(
            sample_frames=sampler,
            crop=crop["type"],
            crop_size=crop["crop_size"],
            num_crops={"TenCrop": 10, "ThreeCrop": 3}.get(crop["type"], 1),
            average_clips=heads.get("average_clips"),
            recognizer=ref.cfg.model.type,
            test_cfg=ref.cfg.model.get("test_cfg"),
        ),
        calibration=dict(
            bn="backbone in train mode, momentum=None (cumulative), over every "
            f"{CALIB_STRIDE[ref.kind]}th unit of each video's test input, {CALIB_BATCH[ref.kind]} "
            "units a batch; rounded to float16",
            bias=f"cls_head.{CLASSIFIERS.get(ref.kind, ('fc_cls',))[0]}.bias = -W @ (mean "
            "eval-mode input of the classifier over the same units), float16",
        ),
        check=dict(
            top1="equal per video",
            log_probs="Pearson correlation of the log-probability vectors, each centred over "
            "its classes, above 0.9999 per video",
        ),
        videos=videos,
    )
    cross = centred_corr(videos[0]["log_probs"], videos[1]["log_probs"])
    result["between_videos_corr"] = cross
    if sensitivity:
        sens = {}
        for label, change in _variants(ref.kind, sampler).items():
            wrong = score_with_preprocess(ref, change)
            sens[label] = {
                w["path"]: dict(
                    corr=centred_corr(w["log_probs"], v["log_probs"]),
                    top1=w["top1"],
                    top1_equal=w["top1"] == v["top1"],
                    num_views=w["num_views"],
                    frame_inds_head=w["frame_inds"][:8],
                )
                for w, v in zip(wrong, videos, strict=False)
            }
            sens[label]["rejected"] = any(
                r["corr"] <= 0.9999 or not r["top1_equal"] for k, r in sens[label].items()
            )
            print(
                f"[{name}] {label}: {json.dumps(sens[label])}  ({time.time() - t0:.0f}s)",
                flush=True,
            )
        result["sensitivity"] = sens
    result["seconds"] = round(time.time() - t0, 1)
    (OUT_DIR / f"{name}_scores.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", action="append", choices=sorted(CONFIGS), help="default: all")
    parser.add_argument("--no-sensitivity", action="store_true", help="skip the wrong protocols")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.config or list(CONFIGS):
            run(name, not args.no_sensitivity, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())

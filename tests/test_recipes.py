"""Recipe options, each set by a config override and checked for its effect.

Warmup, cosine decay, TSM parameter groups, auto_scale_lr, mixup/cutmix, label smoothing,
mixed precision, channels_last, torch.compile, SyncBatchNorm and the SLURM launcher.
"""

from __future__ import annotations

import csv
import math
import os

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger
from omegaconf import OmegaConf
from tests.conftest import CONF_DIR, toy_overrides
from torch import nn
from torch.utils.data import DataLoader

from actionrec import runs
from actionrec.blending import CutmixBlending, MixupBlending, cutmix, mixup
from actionrec.module import Recognizer
from actionrec.optim import lr_scale_factor, tsm_param_groups


def synthetic_batches(num: int = 8, batch_size: int = 4, num_classes: int = 6) -> DataLoader:
    """uint8 clips ``(T=3, C=3, 16, 16)``: enough for the toy CNN, no decoding."""
    gen = torch.Generator().manual_seed(0)
    samples = [
        {
            "imgs": torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8, generator=gen),
            "label": torch.tensor(i % num_classes),
        }
        for i in range(num)
    ]
    return DataLoader(samples, batch_size=batch_size)


class RecordLR(L.Callback):
    """Every group's lr as the optimizer is about to step (warmup included)."""

    def __init__(self) -> None:
        self.lrs: list[list[float]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.lrs.append([group["lr"] for group in optimizer.param_groups])


def fit(cfg, module: Recognizer, callbacks: list[L.Callback] = ()) -> L.Trainer:
    """``cfg.trainer`` as composed (precision, clipping ...), on 2 synthetic batches an epoch."""
    trainer = instantiate(
        cfg.trainer,
        callbacks=list(callbacks),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module, synthetic_batches(batch_size=cfg.data.videos_per_gpu))
    return trainer


SMALL = ("data.videos_per_gpu=4",)


# --- warmup and cosine -----------------------------------------------------------------------


def test_warmup_override_ramps_the_lr_over_the_first_epoch(compose_train) -> None:
    cfg = compose_train(*SMALL, "optim=sgd", "optim.warmup_epochs=1", "trainer.max_epochs=2")
    record = RecordLR()
    fit(cfg, runs.build_module(cfg), [record])
    # 2 steps an epoch; warmup from 0.1 x lr: 0.1 + 0.9 * k / 2 at step k = 0, 1 (LinearLR).
    assert [lr for (lr,) in record.lrs] == pytest.approx([0.001, 0.0055, 0.01, 0.01])


def test_warmup_and_step_decay_compose_as_in_mmengine(compose_train) -> None:
    cfg = compose_train(
        *SMALL,
        "optim=sgd",
        "optim.warmup_epochs=2",
        "optim.scheduler.milestones=[1]",
        "trainer.max_epochs=3",
    )
    record = RecordLR()
    fit(cfg, runs.build_module(cfg), [record])
    # Warmup factors 0.1, 0.325, 0.55, 0.775, then 1; x0.1 from the second epoch.
    expected = [0.001, 0.00325, 0.00055, 0.000775, 0.001, 0.001]
    assert [lr for (lr,) in record.lrs] == pytest.approx(expected)


def test_the_logged_lr_is_the_one_the_optimizer_used(compose_train, tmp_path) -> None:
    cfg = compose_train(*SMALL, "optim=sgd", "optim.warmup_epochs=2", "trainer.max_epochs=3")
    record = RecordLR()
    monitor = instantiate(cfg.callbacks.lr_monitor)  # as every run logs it
    trainer = instantiate(
        cfg.trainer,
        callbacks=[record, monitor],
        logger=CSVLogger(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(runs.build_module(cfg), synthetic_batches(batch_size=4))
    used = [lrs[0] for lrs in record.lrs]
    assert used[0] < used[2] < used[4]  # warming up
    assert list(monitor.lrs) == ["lr-SGD"]  # one key, whichever scheduler moved the lr
    trainer.logger.save()
    with open(trainer.logger.experiment.metrics_file_path) as f:  # what the user reads
        logged = [float(row["lr-SGD"]) for row in csv.DictReader(f) if row.get("lr-SGD")]
    assert logged == pytest.approx(used[::2])  # once an epoch, before its first step


def test_cosine_override_decays_sgd_per_epoch(compose_train) -> None:
    cfg = compose_train(*SMALL, "optim=sgd", "optim/scheduler=cosine", "trainer.max_epochs=4")
    assert cfg.optim.optimizer._target_ == "torch.optim.SGD"
    record = RecordLR()
    fit(cfg, runs.build_module(cfg), [record])
    expected = [0.01 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4) for _ in range(2)]
    assert [lr for (lr,) in record.lrs] == pytest.approx(expected)


# --- parameter groups ------------------------------------------------------------------------


def test_tsm_groups_follow_mmaction2s_constructor() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3),  # first conv: like any other in the recipe
        nn.BatchNorm2d(4),
        nn.Conv2d(4, 4, 1, bias=False),
        nn.GroupNorm(2, 4),
        nn.Flatten(),
        nn.Linear(4, 5),
    )
    net[2].weight.requires_grad_(False)  # frozen: in no group
    groups = {g["name"]: g for g in tsm_param_groups(net)}
    by_name = {name: [id(p) for p in g["params"]] for name, g in groups.items()}
    assert by_name == {
        "weight": [id(net[0].weight)],
        "bias": [id(net[0].bias)],
        "norm": [id(p) for p in (net[1].weight, net[1].bias, net[3].weight, net[3].bias)],
        "fc_weight": [id(net[5].weight)],
        "fc_bias": [id(net[5].bias)],
    }
    mults = {n: (g["lr_mult"], g["decay_mult"]) for n, g in groups.items()}
    assert mults == {
        "weight": (1, 1),
        "bias": (2, 0),
        "norm": (1, 0),
        "fc_weight": (5, 1),
        "fc_bias": (10, 0),
    }
    plain = {g["name"]: len(g["params"]) for g in tsm_param_groups(net, fc_lr5=False)}
    assert plain == {"weight": 2, "bias": 2, "norm": 4}


def test_tsm_groups_refuse_a_layer_without_a_rule() -> None:
    net = nn.Sequential(nn.Linear(2, 2), nn.PReLU())
    with pytest.raises(ValueError, match=r"'1' \(PReLU\).*optim/param_groups"):
        tsm_param_groups(net)


def test_tsm_override_sets_each_groups_lr_and_weight_decay(compose_train) -> None:
    cfg = compose_train("optim=sgd", "optim/param_groups=tsm", "optim/scheduler=cosine")
    module = runs.build_module(cfg)
    (optimizer,), (scheduler,) = module.configure_optimizers()
    groups = {g["name"]: g for g in optimizer.param_groups}
    lr, wd = 0.01, 1e-4
    # The toy CNN: 4 convs without bias, 4 BatchNorms (weight and bias), the linear classifier.
    assert {n: len(g["params"]) for n, g in groups.items()} == {
        "weight": 4,
        "norm": 8,
        "fc_weight": 1,
        "fc_bias": 1,
    }
    lrs = {n: g["lr"] for n, g in groups.items()}
    assert lrs == pytest.approx({"weight": lr, "norm": lr, "fc_weight": 5 * lr, "fc_bias": 10 * lr})
    decays = {n: g["weight_decay"] for n, g in groups.items()}
    assert decays == pytest.approx({"weight": wd, "norm": 0, "fc_weight": wd, "fc_bias": 0})
    assert groups["fc_weight"]["params"][0] is module.net.head.fc_cls.weight
    trainable = {id(p) for p in module.parameters() if p.requires_grad}
    grouped = [id(p) for g in groups.values() for p in g["params"]]
    assert sorted(grouped) == sorted(trainable)  # each parameter in exactly one group
    # The scheduler starts from the multiplied lrs.
    assert scheduler["scheduler"].base_lrs == [g["lr"] for g in groups.values()]


# --- auto_scale_lr ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("videos_per_gpu", "world_size", "factor"),
    [(32, 8, 1.0), (32, 16, 2.0), (8, 4, 0.125), (4, 1, 1 / 64)],
)
def test_lr_scale_factor_is_the_total_batch_over_the_base(videos_per_gpu, world_size, factor):
    assert lr_scale_factor(videos_per_gpu, world_size, 256) == pytest.approx(factor)


def test_auto_scale_lr_override_scales_every_group_in_a_run(compose_train) -> None:
    cfg = compose_train(
        *SMALL,
        "optim=sgd",
        "optim/param_groups=tsm",
        "optim.auto_scale_lr.enable=true",
        "optim.auto_scale_lr.base_batch_size=16",
        "trainer.max_epochs=1",
    )
    record = RecordLR()
    trainer = fit(cfg, runs.build_module(cfg), [record])
    # 4 videos x 1 device / 16 = 0.25, on top of the TSM multipliers.
    assert record.lrs[0] == pytest.approx([0.0025, 0.0025, 0.0125, 0.025])
    assert [g["initial_lr"] for g in trainer.optimizers[0].param_groups] == record.lrs[0]


def test_auto_scale_lr_is_off_by_default_and_needs_the_batch(compose_train) -> None:
    module = runs.build_module(compose_train())
    assert module.lr_base_batch_size is None
    with pytest.raises(ValueError, match="videos_per_gpu"):
        Recognizer(module.net, optimizer=torch.optim.SGD, lr_base_batch_size=256)


# --- mixup, cutmix, label smoothing ---------------------------------------------------------


def test_mixup_is_a_convex_blend_with_the_permuted_batch() -> None:
    imgs = torch.randn(4, 2, 3, 5, 5)
    target = F.one_hot(torch.tensor([0, 1, 2, 0]), 3).float()
    perm = torch.tensor([2, 0, 3, 1])
    out, soft = mixup(imgs, target, 0.7, perm)
    torch.testing.assert_close(out, 0.7 * imgs + 0.3 * imgs[perm])
    torch.testing.assert_close(soft[1], torch.tensor([0.3, 0.7, 0.0]))
    # The callable draws lam ~ Beta(alpha, alpha) and the permutation from torch's generator.
    torch.manual_seed(3)
    out, soft = MixupBlending(alpha=0.4)(imgs, target)
    torch.manual_seed(3)
    lam = float(torch.distributions.Beta(0.4, 0.4).sample())
    expected = mixup(imgs, target, lam, torch.randperm(4))
    torch.testing.assert_close(out, expected[0])
    torch.testing.assert_close(soft, expected[1])
    torch.testing.assert_close(soft.sum(-1), torch.ones(4))


def test_cutmix_pastes_one_box_into_every_frame() -> None:
    imgs = torch.randn(3, 4, 3, 8, 10)  # (B, T, C, H, W)
    before = imgs.clone()
    target = torch.eye(3)
    perm = torch.tensor([1, 2, 0])
    out, soft = cutmix(imgs, target, (2, 1, 7, 5), perm)  # x1, y1, x2, y2: 5 x 4 of 10 x 8
    torch.testing.assert_close(imgs, before)  # the input is left alone
    torch.testing.assert_close(out[..., 1:5, 2:7], imgs[perm][..., 1:5, 2:7])
    inside = torch.zeros(8, 10, dtype=torch.bool)
    inside[1:5, 2:7] = True
    torch.testing.assert_close(out[..., ~inside], imgs[..., ~inside])
    lam = 1 - 20 / 80
    torch.testing.assert_close(soft[0], torch.tensor([lam, 1 - lam, 0.0]))


def test_cutmix_box_is_mmaction2s_rand_bbox() -> None:
    blend = CutmixBlending(alpha=1.0)
    h, w = 32, 40
    torch.manual_seed(0)
    for _ in range(20):
        state = torch.get_rng_state()
        box = blend.sample_box(h, w)
        torch.set_rng_state(state)
        # mmaction2's rand_bbox, step by step, on the same draws.
        cut_rat = torch.sqrt(1.0 - blend.beta.sample())
        cut_w, cut_h = int(w * cut_rat), int(h * cut_rat)
        cx, cy = int(torch.randint(w, (1,))[0]), int(torch.randint(h, (1,))[0])
        expected = (
            min(max(cx - cut_w // 2, 0), w),
            min(max(cy - cut_h // 2, 0), h),
            min(max(cx + cut_w // 2, 0), w),
            min(max(cy + cut_h // 2, 0), h),
        )
        assert box == expected


@pytest.mark.parametrize("option", ["mixup", "cutmix"])
def test_blending_override_trains_on_soft_targets(compose_train, option) -> None:
    cfg = compose_train(*SMALL, f"model/blending={option}", "model.blending.alpha=0.5")
    module = runs.build_module(cfg)
    assert module.blending.beta.concentration0 == 0.5
    module.eval()  # no dropout: the logits depend on the blended clips only
    batch = next(iter(synthetic_batches()))
    torch.manual_seed(0)
    logits, target = module.blended_forward(batch["imgs"], batch["label"])
    torch.manual_seed(0)
    x, expected = module.blending(
        module.normalize(batch["imgs"]), F.one_hot(batch["label"], 6).float()
    )
    torch.testing.assert_close(target, expected)
    torch.testing.assert_close(logits, module.net(x))
    # The step's loss is cross-entropy on the soft targets; train/top1 counts the dominant class.
    module.log = lambda *args, **kwargs: None
    torch.manual_seed(0)
    loss = module.training_step(batch, 0)
    torch.testing.assert_close(loss, F.cross_entropy(logits, target))
    dominant = (logits.argmax(-1) == target.argmax(-1)).float().mean()
    torch.testing.assert_close(module.train_acc.compute(), dominant)


def test_label_smoothing_override(compose_train) -> None:
    cfg = compose_train("model.loss={_target_:torch.nn.CrossEntropyLoss,label_smoothing:0.1}")
    module = runs.build_module(cfg)
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5, 0.0, 0.0]])
    logp = logits.log_softmax(-1)
    # (1 - eps) * NLL of the label + eps * the mean NLL over the K classes.
    expected = 0.9 * -logp[0, 0] + 0.1 * -logp[0].mean()
    torch.testing.assert_close(module.loss_fn(logits, torch.tensor([0])), expected)


# --- precision, channels_last, compile, SyncBatchNorm ---------------------------------------


def test_bf16_mixed_override_runs_the_network_in_bfloat16(compose_train) -> None:
    cfg = compose_train(*SMALL, "trainer.precision=bf16-mixed", "trainer.max_epochs=1")
    module = runs.build_module(cfg)
    dtypes = []
    module.net.head.fc_cls.register_forward_hook(lambda m, a, out: dtypes.append(out.dtype))
    trainer = fit(cfg, module)
    assert set(dtypes) == {torch.bfloat16}
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))


@pytest.mark.gpu
def test_fp16_mixed_override_runs_the_network_in_float16_on_a_gpu(compose_train) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    cfg = compose_train(*SMALL, "trainer=gpu", "trainer.precision=16-mixed", "trainer.max_epochs=1")
    module = runs.build_module(cfg)
    dtypes = []
    module.net.head.fc_cls.register_forward_hook(lambda m, a, out: dtypes.append(out.dtype))
    trainer = fit(cfg, module)
    assert set(dtypes) == {torch.float16}
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))


def test_fp16_mixed_on_cpu_falls_back_to_bf16_with_a_warning(compose_train) -> None:
    cfg = compose_train("trainer=cpu", "trainer.precision=16-mixed")
    with pytest.warns(UserWarning, match="fp16 is not supported on CPU"):
        trainer = instantiate(cfg.trainer, logger=False)
    assert trainer.precision == "bf16-mixed"


def test_channels_last_override_lays_out_weights_and_inputs(compose_train) -> None:
    cfg = compose_train("model.channels_last=true", "model.to_bgr=true")
    module = runs.build_module(cfg)
    plain = runs.build_module(compose_train("model.to_bgr=true"))
    plain.load_state_dict(module.state_dict())
    conv = module.net.backbone.features[0]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    seen = []
    module.net.backbone.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    imgs = torch.randint(0, 256, (2, 3, 3, 16, 16), dtype=torch.uint8)
    module.eval()
    plain.eval()
    logits = module(imgs)
    assert seen[0].shape == (6, 3, 16, 16)  # (B*T, C, H, W)
    assert seen[0].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(logits, plain(imgs), atol=1e-5, rtol=1e-5)


def test_compile_override_compiles_the_net_and_keeps_checkpoint_keys(
    compose_train, monkeypatch, tmp_path
) -> None:
    calls = []

    def fake_compile(fn, **kwargs):  # what nn.Module.compile hands to torch.compile
        calls.append(kwargs)
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    cfg = compose_train(*SMALL, "model.compile={dynamic:false}", "trainer.max_epochs=1")
    module = runs.build_module(cfg)
    keys = list(module.state_dict())
    assert calls == []  # not at construction: export and predict use the eager network
    fit(cfg, module)  # the trainer's configure_model compiles
    module.configure_model()  # a second setup (e.g. test after fit) compiles nothing more
    assert calls == [{"dynamic": False}]
    assert list(module.state_dict()) == keys
    torch.save(module.state_dict(), tmp_path / "compiled.pt")
    eager = runs.build_module(compose_train())
    eager.load_state_dict(torch.load(tmp_path / "compiled.pt", weights_only=True))  # strict
    with pytest.raises(ValueError, match="compile='yes'"):
        Recognizer(eager.net, optimizer=torch.optim.SGD, compile="yes")


@pytest.mark.slow
def test_compiled_net_gives_the_eager_logits(compose_train) -> None:
    module = runs.build_module(compose_train("model.compile=true", "model.channels_last=true"))
    module.eval()
    imgs = torch.randint(0, 256, (2, 3, 3, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        eager = module(imgs)
        module.configure_model()
        compiled = module(imgs)
    assert module.net._compiled_call_impl is not None
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-4)
    assert all(not k.startswith("net._orig_mod") for k in module.state_dict())


def test_sync_batchnorm_on_cpu_processes_stops_with_the_setting_to_change(compose_train) -> None:
    cfg = compose_train("trainer=ddp_cpu", "trainer.sync_batchnorm=true")
    trainer = instantiate(cfg.trainer, logger=False)  # builds, launches nothing
    with pytest.raises(ValueError, match=r"set trainer\.sync_batchnorm=false"):
        runs.check_trainer(cfg, trainer)
    # One process needs no sync: Lightning leaves BatchNorm as it is.
    single = compose_train("trainer=cpu", "trainer.sync_batchnorm=true")
    runs.check_trainer(single, instantiate(single.trainer, logger=False))


def test_sync_batchnorm_makes_ddp_convert_every_batchnorm(compose_train) -> None:
    # What the strategy does to the model before wrapping it (on GPUs it then syncs them).
    cfg = compose_train("model=tsn_r18", "model.net.backbone.pretrained=null", "data.num_classes=6")
    module = runs.build_module(cfg)
    batchnorms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in module.modules())
    assert batchnorms > 0
    plain = compose_train("trainer=ddp_cpu")
    assert instantiate(plain.trainer, logger=False).strategy._layer_sync is None
    synced = compose_train("trainer=ddp_cpu", "trainer.sync_batchnorm=true")
    strategy = instantiate(synced.trainer, logger=False).strategy
    converted = strategy._layer_sync.apply(module)
    assert sum(isinstance(m, torch.nn.SyncBatchNorm) for m in converted.modules()) == batchnorms


@pytest.mark.slow  # 20 s: the literal command
def test_sync_batchnorm_under_ddp_cpu_names_the_fix(toy_root, tmp_path) -> None:
    from tests.test_train import run_script

    result = run_script(
        [
            "src/train.py",
            *toy_overrides(toy_root),
            "trainer=ddp_cpu",
            "trainer.sync_batchnorm=true",
            f"paths.log_dir={tmp_path}",
        ]
    )
    assert result.returncode != 0
    assert "trainer.sync_batchnorm=false" in result.stderr
    assert "Traceback" not in result.stderr


# --- SLURM -----------------------------------------------------------------------------------


def test_slurm_launcher_takes_its_shape_from_the_trainer(monkeypatch) -> None:
    monkeypatch.setenv("SBATCH_PARTITION", "gpu-long")
    overrides = ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=8", "trainer.num_nodes=2"]
    GlobalHydra.instance().clear()
    os.environ.setdefault("PROJECT_ROOT", str(CONF_DIR.parent))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["nodes"] == 2
    assert launcher["gpus_per_node"] == launcher["tasks_per_node"] == 8  # a task per GPU
    assert launcher["partition"] == "gpu-long"
    assert cfg.trainer.num_nodes == 2
    slurm = instantiate(cfg.hydra.launcher)  # the launcher itself; nothing is submitted
    assert type(slurm).__name__ == "RequeueingSlurmLauncher"  # requeued jobs resume
    assert type(slurm).__mro__[1].__name__ == "SlurmLauncher"
    # Hydra builds launchers from the plugins it discovers, not from any import path.
    from hydra.core.plugins import Plugins

    assert cfg.hydra.launcher._target_ in Plugins.instance().class_name_to_class
    assert slurm.params["nodes"] == 2 and slurm.params["tasks_per_node"] == 8


# --- every nested option composes --------------------------------------------------------------


SMALL_VIT = [
    "model=videomae_vit_b16",
    "model.net.backbone.embed_dims=32",
    "model.net.backbone.depth=2",
    "model.net.backbone.num_heads=2",
    "model.net.head.in_channels=32",
]


def nested_options() -> list[str]:
    return sorted(
        p.relative_to(CONF_DIR).with_suffix("").as_posix()
        for p in CONF_DIR.glob("*/*/*.yaml")
        if p.parts[-3] in ("optim", "model")
    )


@pytest.mark.parametrize("option", nested_options())
def test_every_nested_option_composes_and_builds(compose_train, option) -> None:
    group, name = option.rsplit("/", 1)
    # Layer-wise decay numbers a transformer's blocks: the ViT, at a small width and depth.
    needs = {"optim/param_groups/layer_decay": SMALL_VIT}.get(option, [])
    cfg = compose_train("optim=sgd", f"{group}={name}", *needs)
    module = runs.build_module(cfg)
    (optimizer,), _ = module.configure_optimizers()
    assert optimizer.param_groups


def test_random_blending_applies_one_blending_per_batch() -> None:
    from actionrec.blending import RandomBlending

    calls = []

    def recorder(name: str):
        return lambda imgs, target: (calls.append(name), (imgs, target))[1]

    imgs, target = torch.rand(2, 3, 8, 8), torch.eye(2)
    torch.manual_seed(0)
    for probs, expected in (([0, 1], {"cutmix"}), (None, {"mixup", "cutmix"})):
        calls.clear()
        blending = RandomBlending([recorder("mixup"), recorder("cutmix")], probs)
        for _ in range(50):
            out, _ = blending(imgs, target)
        assert len(calls) == 50 and set(calls) == expected and out is imgs
    with pytest.raises(ValueError, match="probs"):
        RandomBlending([MixupBlending()], probs=[0.5, 0.5])

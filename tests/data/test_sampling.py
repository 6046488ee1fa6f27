"""SampleFrames / DenseSampleFrames against a literal re-derivation of mmaction2's algorithm."""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from actionrec.data.sampling import DenseSampleFrames, SampleFrames


# --- reference: mmaction2 1.x SampleFrames / DenseSampleFrames, float arithmetic kept to the end
def _ref_offsets_test(n, clip_len, fi, nc, twice):
    if clip_len == 1:
        avg = n / float(nc)
        base = np.arange(nc) * avg
        offs = base + avg / 2.0
        return np.concatenate([offs, base]) if twice else offs
    max_offset = max(n - ((clip_len - 1) * fi + 1), 0)
    k = nc * 2 if twice else nc
    if k > 1:
        return np.round(np.arange(k) * (max_offset / float(nc - 1)))
    return np.array([max_offset // 2])


def _ref_offsets_train(n, clip_len, fi, nc, keep_tail, rng):
    ori = clip_len * fi
    if keep_tail:
        avg = (n - ori + 1) / float(nc)
        if n > ori - 1:
            return (np.arange(nc) * avg + rng.uniform(0, avg, nc)).astype(np.int32)
        return np.zeros((nc,), dtype=np.int32)
    avg = (n - ori + 1) // nc
    if avg > 0:
        return np.arange(nc) * avg + rng.integers(avg, size=nc)
    if n > max(nc, ori):
        return np.sort(rng.integers(n - ori + 1, size=nc))
    if avg == 0:
        return np.around(np.arange(nc) * ((n - ori + 1.0) / nc))
    return np.zeros((nc,), dtype=np.int32)


def _ref_finish(offs, n, clip_len, fi, oob, start, jitter_rng=None):
    inds = np.concatenate(offs[:, None] + np.arange(clip_len)[None, :] * fi)
    if jitter_rng is not None:
        inds = inds + jitter_rng.integers(fi, size=len(inds))
    inds = inds.reshape((-1, clip_len))
    if oob == "loop":
        inds = np.mod(inds, n)
    else:
        safe = inds < n
        unsafe = 1 - safe
        last = np.max(safe * inds, axis=1)
        inds = safe * inds + (unsafe.T * last).T
    return (np.concatenate(inds) + start).astype(np.int32)


def _ref_dense(n, clip_len, fi, nc, rng_range, positions, test, oob, start, rng=None):
    sample_pos = max(1, 1 + n - rng_range)
    interval = rng_range // nc
    base = np.arange(nc) * interval
    if test:
        starts = np.linspace(0, sample_pos - 1, num=positions, dtype=int)
        offs = np.array([o for s in starts for o in (base + s) % n])
    else:
        s = 0 if sample_pos == 1 else rng.integers(0, sample_pos - 1)
        offs = (base + s) % n
    return _ref_finish(offs, n, clip_len, fi, oob, start)


TOTALS = (1, 2, 3, 5, 7, 8, 16, 31, 64, 100, 301)
GRID = list(
    itertools.product((1, 2, 8), (1, 2, 4), (1, 3, 8), (False, True), ("loop", "repeat_last"))
)


# mmaction2 divides by zero for twice_sample with clip_len > 1 and one clip (rejected, see below).
TEST_GRID = [g for g in GRID if not (g[3] and g[0] > 1 and g[2] == 1)]


@pytest.mark.parametrize("clip_len,fi,nc,twice,oob", TEST_GRID)
def test_test_mode_equals_mmaction2(clip_len, fi, nc, twice, oob):
    for keep_tail in (False, True):
        sampler = SampleFrames(
            clip_len,
            fi,
            nc,
            twice_sample=twice,
            out_of_bound_opt=oob,
            test_mode=True,
            keep_tail_frames=keep_tail,
        )
        for n, start in itertools.product(TOTALS, (0, 1)):
            expected = _ref_finish(
                _ref_offsets_test(n, clip_len, fi, nc, twice), n, clip_len, fi, oob, start
            )
            got = sampler(n, start_index=start)
            assert got.dtype == np.int64 and got.shape == (sampler.num_frames,)
            np.testing.assert_array_equal(got, expected, err_msg=f"n={n} start={start}")


@pytest.mark.parametrize(
    "clip_len,fi,nc,keep_tail,oob",
    [(c, f, k, t, o) for c, f, k, _, o in GRID for t in (False, True)],
)
def test_train_mode_follows_mmaction2_draws(clip_len, fi, nc, keep_tail, oob):
    sampler = SampleFrames(clip_len, fi, nc, out_of_bound_opt=oob, keep_tail_frames=keep_tail)
    for n, seed in itertools.product(TOTALS, range(3)):
        ref_rng = np.random.default_rng(seed)
        offs = _ref_offsets_train(n, clip_len, fi, nc, keep_tail, ref_rng)
        expected = _ref_finish(offs, n, clip_len, fi, oob, 1)
        got = sampler(n, start_index=1, rng=np.random.default_rng(seed))
        np.testing.assert_array_equal(got, expected, err_msg=f"n={n}")
        assert got.min() >= 1 and got.max() <= n


def test_temporal_jitter_matches_reference_and_stays_in_range():
    sampler = SampleFrames(4, frame_interval=3, num_clips=2, temporal_jitter=True, test_mode=True)
    for n in (5, 40, 200):
        got = sampler(n, rng=np.random.default_rng(7))
        offs = _ref_offsets_test(n, 4, 3, 2, False)
        expected = _ref_finish(offs, n, 4, 3, "loop", 0, jitter_rng=np.random.default_rng(7))
        np.testing.assert_array_equal(got, expected)


def test_tsn_train_segments_are_uniform():
    # 1x1x3 on 30 frames: segment k is frames [10k, 10k+10), each equally likely.
    sampler = SampleFrames(clip_len=1, num_clips=3)
    rng = np.random.default_rng(0)
    draws = np.stack([sampler(30, rng=rng) for _ in range(6000)])  # (6000, 3)
    for k in range(3):
        counts = np.bincount(draws[:, k] - 10 * k, minlength=10)
        assert counts.size == 10, f"segment {k} left its range"
        expected = len(draws) / 10
        chi2 = ((counts - expected) ** 2 / expected).sum()
        assert chi2 < 30, f"segment {k} not uniform: {counts}"  # df=9, p~4e-4


def test_train_mode_is_reproducible_and_random():
    sampler = SampleFrames(clip_len=1, num_clips=8)
    a = sampler(300, rng=np.random.default_rng(3))
    b = sampler(300, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(3)
    assert len({tuple(sampler(300, rng=rng)) for _ in range(20)}) > 1


def test_test_mode_is_deterministic_and_ignores_rng():
    sampler = SampleFrames(clip_len=1, num_clips=25, test_mode=True)
    a = sampler(250, rng=np.random.default_rng(0))
    b = sampler(250, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, np.arange(25) * 10 + 5)


def test_twice_sample_doubles_output():
    sampler = SampleFrames(clip_len=1, num_clips=4, twice_sample=True, test_mode=True)
    assert sampler.num_frames == 8
    np.testing.assert_array_equal(sampler(40), [5, 15, 25, 35, 0, 10, 20, 30])
    assert SampleFrames(clip_len=1, num_clips=4, twice_sample=True).num_frames == 4


def test_short_video_repeat_last_repeats_last_frame():
    sampler = SampleFrames(
        clip_len=8, frame_interval=2, test_mode=True, out_of_bound_opt="repeat_last"
    )
    np.testing.assert_array_equal(sampler(5, start_index=1), [1, 3, 5, 5, 5, 5, 5, 5])
    looped = SampleFrames(clip_len=8, frame_interval=2, test_mode=True)(5)
    np.testing.assert_array_equal(looped, [0, 2, 4, 1, 3, 0, 2, 4])


@pytest.mark.parametrize("test_mode", [False, True])
@pytest.mark.parametrize("clip_len,fi,nc", [(1, 1, 1), (4, 2, 2), (8, 1, 4), (2, 4, 8)])
def test_dense_equals_mmaction2(test_mode, clip_len, fi, nc):
    sampler = DenseSampleFrames(
        clip_len, fi, nc, sample_range=32, num_sample_positions=5, test_mode=test_mode
    )
    for n, seed in itertools.product(TOTALS, range(3)):
        expected = _ref_dense(
            n, clip_len, fi, nc, 32, 5, test_mode, "loop", 0, np.random.default_rng(seed)
        )
        got = sampler(n, rng=np.random.default_rng(seed))
        assert got.shape == (sampler.num_frames,)
        np.testing.assert_array_equal(got, expected, err_msg=f"n={n}")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"clip_len": 0},
        {"clip_len": 1.5},
        {"clip_len": 1, "frame_interval": 0},
        {"clip_len": 1, "num_clips": -1},
        {"clip_len": 1, "out_of_bound_opt": "clamp"},
        {"clip_len": 4, "num_clips": 1, "twice_sample": True, "test_mode": True},
    ],
)
def test_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=[k for k in kwargs if k != "test_mode"][-1]):
        SampleFrames(**kwargs)


def test_rejects_bad_call():
    with pytest.raises(ValueError, match="total_frames"):
        SampleFrames(clip_len=1, test_mode=True)(0)
    with pytest.raises(ValueError, match="twice_sample"):
        DenseSampleFrames(clip_len=1, twice_sample=True)


# --- target_fps (mmaction2 1.x, X3D): tests/fixtures/mmaction2/target_fps_frames.json holds
# mmaction2's own frame_inds, written by scripts/mmaction2_target_fps_frames.py.
TARGET_FPS_CASES = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "mmaction2" / "target_fps_frames.json").read_text()
)["cases"]


@pytest.mark.filterwarnings("ignore:SampleFrames\\(target_fps")  # the cases without a frame rate
def test_target_fps_test_mode_equals_mmaction2_fixture():
    for case in TARGET_FPS_CASES:
        args = {k: case[k] for k in ("clip_len", "frame_interval", "num_clips", "target_fps")}
        extra = {k: case[k] for k in ("twice_sample", "out_of_bound_opt")}
        sampler = SampleFrames(**args, **extra, test_mode=True)
        got = sampler(case["total_frames"], fps=case["fps"])
        assert got.shape == (sampler.num_frames,)
        np.testing.assert_array_equal(got, case["frame_inds"], err_msg=str(case))


def _ref_target_fps_train(n, clip_len, fi, nc, fps, target, keep_tail, rng):
    """mmaction2's train offsets and frame_inds with target_fps, its float span kept."""
    ori = max(1, clip_len * fi * fps / target)
    if keep_tail:
        avg = (n - ori + 1) / float(nc)
        offs = np.arange(nc) * avg + rng.uniform(0, avg, nc) if n > ori - 1 else np.zeros(nc)
    else:
        avg = (n - ori + 1) // nc
        if avg > 0:
            offs = np.arange(nc) * avg + rng.integers(int(avg), size=nc)
        elif n > max(nc, ori):
            offs = np.sort(rng.integers(int(n - ori + 1), size=nc))
        elif avg == 0:
            offs = np.around(np.arange(nc) * ((n - ori + 1.0) / nc))
        else:
            offs = np.zeros(nc)
    inds = offs[:, None] + np.linspace(0, ori - 1, clip_len).astype(np.int32)
    return np.mod(inds, n).reshape(-1).astype(np.int32)


@pytest.mark.parametrize("keep_tail", [False, True])
@pytest.mark.parametrize("clip_len,fi,nc", [(16, 5, 1), (13, 6, 2), (1, 1, 8), (4, 4, 3)])
def test_target_fps_train_mode_follows_mmaction2_draws(keep_tail, clip_len, fi, nc):
    for fps, n, seed in itertools.product((15.0, 29.97, 60.0), TOTALS, range(3)):
        sampler = SampleFrames(clip_len, fi, nc, keep_tail_frames=keep_tail, target_fps=30)
        got = sampler(n, rng=np.random.default_rng(seed), fps=fps)
        expected = _ref_target_fps_train(
            n, clip_len, fi, nc, fps, 30, keep_tail, np.random.default_rng(seed)
        )
        np.testing.assert_array_equal(got, expected, err_msg=f"fps={fps} n={n}")


def test_target_fps_spans_the_same_seconds_whatever_the_frame_rate():
    sampler = SampleFrames(clip_len=16, frame_interval=5, target_fps=30, test_mode=True)
    for fps in (15, 30, 60):
        inds = sampler(3000, fps=fps)
        assert (inds[-1] - inds[0]) / fps == pytest.approx(79 / 30, rel=0.03)  # 2.6 s


def test_target_fps_without_a_frame_rate_warns_and_samples_as_mmaction2():
    sampler = SampleFrames(clip_len=4, frame_interval=16, target_fps=30, test_mode=True)
    with pytest.warns(UserWarning, match="no frame rate"):
        inds = sampler(300, fps=None)
    np.testing.assert_array_equal(inds, 118 + np.array([0, 21, 42, 63]))  # linspace(0, 63, 4)


@pytest.mark.parametrize("bad", [0, -30, True, "30"])
def test_target_fps_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="target_fps"):
        SampleFrames(clip_len=4, target_fps=bad)
    with pytest.raises(ValueError, match="target_fps"):
        DenseSampleFrames(clip_len=4, target_fps=30)

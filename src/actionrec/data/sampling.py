"""Temporal sampling: which frame indices of a video a clip is built from.

The samplers return exactly the ``frame_inds`` of mmaction2 (1.x) for the same arguments: clip
offsets first (one per clip), then ``clip_len`` frames ``frame_interval`` apart from each offset,
then out-of-bound handling, then ``start_index``. Train mode draws the offsets at random from the
same distribution as mmaction2, but from the ``numpy.random.Generator`` it is given, so a worker
seeded once gives reproducible clips.
"""

from __future__ import annotations

import warnings

import numpy as np

OUT_OF_BOUND_OPTS = ("loop", "repeat_last")


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


class SampleFrames:
    """Segment-based frame sampler (TSN's sparse sampling; clips for 3D models).

    Args:
        clip_len: Frames per clip.
        frame_interval: Step between consecutive frames of a clip.
        num_clips: Clips (TSN: segments) per video.
        temporal_jitter: Add a random ``[0, frame_interval)`` shift to every frame index.
        twice_sample: In test mode, also sample the clips without the half-segment shift
            (TSM-style), doubling the number of clips.
        out_of_bound_opt: ``"loop"`` wraps indices past the end modulo ``total_frames``;
            ``"repeat_last"`` repeats the clip's last valid index.
        test_mode: Deterministic, evenly spread clips instead of random ones.
        keep_tail_frames: In train mode, spread clips over the whole video with float segment
            boundaries so the tail frames can be drawn too.
        target_fps: Sample every video as if it ran at this frame rate (mmaction2 1.x, X3D's
            recipe): a clip then spans ``clip_len * frame_interval * fps / target_fps`` frames
            of a video whose frame rate is ``fps``, its ``clip_len`` frames spread evenly over
            that span. The call's ``fps`` gives the video's rate; without one (frame folders)
            the span is ``clip_len * frame_interval``, as in mmaction2. None: no adjustment.

    Calling it returns a 1-D int64 array of ``num_frames`` indices, clip-major:
    ``(num_clips_out * clip_len,)`` where consecutive ``clip_len`` entries form one clip.
    """

    def __init__(
        self,
        clip_len: int,
        frame_interval: int = 1,
        num_clips: int = 1,
        temporal_jitter: bool = False,
        twice_sample: bool = False,
        out_of_bound_opt: str = "loop",
        test_mode: bool = False,
        keep_tail_frames: bool = False,
        target_fps: float | None = None,
    ) -> None:
        _check_positive_int("clip_len", clip_len)
        _check_positive_int("frame_interval", frame_interval)
        _check_positive_int("num_clips", num_clips)
        if out_of_bound_opt not in OUT_OF_BOUND_OPTS:
            raise ValueError(
                f"out_of_bound_opt must be one of {OUT_OF_BOUND_OPTS}, got {out_of_bound_opt!r}"
            )
        if twice_sample and test_mode and clip_len > 1 and num_clips == 1:
            # mmaction2 divides by (num_clips - 1) here and crashes; say so up front.
            raise ValueError(
                "twice_sample=True with clip_len > 1 needs num_clips >= 2 in test mode, "
                f"got num_clips={num_clips}"
            )
        self.clip_len = int(clip_len)
        self.frame_interval = int(frame_interval)
        self.num_clips = int(num_clips)
        self.temporal_jitter = bool(temporal_jitter)
        self.twice_sample = bool(twice_sample)
        self.out_of_bound_opt = out_of_bound_opt
        self.test_mode = bool(test_mode)
        self.keep_tail_frames = bool(keep_tail_frames)
        if target_fps is not None and (
            isinstance(target_fps, bool)
            or not isinstance(target_fps, int | float | np.number)
            or not target_fps > 0
        ):
            raise ValueError(f"target_fps must be a number > 0 or None, got {target_fps!r}")
        self.target_fps = None if target_fps is None else float(target_fps)

    @property
    def num_output_clips(self) -> int:
        """Clips one call returns (twice ``num_clips`` with ``twice_sample`` in test mode)."""
        doubled = self.test_mode and self.twice_sample
        return self.num_clips * (2 if doubled else 1)

    @property
    def num_frames(self) -> int:
        """Length of the index array one call returns."""
        return self.num_output_clips * self.clip_len

    def __call__(
        self,
        total_frames: int,
        start_index: int = 0,
        rng: np.random.Generator | None = None,
        fps: float | None = None,
    ) -> np.ndarray:
        """Sample frame indices for a video of ``total_frames`` frames.

        Args:
            total_frames: Frames in the video (>= 1).
            start_index: Index of the first frame (1 for rawframes named from 1, else 0).
            rng: Source of randomness for train mode and temporal jitter; a fresh
                ``numpy.random.default_rng()`` when None. Unused in test mode without jitter.
            fps: The video's average frame rate (mmaction2's ``avg_fps``); only ``target_fps``
                uses it. None or 0: unknown (frame folders).

        Returns:
            int64 array of shape ``(num_frames,)`` with values in
            ``[start_index, start_index + total_frames)``.
        """
        _check_positive_int("total_frames", total_frames)
        if isinstance(start_index, bool) or not isinstance(start_index, int | np.integer):
            raise ValueError(f"start_index must be an int, got {start_index!r}")
        needs_rng = self.temporal_jitter or not self.test_mode
        if rng is None and needs_rng:
            rng = np.random.default_rng()
        span = self.clip_span(fps)
        if self.test_mode:
            offsets = self._test_offsets(int(total_frames), span)
        else:
            offsets = self._train_offsets(int(total_frames), span, rng)
        # mmaction2 keeps float offsets until the final int cast; all values are >= 0, so
        # flooring now gives the same indices through the modulo and repeat_last steps.
        if offsets.dtype.kind != "i":
            offsets = np.floor(offsets).astype(np.int64)
        if self.clip_len == 1:
            inds = offsets.reshape(-1, 1)  # (num_output_clips, 1): TSN, no steps to add
        else:
            inds = offsets[:, None] + self._steps(span)[None, :]  # (num_output_clips, clip_len)
        if self.temporal_jitter:
            inds = inds + self._jitter(inds.shape, rng)
        inds = self._handle_out_of_bound(inds, int(total_frames))
        return inds.reshape(-1) + int(start_index)  # (num_output_clips * clip_len,)

    def clip_span(self, fps: float | None = None) -> float:
        """Frames one clip covers in a video of frame rate ``fps`` (mmaction2's ``ori_clip_len``).

        With ``target_fps`` it is scaled by ``fps / target_fps`` (1 when ``fps`` is unknown)
        and may be fractional; without, it depends on the mode only, as in mmaction2.
        """
        if self.target_fps is not None:
            if not fps:
                warnings.warn(
                    f"{type(self).__name__}(target_fps={self.target_fps:g}) got no frame rate "
                    "(frame folders have none): sampling as if the video ran at "
                    f"{self.target_fps:g} fps, as mmaction2 does without avg_fps. Use videos "
                    "(data.dataset_type=video) for target_fps to follow each video's rate.",
                    stacklevel=3,
                )
            ratio = fps / self.target_fps if fps else 1.0
            return max(1.0, self.clip_len * self.frame_interval * ratio)
        if self.test_mode:
            return (self.clip_len - 1) * self.frame_interval + 1
        return self.clip_len * self.frame_interval

    def _steps(self, span: float) -> np.ndarray:
        """Each clip frame's distance from the clip's offset, ``(clip_len,)`` int64."""
        if self.target_fps is not None:
            # mmaction2 truncates the even spread over the scaled span (astype(np.int32)).
            return np.linspace(0, span - 1, self.clip_len).astype(np.int64)
        return np.arange(self.clip_len, dtype=np.int64) * self.frame_interval

    def _jitter(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return rng.integers(self.frame_interval, size=shape)

    def _handle_out_of_bound(self, inds: np.ndarray, total_frames: int) -> np.ndarray:
        if inds.size == 0 or inds.max() < total_frames:
            return inds  # nothing out of bounds (train sampling of a long enough video)
        if self.out_of_bound_opt == "loop":
            return np.mod(inds, total_frames)
        inside = inds < total_frames
        # The largest in-range index of each clip (0 when none is in range, as in mmaction2).
        last = np.max(np.where(inside, inds, 0), axis=1, keepdims=True)
        return np.where(inside, inds, last)

    def _test_offsets(self, total_frames: int, span: float) -> np.ndarray:
        """Clip start offsets in test mode (deterministic, possibly fractional)."""
        if self.clip_len == 1:
            # 2D models: the centre of each of num_clips equal segments (frame_interval unused).
            segment = total_frames / self.num_clips
            starts = np.arange(self.num_clips) * segment
            offsets = starts + segment / 2.0
            if self.twice_sample:
                offsets = np.concatenate([offsets, starts])
            return offsets
        max_offset = max(total_frames - span, 0)
        if self.num_output_clips == 1:
            return np.array([max_offset // 2])
        # PySlowFast-style even spread; with twice_sample the extra clips run past max_offset
        # (the divisor stays num_clips - 1) and are brought back by out_of_bound_opt.
        step = max_offset / float(self.num_clips - 1)
        if self.target_fps is not None:
            return np.arange(self.num_output_clips) * np.floor(step)  # mmaction2: floor here
        return np.round(np.arange(self.num_output_clips) * step)

    def _train_offsets(
        self, total_frames: int, span: float, rng: np.random.Generator
    ) -> np.ndarray:
        """Random clip start offsets in train mode: one per segment."""
        if self.keep_tail_frames:
            return self._tail_keeping_offsets(total_frames, span, rng)
        free = total_frames - span + 1  # fractional with target_fps
        segment = free // self.num_clips
        if segment > 0:
            starts = np.arange(self.num_clips) * segment
            return starts + rng.integers(int(segment), size=self.num_clips)
        if total_frames > max(self.num_clips, span):
            # Fewer free positions than clips: sorted draws, repeats allowed. int() truncates
            # a fractional bound as mmaction2's np.random.randint does.
            return np.sort(rng.integers(int(free), size=self.num_clips))
        if segment == 0:
            return np.around(np.arange(self.num_clips) * ((free + 0.0) / self.num_clips))
        return np.zeros(self.num_clips, dtype=np.int64)

    def _tail_keeping_offsets(
        self, total_frames: int, span: float, rng: np.random.Generator
    ) -> np.ndarray:
        if total_frames <= span - 1:
            return np.zeros(self.num_clips, dtype=np.int64)
        segment = (total_frames - span + 1) / float(self.num_clips)
        starts = np.arange(self.num_clips) * segment
        return starts + rng.uniform(0, segment, self.num_clips)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(clip_len={self.clip_len}, "
            f"frame_interval={self.frame_interval}, num_clips={self.num_clips}, "
            f"temporal_jitter={self.temporal_jitter}, twice_sample={self.twice_sample}, "
            f"out_of_bound_opt={self.out_of_bound_opt!r}, test_mode={self.test_mode}, "
            f"keep_tail_frames={self.keep_tail_frames}, target_fps={self.target_fps})"
        )


class DenseSampleFrames(SampleFrames):
    """Dense sampler: ``num_clips`` clips inside one window of ``sample_range`` frames.

    Args:
        clip_len: Frames per clip.
        frame_interval: Step between consecutive frames of a clip.
        num_clips: Clips per window; their starts are ``sample_range // num_clips`` apart.
        sample_range: Frames the window covers.
        num_sample_positions: Test mode only: evenly spaced window starts, each giving
            ``num_clips`` clips, so a call returns ``num_sample_positions * num_clips`` clips.
        temporal_jitter: As in :class:`SampleFrames`.
        twice_sample: Not used by dense sampling; must be False.
        out_of_bound_opt: As in :class:`SampleFrames`.
        test_mode: Evenly spaced windows instead of one random window.
        keep_tail_frames: Not used by dense sampling; must be False.
        target_fps: Not used by dense sampling (mmaction2's ignores it); must be None.
    """

    def __init__(
        self,
        clip_len: int,
        frame_interval: int = 1,
        num_clips: int = 1,
        sample_range: int = 64,
        num_sample_positions: int = 10,
        temporal_jitter: bool = False,
        twice_sample: bool = False,
        out_of_bound_opt: str = "loop",
        test_mode: bool = False,
        keep_tail_frames: bool = False,
        target_fps: float | None = None,
    ) -> None:
        unused = {"twice_sample": twice_sample, "keep_tail_frames": keep_tail_frames}
        for name, value in (*unused.items(), ("target_fps", target_fps)):
            if value:
                raise ValueError(f"{name} is not used by DenseSampleFrames; got {value!r}")
        super().__init__(
            clip_len=clip_len,
            frame_interval=frame_interval,
            num_clips=num_clips,
            temporal_jitter=temporal_jitter,
            out_of_bound_opt=out_of_bound_opt,
            test_mode=test_mode,
        )
        _check_positive_int("sample_range", sample_range)
        _check_positive_int("num_sample_positions", num_sample_positions)
        self.sample_range = int(sample_range)
        self.num_sample_positions = int(num_sample_positions)

    @property
    def num_output_clips(self) -> int:
        """Clips one call returns."""
        return self.num_clips * (self.num_sample_positions if self.test_mode else 1)

    def _window_positions(self, total_frames: int) -> int:
        return max(1, 1 + total_frames - self.sample_range)

    def _clip_starts(self, window_start: int, total_frames: int) -> np.ndarray:
        interval = self.sample_range // self.num_clips
        return (np.arange(self.num_clips) * interval + window_start) % total_frames

    def _test_offsets(self, total_frames: int, span: float) -> np.ndarray:
        last = self._window_positions(total_frames) - 1
        window_starts = np.linspace(0, last, num=self.num_sample_positions, dtype=int)
        return np.concatenate([self._clip_starts(s, total_frames) for s in window_starts])

    def _train_offsets(
        self, total_frames: int, span: float, rng: np.random.Generator
    ) -> np.ndarray:
        positions = self._window_positions(total_frames)
        # mmaction2 draws from [0, positions - 1), never the last window start.
        window_start = 0 if positions == 1 else int(rng.integers(0, positions - 1))
        return self._clip_starts(window_start, total_frames)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(clip_len={self.clip_len}, "
            f"frame_interval={self.frame_interval}, num_clips={self.num_clips}, "
            f"sample_range={self.sample_range}, "
            f"num_sample_positions={self.num_sample_positions}, "
            f"temporal_jitter={self.temporal_jitter}, "
            f"out_of_bound_opt={self.out_of_bound_opt!r}, test_mode={self.test_mode})"
        )

"""Write mmaction2 1.x's test-mode ``SampleFrames`` frame indices with ``target_fps`` to
``tests/fixtures/mmaction2/target_fps_frames.json``, for tests/data/test_sampling.py.

Each case is a video (``total_frames``, ``avg_fps``: None for frame folders, which carry none)
and the sampler's arguments; X3D's recipes (16x5x10 and 13x6x10 at 30 fps) come first. Run with
the throwaway mmaction2 environment (``make bench-env``), never needed by CI:
    .bench/mmaction2-venv/bin/python scripts/mmaction2_target_fps_frames.py
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from mmaction.datasets.transforms.loading import SampleFrames

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "mmaction2"
OUT = OUT / "target_fps_frames.json"

# (clip_len, frame_interval, num_clips, target_fps, twice_sample, out_of_bound_opt)
SAMPLERS = [
    (16, 5, 10, 30, False, "loop"),  # x3d_m_16x5x1_facebook-kinetics400-rgb
    (13, 6, 10, 30, False, "loop"),  # x3d_s_13x6x1_facebook-kinetics400-rgb
    (16, 5, 1, 30, False, "loop"),
    (8, 8, 3, 15, False, "repeat_last"),
    (4, 16, 2, 30, True, "loop"),
    (1, 1, 8, 30, False, "loop"),  # 2-D segments: the span does not enter test mode
    (2, 1, 4, 24, False, "repeat_last"),
]
TOTALS = (1, 7, 50, 81, 300, 1001)
FPS = (None, 12.5, 24.0, 25.0, 29.97002997002997, 30.0, 60.0)


def main() -> None:
    cases = []
    for (clip_len, fi, nc, target, twice, oob), total, fps in itertools.product(
        SAMPLERS, TOTALS, FPS
    ):
        sampler = SampleFrames(
            clip_len,
            frame_interval=fi,
            num_clips=nc,
            target_fps=target,
            twice_sample=twice,
            out_of_bound_opt=oob,
            test_mode=True,
        )
        results = {"total_frames": total, "start_index": 0}
        if fps is not None:
            results["avg_fps"] = fps  # what DecordInit puts there
        frame_inds = sampler.transform(results)["frame_inds"]
        cases.append(
            {
                "total_frames": total,
                "fps": fps,
                "clip_len": clip_len,
                "frame_interval": fi,
                "num_clips": nc,
                "target_fps": target,
                "twice_sample": twice,
                "out_of_bound_opt": oob,
                "frame_inds": frame_inds.tolist(),
            }
        )
    OUT.write_text(json.dumps({"source": "mmaction2 1.2.0 SampleFrames", "cases": cases}) + "\n")
    print(f"{len(cases)} cases -> {OUT}")


if __name__ == "__main__":
    main()

"""The decoder child process: results come back exact, through shared memory when large."""

from __future__ import annotations

import copy
import os

import pytest
import torch

from actionrec.data import isolation
from actionrec.data.isolation import DecoderCrash, DecoderProcess


@pytest.fixture(scope="module")
def child():
    process = DecoderProcess(timeout=30.0)
    yield process
    process.close()


def test_large_tensors_come_back_equal_with_their_layout(child) -> None:
    if not hasattr(os, "memfd_create"):
        pytest.skip("no memfd here: results travel pickled")
    frames = torch.randint(0, 256, (3, 256, 340, 3), dtype=torch.uint8).permute(0, 3, 1, 2)
    first = child.call(copy.deepcopy, frames)  # (T, C, H, W) laid out channels-last
    assert torch.equal(first, frames) and first.stride() == frames.stride()
    # A bigger result grows the buffer; the first result was copied out, so it stays intact.
    bigger = torch.rand(25, 3, 64, 64)
    assert torch.equal(child.call(copy.deepcopy, bigger), bigger)
    assert torch.equal(first, frames)
    assert child._shared_map is not None and len(child._shared_map) >= bigger.nbytes
    small = torch.arange(10)  # pickled: under SHARED_MIN_BYTES
    assert torch.equal(child.call(copy.deepcopy, small), small)


def test_a_fresh_child_after_a_crash_gets_a_fresh_buffer(child) -> None:
    with pytest.raises(DecoderCrash, match="died"):
        child.call(os.abort)
    frames = torch.randint(0, 256, (3, 3, 128, 128), dtype=torch.uint8)
    assert torch.equal(child.call(copy.deepcopy, frames), frames)


def test_views_with_gaps_and_small_tensors_are_not_shared(tmp_path) -> None:
    if not hasattr(os, "memfd_create"):
        pytest.skip("no memfd here")
    fd = os.memfd_create("test", flags=0)
    try:
        state: dict = {}
        gappy = torch.zeros(8, 3, 128, 128, dtype=torch.uint8)[:, :, ::2]
        assert isolation._share(gappy, fd, state) is gappy
        small = torch.zeros(4, dtype=torch.uint8)
        assert isolation._share(small, fd, state) is small
        assert isolation._share("text", fd, state) == "text"
        dense = torch.ones(4, 3, 128, 128, dtype=torch.uint8)
        shared = isolation._share(dense, fd, state)
        assert isinstance(shared, isolation._Shared) and shared.dims == (0, 1, 2, 3)
        assert torch.equal(shared.load(state["map"]), dense)
    finally:
        state.get("map") and state["map"].close()
        os.close(fd)

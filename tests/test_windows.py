"""Time grids, windows and stitching; masked losses for frame-level tracks."""
import numpy as np
import pytest
import torch

from solution.metrics import make_loss
from solution.windows import align, chunk_spans, grid_times, stitch, window_starts


def test_align_follows_the_times_not_the_positions():
    # A stream at 4 Hz of a 2 s video and one at 50 Hz: both land on the same 10 Hz grid by time.
    slow_times, fast_times = np.arange(8) / 4, np.arange(100) / 50
    signal = lambda t: np.sin(2 * t)[:, None]  # noqa: E731
    at = grid_times(2.0, 10)
    assert len(at) == 20 and at[1] == pytest.approx(0.1)
    slow, fast = align(signal(slow_times), slow_times, at), align(signal(fast_times), fast_times, at)
    np.testing.assert_allclose(fast[:, 0], np.sin(2 * at)[:], atol=1e-3)
    inside = at <= slow_times[-1]
    np.testing.assert_allclose(slow[inside, 0], fast[inside, 0], atol=0.05)
    # Beyond the last frame the last value is held, not stretched.
    short_times = np.arange(4) / 4  # only the first second has frames
    held = align(signal(short_times), short_times, at)
    np.testing.assert_allclose(held[at >= 0.75, 0], np.sin(1.5), atol=1e-6)
    np.testing.assert_allclose(held[3, 0], np.sin(0.6), atol=0.05)


@pytest.mark.parametrize("length,window,hop", [(1, 300, 200), (300, 300, 200), (301, 300, 200), (1234, 300, 200),
                                               (97, 10, 3), (50, 10, 10)])
def test_windows_cover_every_frame_and_stitch_in_order(length, window, hop):
    starts = window_starts(length, window, hop)
    assert starts[0] == 0 and min(length, starts[-1] + window) == length
    assert all(b - a <= hop for a, b in zip(starts, starts[1:]))
    truth = np.arange(length, dtype=float)[:, None] * [1.0, -1.0]
    pieces = [(s, truth[s:s + window]) for s in starts]
    np.testing.assert_array_equal(stitch(length, pieces), truth)  # each frame once, in order
    # Overlaps are averaged.
    noisy = [(s, truth[s:s + window] + (1 if i % 2 else -1)) for i, s in enumerate(starts)]
    out = stitch(length, noisy)
    assert out.shape == truth.shape and np.abs(out - truth).max() <= 1


def test_training_offsets_shift_windows_but_keep_coverage():
    for offset in range(5):
        starts = window_starts(100, 20, 5, offset)
        covered = np.zeros(100, bool)
        for s in starts:
            covered[s:s + 20] = True
        assert covered.all()


def test_stitch_refuses_gaps():
    with pytest.raises(ValueError, match="covered by no window"):
        stitch(10, [(0, np.zeros((4, 2))), (6, np.zeros((4, 2)))])


def test_chunks_cover_a_long_video():
    spans = chunk_spans(30.0, 12.0)
    assert spans[0][0] == 0 and spans[-1][1] == pytest.approx(30.0)
    assert all(b - a == pytest.approx(12.0) for a, b in spans)
    assert chunk_spans(5.0, 12.0) == [(0.0, 5.0)]


def test_masked_loss_skips_unannotated_frames_and_never_nans():
    loss = make_loss("ccc")
    torch.manual_seed(0)
    pred = torch.rand(2, 6, 2, requires_grad=True)
    target = torch.rand(2, 6, 2)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 3:] = False
    base = loss(pred, target, mask)
    garbage = target.clone()
    garbage[1, 3:] = -5.0  # the -5 marker where the mask is off: must not matter
    assert loss(pred, garbage, mask).item() == pytest.approx(base.item())
    one = torch.zeros(2, 6, dtype=torch.bool)
    one[0, 2] = True  # a window with a single annotated frame
    tiny = loss(pred, target, one)
    assert torch.isfinite(tiny) and tiny.item() == 0.0
    tiny.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()

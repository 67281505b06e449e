import warnings

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr

from solution import metrics
from solution.tracks import EMI, VA


def independent_ccc(x, y):
    # Lin (1989), written out from its definition with population moments.
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x) / n
    syy = sum((b - my) ** 2 for b in y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y)) / n
    return 2 * sxy / (sxx + syy + (mx - my) ** 2)


def test_pearson_matches_scipy_per_dimension():
    rng = np.random.default_rng(0)
    target = rng.random((200, 6))
    pred = 0.5 * target + rng.normal(0, 0.3, target.shape)
    ours = metrics.pearson_per_dim(pred, target)
    ref = [pearsonr(pred[:, j], target[:, j]).statistic for j in range(6)]
    np.testing.assert_allclose(ours, ref, atol=1e-10)
    assert metrics.score(EMI, pred, target)["mean"] == pytest.approx(np.mean(ref))


def test_ccc_matches_independent_formula_and_penalises_bias():
    rng = np.random.default_rng(1)
    target = rng.uniform(-1, 1, (300, 2))
    pred = target * 0.7 + 0.2 + rng.normal(0, 0.2, target.shape)
    ours = metrics.ccc_per_dim(pred, target)
    for j in range(2):
        assert ours[j] == pytest.approx(independent_ccc(pred[:, j].tolist(), target[:, j].tolist()), abs=1e-10)
    # CCC punishes an offset that Pearson ignores.
    assert metrics.ccc_per_dim(target + 0.5, target).mean() < 0.9
    assert metrics.pearson_per_dim(target + 0.5, target).mean() == pytest.approx(1.0)
    assert metrics.score(VA, target, target)["mean"] == pytest.approx(1.0)


def test_constant_prediction_scores_zero_with_warning():
    target = np.random.default_rng(2).random((50, 6))
    pred = np.full_like(target, 0.3)
    with pytest.warns(metrics.ConstantInputWarning, match="constant for Admiration"):
        result = metrics.score(EMI, pred, target)
    assert result["mean"] == 0.0
    with pytest.warns(metrics.ConstantInputWarning):
        assert metrics.ccc_per_dim(np.zeros(10), np.zeros(10))[0] == 0.0


def test_nan_and_shape_errors():
    target = np.ones((10, 2))
    bad = np.random.default_rng(3).random((10, 2))
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN.*row 4, column 1"):
        metrics.pearson_per_dim(bad, target)
    with pytest.raises(ValueError, match="shape"):
        metrics.ccc_per_dim(np.ones((10, 2)), np.ones((9, 2)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="at least 2"):
            metrics.pearson_per_dim(np.ones((1, 2)), np.ones((1, 2)))


def test_torch_losses_agree_with_numpy_and_train():
    rng = np.random.default_rng(4)
    target = rng.random((64, 6))
    pred = target + rng.normal(0, 0.2, target.shape)
    tp, tt = torch.tensor(pred), torch.tensor(target)
    assert metrics.pearson_loss(tp, tt).item() == pytest.approx(1 - metrics.pearson_per_dim(pred, target).mean(), abs=1e-6)
    assert metrics.ccc_loss(tp, tt).item() == pytest.approx(1 - metrics.ccc_per_dim(pred, target).mean(), abs=1e-6)
    # Gradient descent on a mixed loss drives predictions towards the target.
    x = torch.zeros(64, 6, requires_grad=True)
    with torch.no_grad():
        x += torch.randn(64, 6) * 0.01
    loss_fn = metrics.make_loss("0.7*ccc+0.3*mse")
    opt = torch.optim.Adam([x], lr=0.05)
    first = loss_fn(x, tt).item()
    for _ in range(300):
        opt.zero_grad()
        loss = loss_fn(x, tt)
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first
    assert metrics.ccc_per_dim(x.detach().numpy(), target).mean() > 0.95


def test_loss_spec_parsing():
    assert metrics.parse_loss_spec("0.7*ccc + 0.3*mse") == [(0.7, "ccc"), (0.3, "mse")]
    assert metrics.parse_loss_spec("pearson") == [(1.0, "pearson")]
    with pytest.raises(ValueError, match="unknown loss 'cc'"):
        metrics.parse_loss_spec("cc+mse")

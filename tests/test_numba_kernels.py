"""numba's batch-normalisation loops against the formulas in float64, and when the stage uses them."""

import numpy as np
import pytest
import torch

from trainwell import fused_layers
from trainwell.layers import BatchNormalization

numba_kernels = pytest.importorskip("trainwell.numba_kernels")


def _strided(rows, cols, rng):
    """A float32 (rows, cols) view with a column beside it, as the fused step's buffers are."""
    return rng.standard_normal((rows, cols + 1)).astype(np.float32)[:, :cols]


@pytest.mark.parametrize("rows, cols", [(32, 5), (7, 50), (1, 3)])
def test_forward_and_backward_match_the_formulas(rows, cols):
    rng = np.random.default_rng(0)
    x = _strided(rows, cols, rng) * 3.0 + 1.0
    gamma = rng.uniform(0.5, 2.0, (1, cols)).astype(np.float32)
    beta = rng.standard_normal((1, cols)).astype(np.float32)
    eps = np.float32(1e-3)
    mean, var, scale = (np.empty((1, cols), np.float32) for _ in range(3))
    xhat, out = np.empty((rows, cols), np.float32), _strided(rows, cols, rng)
    numba_kernels.batch_norm_forward(x, gamma, beta, eps, mean, var, xhat, out, scale)

    x64 = x.astype(np.float64)
    mean64, var64 = x64.mean(0, keepdims=True), x64.var(0, keepdims=True)
    invstd = 1.0 / np.sqrt(var64 + float(eps))
    xhat64 = (x64 - mean64) * invstd
    np.testing.assert_allclose(mean, mean64, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(var, var64, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xhat, xhat64, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out, xhat64 * gamma + beta, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scale, -gamma * invstd / rows, rtol=1e-5)

    g = _strided(rows, cols, rng)
    grads, dx = np.empty((1, 2 * cols), np.float32), np.empty((rows, cols), np.float32)
    numba_kernels.batch_norm_backward(g, xhat, scale, grads, dx, True)
    g64 = g.astype(np.float64)
    dgamma, dbeta = (g64 * xhat64).sum(0), g64.sum(0)
    np.testing.assert_allclose(grads[0, :cols], dgamma, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grads[0, cols:], dbeta, rtol=1e-5, atol=1e-5)
    # torch's autograd of the same formula, in float64
    xt = torch.tensor(x64, requires_grad=True)
    normed = (xt - xt.mean(0)) / torch.sqrt(xt.var(0, unbiased=False) + float(eps))
    (normed * torch.tensor(gamma, dtype=torch.float64)).backward(torch.tensor(g64))
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=1e-4)

    untouched = dx.copy()
    numba_kernels.batch_norm_backward(g * 2, xhat, scale, grads, dx, False)
    np.testing.assert_array_equal(dx, untouched)  # no input gradient asked for: none written
    np.testing.assert_allclose(grads[0, cols:], 2 * dbeta, rtol=1e-5, atol=1e-5)


def _stage(cols=4):
    layer = BatchNormalization()
    layer.build((None, cols))
    stage = fused_layers.BatchNormStage(layer, cols)
    flat = torch.cat([layer.gamma.detach().flatten(), layer.beta.detach().flatten()])
    stage.bind(flat, torch.zeros_like(flat), 0)
    fused_layers.MovingAverages([stage])
    return stage


def test_the_stage_uses_numba_for_small_batches_or_one_thread(monkeypatch):
    monkeypatch.setattr(fused_layers, "_compiled", None)
    stage = _stage()
    stage.allocate(8, torch.empty(0))
    assert stage.kernels is numba_kernels and stage.grad_buffer is None
    monkeypatch.setattr(fused_layers, "_COMPILED_ELEMENTS", 16)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    stage.allocate(8, torch.empty(0))  # 32 elements on 4 threads: torch's kernels
    assert stage.kernels is None and stage.grad_buffer is not None
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    stage.allocate(8, torch.empty(0))
    assert stage.kernels is numba_kernels
    stage.allocate(8, torch.empty(0, dtype=torch.float64))  # the loops are for float32
    assert stage.kernels is None


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setattr(fused_layers, "_compiled", None)
    monkeypatch.setenv("TRAINWELL_NUMBA", "0")
    assert fused_layers.compiled_batch_norm() is None
    stage = _stage()
    stage.allocate(8, torch.empty(0))
    assert stage.kernels is None

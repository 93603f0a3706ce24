"""Independent reference implementations of the standard library (specs/*.loss).

For every spec, the same loss computed by the frameworks' own library functions (PyTorch's
``torch.nn.functional``, ``optax.losses``) or, where a library has none, a transcription of the
reference implementation named next to it. They are written from the libraries, not from the
.loss formulas, so that comparing a compiled spec with them means something.

``REFERENCES`` maps a loss name to a :class:`Reference`. The test suite iterates it:

    ref = REFERENCES["focal"]
    arrays = ref.make_inputs(np.random.default_rng(0), "float64", shape_case=0)
    for params in ref.param_cases:
        expected = ref.torch_fn(*arrays, **params)      # or ref.jax_fn(...)

Conventions:

- Inputs are numpy arrays in the spec's declared input order: floats of the requested dtype,
  Binary inputs as 0./1. floats, Index inputs as int64. ``torch_fn`` / ``jax_fn`` accept numpy
  arrays or framework tensors (a tensor that requires grad keeps its graph).
- Param values are Python floats; a tensor param (listed in ``tensor_params``) is a tuple of
  ``NUM_CLASSES`` floats, the size of dim ``C`` in every shape case, so that one param case fits
  every shape case. Convert it with the backend's ``asarray`` before passing it to a compiled
  spec.
- Every reference returns the spec's reduction (a scalar), with the reference's default params.
- ``grad_inputs`` are the differentiated inputs (everything but Binary and Index ones).

torch, jax and optax are imported lazily, inside the functions, so that this module imports
without them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

NUM_CLASSES = 4
# Sizes of the named dims per shape case: a typical case, the all-ones edge case, a larger one.
SHAPE_CASES: tuple[dict[str, int], ...] = (
    {"N": 6, "C": NUM_CLASSES, "D": 5, "P": 12},
    {"N": 1, "C": NUM_CLASSES, "D": 1, "P": 1},
    {"N": 17, "C": NUM_CLASSES, "D": 8, "P": 40},
)
N_SHAPE_CASES = len(SHAPE_CASES)

Arrays = tuple[np.ndarray, ...]


@dataclass(frozen=True)
class Reference:
    """The reference implementations and test data for one spec."""

    spec: str  # file name in specs/
    inputs: tuple[str, ...]  # the spec's input names, in declared order
    torch_fn: Callable[..., Any]
    jax_fn: Callable[..., Any]
    make_inputs: Callable[[np.random.Generator, str, int], Arrays]
    param_cases: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    tensor_params: tuple[str, ...] = ()
    no_grad: tuple[str, ...] = ()  # Binary and Index inputs: not differentiated
    note: str = ""  # where the spec's gradient may legitimately differ from the reference's

    @property
    def name(self) -> str:
        return self.spec.removesuffix(".loss")

    @property
    def grad_inputs(self) -> tuple[str, ...]:
        return tuple(n for n in self.inputs if n not in self.no_grad)


# -- framework access (lazy) ------------------------------------------------------------------


def _torch() -> tuple[Any, Any]:
    import torch
    import torch.nn.functional as F

    return torch, F


def _jax() -> tuple[Any, Any, Any]:
    import jax
    import jax.numpy as jnp
    import optax

    return jax, jnp, optax


def _t(*xs: Any) -> list[Any]:
    torch, _ = _torch()
    return [torch.as_tensor(x) for x in xs]


def _j(*xs: Any) -> list[Any]:
    _, jnp, _ = _jax()
    return [jnp.asarray(x) for x in xs]


def _vec_t(value: Any, like: Any) -> Any:
    """A scalar or per-class param as a torch tensor of ``like``'s dtype."""
    torch, _ = _torch()
    return torch.as_tensor(value, dtype=like.dtype).expand(like.shape[-1])


def _vec_j(value: Any, like: Any) -> Any:
    _, jnp, _ = _jax()
    return jnp.broadcast_to(jnp.asarray(value, dtype=like.dtype), like.shape[-1:])


# -- input generators -------------------------------------------------------------------------


def _dims(case: int) -> dict[str, int]:
    return SHAPE_CASES[case]


def _real(rng: np.random.Generator, shape: tuple[int, ...], dtype: str, scale: float = 1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def _binary(rng: np.random.Generator, shape: tuple[int, ...], dtype: str, p: float = 0.5):
    return (rng.random(shape) < p).astype(dtype)


def _index(rng: np.random.Generator, n: int, classes: int) -> np.ndarray:
    return rng.integers(0, classes, size=n).astype(np.int64)


def _away(x: np.ndarray, point: float, gap: float) -> np.ndarray:
    """Move values within ``gap`` of a kink ``point`` out of it, so finite differences work."""
    near = np.abs(x - point) < gap
    return np.where(near, x + np.sign(x - point + 1e-300) * 2 * gap, x).astype(x.dtype)


def _boxes(rng: np.random.Generator, n: int, dtype: str) -> Arrays:
    """Valid boxes (x2 > x1, y2 > y1); targets jittered from preds, some disjoint."""
    centre = rng.uniform(0.0, 10.0, (n, 2))
    size = rng.uniform(1.0, 4.0, (n, 2))
    centre_g = centre + rng.normal(0.0, 1.5, (n, 2))
    size_g = size * np.exp(rng.normal(0.0, 0.3, (n, 2)))
    pred = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    target = np.concatenate([centre_g - size_g / 2, centre_g + size_g / 2], axis=1)
    return pred.astype(dtype), target.astype(dtype)


def _regression(scale: float = 1.5) -> Callable[[np.random.Generator, str, int], Arrays]:
    def make(rng: np.random.Generator, dtype: str, case: int) -> Arrays:
        n = _dims(case)["N"]
        target = _real(rng, (n,), dtype)
        residual = _away(_real(rng, (n,), dtype, scale), 0.0, 1e-3)
        return (target + residual).astype(dtype), target

    return make


def _logits_binary(rng: np.random.Generator, dtype: str, case: int) -> Arrays:
    n = _dims(case)["N"]
    return _real(rng, (n,), dtype, 2.0), _binary(rng, (n,), dtype)


def _logits_index(rng: np.random.Generator, dtype: str, case: int) -> Arrays:
    d = _dims(case)
    return _real(rng, (d["N"], d["C"]), dtype, 2.0), _index(rng, d["N"], d["C"])


def _logits_mask(rng: np.random.Generator, dtype: str, case: int) -> Arrays:
    d = _dims(case)
    return _real(rng, (d["N"], d["P"]), dtype, 2.0), _binary(rng, (d["N"], d["P"]), dtype, 0.3)


def _pairs(rng: np.random.Generator, dtype: str, case: int) -> Arrays:
    d = _dims(case)
    x1 = _real(rng, (d["N"], d["D"]), dtype)
    x2 = (x1 + _real(rng, (d["N"], d["D"]), dtype, 0.7)).astype(dtype)
    return x1, x2, _binary(rng, (d["N"],), dtype)


# -- regression -------------------------------------------------------------------------------


def mse_torch(input, target):
    _, F = _torch()
    return F.mse_loss(*_t(input, target))


def mse_jax(input, target):
    _, _, optax = _jax()
    return optax.losses.squared_error(*_j(input, target)).mean()


def mae_torch(input, target):
    _, F = _torch()
    return F.l1_loss(*_t(input, target))


def mae_jax(input, target):
    # optax has no absolute error; the definition.
    _, jnp, _ = _jax()
    input, target = _j(input, target)
    return jnp.abs(input - target).mean()


def huber_torch(input, target, delta=1.0):
    _, F = _torch()
    return F.huber_loss(*_t(input, target), delta=delta)


def huber_jax(input, target, delta=1.0):
    _, _, optax = _jax()
    return optax.losses.huber_loss(*_j(input, target), delta=delta).mean()


def smooth_l1_torch(input, target, beta=1.0):
    _, F = _torch()
    return F.smooth_l1_loss(*_t(input, target), beta=beta)


def smooth_l1_jax(input, target, beta=1.0):
    # Girshick's smooth L1 is huber(delta=beta) / beta (for beta > 0).
    _, _, optax = _jax()
    return (optax.losses.huber_loss(*_j(input, target), delta=beta) / beta).mean()


def log_cosh_torch(input, target):
    # torch has no log-cosh loss: the definition (finite for |r| < 710 in float64).
    torch, _ = _torch()
    input, target = _t(input, target)
    return torch.log(torch.cosh(input - target)).mean()


def log_cosh_jax(input, target):
    _, _, optax = _jax()
    return optax.losses.log_cosh(*_j(input, target)).mean()


def quantile_torch(input, target, tau=0.5):
    # tensorflow_addons.losses.pinball_loss (tfa 0.20, losses/quantiles.py):
    # delta = y_true - y_pred; max(tau * delta, (tau - 1) * delta), averaged.
    torch, _ = _torch()
    input, target = _t(input, target)
    delta = target - input
    return torch.maximum(tau * delta, (tau - 1) * delta).mean()


def quantile_jax(input, target, tau=0.5):
    # Koenker and Bassett's check function rho_tau(u) = u * (tau - 1[u < 0]), u = target - input.
    input, target = _j(input, target)
    u = target - input
    return (u * (tau - (u < 0).astype(u.dtype))).mean()


def poisson_nll_torch(input, target, full=0.0):
    _, F = _torch()
    return F.poisson_nll_loss(*_t(input, target), log_input=True, full=bool(full))


def poisson_nll_jax(input, target, full=0.0):
    # torch/_refs/nn/functional/__init__.py::poisson_nll_loss (torch 2.13), log_input=True:
    # exp(input) - target * input, plus the Stirling term masked where target <= 1.
    _, jnp, _ = _jax()
    input, target = _j(input, target)
    loss = jnp.exp(input) - target * input
    if full:
        safe = jnp.where(target > 1, target, 1.0)
        stirling = safe * jnp.log(safe) - safe + 0.5 * jnp.log(2 * jnp.pi * safe)
        loss = loss + jnp.where(target > 1, stirling, 0.0)
    return loss.mean()


def gaussian_nll_torch(input, target, var, full=0.0, eps=1e-6):
    _, F = _torch()
    return F.gaussian_nll_loss(*_t(input, target, var), full=bool(full), eps=eps)


def gaussian_nll_jax(input, target, var, full=0.0, eps=1e-6):
    # torch.nn.functional.gaussian_nll_loss (torch 2.13): var is clamped at eps under no_grad,
    # so the gradient passes straight through the clamp.
    jax, jnp, _ = _jax()
    input, target, var = _j(input, target, var)
    var = var + jax.lax.stop_gradient(jnp.maximum(var, eps) - var)
    loss = 0.5 * (jnp.log(var) + (input - target) ** 2 / var)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return loss.mean()


def _poisson_inputs(rng: np.random.Generator, dtype: str, case: int) -> Arrays:
    n = _dims(case)["N"]
    # Non-integer counts kept away from 0 (log) and 1 (the Stirling term's jump).
    target = _away(rng.uniform(0.1, 6.0, n), 1.0, 0.05)
    return _real(rng, (n,), dtype), target.astype(dtype)


def _gaussian_inputs(rng: np.random.Generator, dtype: str, case: int) -> Arrays:
    n = _dims(case)["N"]
    target = _real(rng, (n,), dtype)
    return _real(rng, (n,), dtype), target, rng.uniform(0.2, 3.0, n).astype(dtype)


# -- classification ---------------------------------------------------------------------------


def bce_with_logits_torch(logits, target, pos_weight=None):
    _, F = _torch()
    logits, target = _t(logits, target)
    if pos_weight is not None:
        pos_weight = _vec_t(pos_weight, logits)
    return F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)


def bce_with_logits_jax(logits, target, pos_weight=None):
    # optax has no pos_weight: (1 - t) * sp(x) + pw * t * sp(-x) = bce + (pw - 1) * t * sp(-x).
    jax, _, optax = _jax()
    logits, target = _j(logits, target)
    loss = optax.losses.sigmoid_binary_cross_entropy(logits, target)
    if pos_weight is not None:
        pw = _vec_j(pos_weight, logits)
        loss = loss + (pw - 1) * target * jax.nn.softplus(-logits)
    return loss.mean()


def _bce_inputs(rng: np.random.Generator, dtype: str, case: int) -> Arrays:
    d = _dims(case)
    shape = (d["N"], d["C"])
    return _real(rng, shape, dtype, 2.0), rng.uniform(0.05, 0.95, shape).astype(dtype)


def cross_entropy_torch(logits, target, weight=None, label_smoothing=0.0):
    _, F = _torch()
    logits, target = _t(logits, target)
    if weight is not None:
        weight = _vec_t(weight, logits)
    return F.cross_entropy(logits, target, weight=weight, label_smoothing=label_smoothing)


def cross_entropy_jax(logits, target, weight=None, label_smoothing=0.0):
    # torch's weighted, smoothed mean (aten/src/ATen/native/LossNLL.cpp,
    # cross_entropy_loss_label_smoothing) as optax soft-label cross-entropy: row i's labels are
    # (1 - ls) * w[t_i] * onehot(t_i) + ls / C * w, and the sum is divided by sum(w[t_i]).
    jax, _, optax = _jax()
    logits, target = _j(logits, target)
    classes = logits.shape[-1]
    w = _vec_j(1.0 if weight is None else weight, logits)
    w_t = w[target]
    onehot = jax.nn.one_hot(target, classes, dtype=logits.dtype)
    labels = (1 - label_smoothing) * w_t[:, None] * onehot + label_smoothing / classes * w
    return optax.losses.softmax_cross_entropy(logits, labels).sum() / w_t.sum()


def focal_torch(logits, target, alpha=0.25, gamma=2.0):
    # torchvision.ops.sigmoid_focal_loss (torchvision 0.8 to 0.20, ops/focal_loss.py),
    # transcribed (torchvision is not a dependency), with reduction='mean'.
    torch, F = _torch()
    inputs, targets = _t(logits, target)
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return loss.mean()


def focal_jax(logits, target, alpha=0.25, gamma=2.0):
    _, _, optax = _jax()
    logits, target = _j(logits, target)
    return optax.losses.sigmoid_focal_loss(logits, target, alpha=alpha, gamma=gamma).mean()


def softmax_focal_torch(logits, target, alpha=None, gamma=2.0):
    # The common multi-class focal loss (Lin et al. 2017; e.g. AdeelH/pytorch-multi-class-
    # focal-loss): (1 - p_t)^gamma * F.cross_entropy(weight=alpha, reduction='none'), mean.
    torch, F = _torch()
    logits, target = _t(logits, target)
    weight = None if alpha is None else _vec_t(alpha, logits)
    ce = F.cross_entropy(logits, target, weight=weight, reduction="none")
    p_t = torch.exp(-F.cross_entropy(logits, target, reduction="none"))
    return ((1 - p_t) ** gamma * ce).mean()


def softmax_focal_jax(logits, target, alpha=None, gamma=2.0):
    _, jnp, optax = _jax()
    logits, target = _j(logits, target)
    ce = optax.losses.softmax_cross_entropy_with_integer_labels(logits, target)
    a = _vec_j(1.0 if alpha is None else alpha, logits)[target]
    return (a * (1 - jnp.exp(-ce)) ** gamma * ce).mean()


def kl_div_torch(input, target):
    _, F = _torch()
    return F.kl_div(*_t(input, target), reduction="batchmean")


def kl_div_jax(input, target):
    _, _, optax = _jax()
    return optax.losses.kl_divergence(*_j(input, target)).mean()


def _kl_inputs(rng: np.random.Generator, dtype: str, case: int) -> Arrays:
    d = _dims(case)
    shape = (d["N"], d["C"])
    logits = rng.standard_normal(shape)
    log_q = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    p = np.exp(rng.standard_normal(shape))
    return log_q.astype(dtype), (p / p.sum(-1, keepdims=True)).astype(dtype)


def hinge_torch(input, target, margin=1.0):
    # The SVM hinge max(0, margin - y * f) with y = 2 * target - 1 (torch has no binary hinge).
    torch, _ = _torch()
    input, target = _t(input, target)
    return torch.clamp_min(margin - (2 * target - 1) * input, 0).mean()


def hinge_jax(input, target, margin=1.0):
    # optax's hinge has margin 1: max(0, m - y f) = m * hinge(f / m, y); m = 0 is the perceptron.
    _, _, optax = _jax()
    input, target = _j(input, target)
    y = 2 * target - 1
    if margin == 0:
        return optax.losses.perceptron_loss(input, y).mean()
    return (margin * optax.losses.hinge_loss(input / margin, y)).mean()


def _hinge_inputs(rng: np.random.Generator, dtype: str, case: int) -> Arrays:
    n = _dims(case)["N"]
    return _real(rng, (n,), dtype, 1.5), _binary(rng, (n,), dtype)


# -- segmentation -----------------------------------------------------------------------------


def dice_torch(logits, target, smooth=1.0):
    # segmentation_models_pytorch soft_dice_score (smp 0.3, losses/_functional.py) per example
    # (dims over P), on smp's from_logits probabilities, with its smooth = 2 * smooth.
    torch, F = _torch()
    logits, target = _t(logits, target)
    output = F.logsigmoid(logits).exp()
    intersection = torch.sum(output * target, dim=1)
    cardinality = torch.sum(output + target, dim=1)
    score = (2.0 * intersection + 2 * smooth) / (cardinality + 2 * smooth).clamp_min(1e-7)
    return (1.0 - score).mean()


def dice_jax(logits, target, smooth=1.0):
    _, _, optax = _jax()
    logits, target = _j(logits, target)
    return optax.losses.binary_dice_loss(logits, target, smooth=smooth).mean()


def tversky_torch(logits, target, alpha=0.5, beta=0.5, smooth=1.0):
    # segmentation_models_pytorch soft_tversky_score (smp 0.3, losses/_functional.py) per
    # example (dims over P), on sigmoid probabilities.
    torch, F = _torch()
    logits, target = _t(logits, target)
    output = F.logsigmoid(logits).exp()
    intersection = torch.sum(output * target, dim=1)
    fp = torch.sum(output * (1.0 - target), dim=1)
    fn = torch.sum((1 - output) * target, dim=1)
    denominator = intersection + alpha * fp + beta * fn + smooth
    return (1.0 - (intersection + smooth) / denominator.clamp_min(1e-7)).mean()


def tversky_jax(logits, target, alpha=0.5, beta=0.5, smooth=1.0):
    # optax.losses.dice_loss on one sigmoid channel: alpha weighs FP, beta FN.
    _, _, optax = _jax()
    logits, target = _j(logits, target)
    loss = optax.losses.dice_loss(
        logits[..., None], target[..., None], smooth=smooth, alpha=alpha, beta=beta
    )
    return loss.mean()


# -- boxes (torchvision 0.15+, transcribed: torchvision is not a dependency) -------------------

_BOX_EPS = 1e-7


def _inter_union_torch(boxes1, boxes2):
    # torchvision/ops/_utils.py::_loss_inter_union
    torch, _ = _torch()
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    xkis1 = torch.max(x1, x1g)
    ykis1 = torch.max(y1, y1g)
    xkis2 = torch.min(x2, x2g)
    ykis2 = torch.min(y2, y2g)
    intsctk = torch.zeros_like(x1)
    mask = (ykis2 > ykis1) & (xkis2 > xkis1)
    intsctk[mask] = (xkis2[mask] - xkis1[mask]) * (ykis2[mask] - ykis1[mask])
    unionk = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - intsctk
    return intsctk, unionk


def _inter_union_jax(boxes1, boxes2):
    _, jnp, _ = _jax()
    x1, y1, x2, y2 = (boxes1[..., k] for k in range(4))
    x1g, y1g, x2g, y2g = (boxes2[..., k] for k in range(4))
    xkis1 = jnp.maximum(x1, x1g)
    ykis1 = jnp.maximum(y1, y1g)
    xkis2 = jnp.minimum(x2, x2g)
    ykis2 = jnp.minimum(y2, y2g)
    mask = (ykis2 > ykis1) & (xkis2 > xkis1)
    intsctk = jnp.where(mask, (xkis2 - xkis1) * (ykis2 - ykis1), 0.0)
    unionk = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - intsctk
    return intsctk, unionk


def _enclosing(np_like: Any, boxes1, boxes2):
    """Width and height of the smallest box enclosing both (torchvision's xc1..yc2)."""
    x1, y1, x2, y2 = (boxes1[..., k] for k in range(4))
    x1g, y1g, x2g, y2g = (boxes2[..., k] for k in range(4))
    width = np_like.maximum(x2, x2g) - np_like.minimum(x1, x1g)
    height = np_like.maximum(y2, y2g) - np_like.minimum(y1, y1g)
    return width, height


def iou_torch(pred, target):
    # 1 - IoU with torchvision's intersection, union and eps (the IoU term of giou_loss).
    pred, target = _t(pred, target)
    intsctk, unionk = _inter_union_torch(pred, target)
    return (1 - intsctk / (unionk + _BOX_EPS)).mean()


def iou_jax(pred, target):
    pred, target = _j(pred, target)
    intsctk, unionk = _inter_union_jax(pred, target)
    return (1 - intsctk / (unionk + _BOX_EPS)).mean()


def giou_torch(pred, target):
    # torchvision/ops/giou_loss.py::generalized_box_iou_loss, reduction='mean'
    torch, _ = _torch()
    pred, target = _t(pred, target)
    intsctk, unionk = _inter_union_torch(pred, target)
    iouk = intsctk / (unionk + _BOX_EPS)
    width, height = _enclosing(torch, pred, target)
    area_c = width * height
    miouk = iouk - ((area_c - unionk) / (area_c + _BOX_EPS))
    return (1 - miouk).mean()


def giou_jax(pred, target):
    _, jnp, _ = _jax()
    pred, target = _j(pred, target)
    intsctk, unionk = _inter_union_jax(pred, target)
    iouk = intsctk / (unionk + _BOX_EPS)
    width, height = _enclosing(jnp, pred, target)
    area_c = width * height
    return (1 - (iouk - (area_c - unionk) / (area_c + _BOX_EPS))).mean()


def _diou(np_like: Any, inter_union: Callable[..., Any], boxes1, boxes2):
    # torchvision/ops/diou_loss.py::_diou_iou_loss
    intsct, union = inter_union(boxes1, boxes2)
    iou = intsct / (union + _BOX_EPS)
    width, height = _enclosing(np_like, boxes1, boxes2)
    diagonal_distance_squared = (width**2) + (height**2) + _BOX_EPS
    x1, y1, x2, y2 = (boxes1[..., k] for k in range(4))
    x1g, y1g, x2g, y2g = (boxes2[..., k] for k in range(4))
    x_p = (x2 + x1) / 2
    y_p = (y2 + y1) / 2
    x_g = (x1g + x2g) / 2
    y_g = (y1g + y2g) / 2
    centers_distance_squared = ((x_p - x_g) ** 2) + ((y_p - y_g) ** 2)
    return (1 - iou + (centers_distance_squared / diagonal_distance_squared)).mean()


def diou_torch(pred, target):
    torch, _ = _torch()
    return _diou(torch, _inter_union_torch, *_t(pred, target))


def diou_jax(pred, target):
    _, jnp, _ = _jax()
    return _diou(jnp, _inter_union_jax, *_j(pred, target))


def _box_inputs(rng: np.random.Generator, dtype: str, case: int) -> Arrays:
    return _boxes(rng, _dims(case)["N"], dtype)


# -- embeddings -------------------------------------------------------------------------------

_PAIRWISE_EPS = 1e-6  # torch.nn.functional.pairwise_distance's default eps


def contrastive_torch(x1, x2, target, margin=1.0):
    # tensorflow_addons.losses.contrastive_loss (y_pred = the distance, 1 = similar) with the
    # distance torch.nn.functional.pairwise_distance(x1, x2) = norm(x1 - x2 + 1e-6).
    torch, F = _torch()
    x1, x2, target = _t(x1, x2, target)
    d = F.pairwise_distance(x1, x2)
    return (target * d**2 + (1 - target) * torch.clamp_min(margin - d, 0) ** 2).mean()


def contrastive_jax(x1, x2, target, margin=1.0):
    _, jnp, _ = _jax()
    x1, x2, target = _j(x1, x2, target)
    d = jnp.linalg.norm(x1 - x2 + _PAIRWISE_EPS, axis=-1)
    return (target * jnp.square(d) + (1 - target) * jnp.square(jnp.maximum(margin - d, 0))).mean()


def triplet_torch(anchor, positive, negative, margin=1.0):
    _, F = _torch()
    return F.triplet_margin_loss(*_t(anchor, positive, negative), margin=margin)


def triplet_jax(anchor, positive, negative, margin=1.0):
    # optax adds eps inside the root; torch adds it to the difference: shift the anchors by eps
    # and call optax with eps = 0, which is torch's distance exactly.
    _, _, optax = _jax()
    anchor, positive, negative = _j(anchor, positive, negative)
    loss = optax.losses.triplet_margin_loss(
        anchor + _PAIRWISE_EPS, positive, negative, margin=margin, eps=0.0
    )
    return loss.mean()


def _triplet_inputs(rng: np.random.Generator, dtype: str, case: int) -> Arrays:
    d = _dims(case)
    shape = (d["N"], d["D"])
    anchor = _real(rng, shape, dtype)
    positive = (anchor + _real(rng, shape, dtype, 0.5)).astype(dtype)
    return anchor, positive, (anchor + _real(rng, shape, dtype, 0.8)).astype(dtype)


def cosine_embedding_torch(x1, x2, target, margin=0.0):
    # torch takes target in {1, -1}; the spec's Binary target maps 1 -> 1, 0 -> -1.
    _, F = _torch()
    x1, x2, target = _t(x1, x2, target)
    return F.cosine_embedding_loss(x1, x2, 2 * target - 1, margin=margin)


def cosine_embedding_jax(x1, x2, target, margin=0.0):
    # aten/src/ATen/native/Loss.cpp::cosine_embedding_loss (torch 2.13), EPSILON = 1e-12.
    _, jnp, _ = _jax()
    x1, x2, target = _j(x1, x2, target)
    y = 2 * target - 1
    prod_sum = (x1 * x2).sum(-1)
    mag_square1 = (x1 * x1).sum(-1) + 1e-12
    mag_square2 = (x2 * x2).sum(-1) + 1e-12
    cos = prod_sum / jnp.sqrt(mag_square1 * mag_square2)
    pos = jnp.where(y == 1, 1 - cos, 0.0)
    neg = jnp.where(y == -1, jnp.maximum(cos - margin, 0), 0.0)
    return (pos + neg).mean()


def margin_ranking_torch(input1, input2, target, margin=0.0):
    _, F = _torch()
    input1, input2, target = _t(input1, input2, target)
    return F.margin_ranking_loss(input1, input2, 2 * target - 1, margin=margin)


def margin_ranking_jax(input1, input2, target, margin=0.0):
    # torch/_refs/nn/functional/__init__.py::margin_ranking_loss (torch 2.13).
    _, jnp, _ = _jax()
    input1, input2, target = _j(input1, input2, target)
    return jnp.maximum(-(2 * target - 1) * (input1 - input2) + margin, 0).mean()


def _ranking_inputs(rng: np.random.Generator, dtype: str, case: int) -> Arrays:
    n = _dims(case)["N"]
    return _real(rng, (n,), dtype), _real(rng, (n,), dtype), _binary(rng, (n,), dtype)


# -- the table --------------------------------------------------------------------------------

_REAL2 = ("input", "target")
_WEIGHTS = (0.5, 1.0, 2.0, 3.0)  # NUM_CLASSES per-class values for tensor params

REFERENCES: dict[str, Reference] = {
    r.name: r
    for r in (
        Reference("mse.loss", _REAL2, mse_torch, mse_jax, _regression()),
        Reference("mae.loss", _REAL2, mae_torch, mae_jax, _regression()),
        Reference(
            "huber.loss",
            _REAL2,
            huber_torch,
            huber_jax,
            _regression(),
            [{}, {"delta": 0.5}, {"delta": 2.5}],
        ),
        Reference(
            "smooth_l1.loss",
            _REAL2,
            smooth_l1_torch,
            smooth_l1_jax,
            _regression(),
            [{}, {"beta": 0.5}, {"beta": 2.5}],
        ),
        Reference("log_cosh.loss", _REAL2, log_cosh_torch, log_cosh_jax, _regression(3.0)),
        Reference(
            "quantile.loss",
            _REAL2,
            quantile_torch,
            quantile_jax,
            _regression(),
            [{}, {"tau": 0.1}, {"tau": 0.9}],
        ),
        Reference(
            "bce_with_logits.loss",
            ("logits", "target"),
            bce_with_logits_torch,
            bce_with_logits_jax,
            _bce_inputs,
            [{}, {"pos_weight": _WEIGHTS}],
            tensor_params=("pos_weight",),
        ),
        Reference(
            "cross_entropy.loss",
            ("logits", "target"),
            cross_entropy_torch,
            cross_entropy_jax,
            _logits_index,
            [
                {},
                {"label_smoothing": 0.1},
                {"weight": _WEIGHTS},
                {"weight": _WEIGHTS, "label_smoothing": 0.2},
            ],
            tensor_params=("weight",),
            no_grad=("target",),
        ),
        Reference(
            "focal.loss",
            ("logits", "target"),
            focal_torch,
            focal_jax,
            _logits_binary,
            [{}, {"alpha": 0.5, "gamma": 0.5}, {"alpha": 0.75, "gamma": 0.0}],
            no_grad=("target",),
        ),
        Reference(
            "softmax_focal.loss",
            ("logits", "target"),
            softmax_focal_torch,
            softmax_focal_jax,
            _logits_index,
            [{}, {"gamma": 0.5}, {"alpha": _WEIGHTS, "gamma": 0.0}, {"alpha": _WEIGHTS}],
            tensor_params=("alpha",),
            no_grad=("target",),
        ),
        Reference("kl_div.loss", _REAL2, kl_div_torch, kl_div_jax, _kl_inputs),
        Reference(
            "dice.loss",
            ("logits", "target"),
            dice_torch,
            dice_jax,
            _logits_mask,
            [{}, {"smooth": 1e-5}, {"smooth": 10.0}],
            no_grad=("target",),
        ),
        Reference(
            "tversky.loss",
            ("logits", "target"),
            tversky_torch,
            tversky_jax,
            _logits_mask,
            [
                {},
                {"alpha": 0.3, "beta": 0.7},
                {"alpha": 0.7, "beta": 0.3, "smooth": 1e-5},
                {"alpha": 0.7, "beta": 0.7},  # alpha + beta != 1: TP weighs in the denominator
            ],
            no_grad=("target",),
        ),
        Reference("iou.loss", ("pred", "target"), iou_torch, iou_jax, _box_inputs),
        Reference("giou.loss", ("pred", "target"), giou_torch, giou_jax, _box_inputs),
        Reference("diou.loss", ("pred", "target"), diou_torch, diou_jax, _box_inputs),
        Reference(
            "contrastive.loss",
            ("x1", "x2", "target"),
            contrastive_torch,
            contrastive_jax,
            _pairs,
            [{}, {"margin": 2.0}, {"margin": 0.5}],
            no_grad=("target",),
        ),
        Reference(
            "triplet.loss",
            ("anchor", "positive", "negative"),
            triplet_torch,
            triplet_jax,
            _triplet_inputs,
            [{}, {"margin": 0.2}, {"margin": 3.0}],
        ),
        Reference(
            "cosine_embedding.loss",
            ("x1", "x2", "target"),
            cosine_embedding_torch,
            cosine_embedding_jax,
            _pairs,
            [{}, {"margin": 0.5}, {"margin": -0.3}],
            no_grad=("target",),
        ),
        Reference(
            "hinge.loss",
            ("input", "target"),
            hinge_torch,
            hinge_jax,
            _hinge_inputs,
            [{}, {"margin": 0.5}, {"margin": 0.0}],
            no_grad=("target",),
        ),
        Reference(
            "margin_ranking.loss",
            ("input1", "input2", "target"),
            margin_ranking_torch,
            margin_ranking_jax,
            _ranking_inputs,
            [{}, {"margin": 0.5}, {"margin": -0.2}],
            no_grad=("target",),
        ),
        Reference(
            "poisson_nll.loss",
            _REAL2,
            poisson_nll_torch,
            poisson_nll_jax,
            _poisson_inputs,
            [{}, {"full": 1.0}],
        ),
        Reference(
            "gaussian_nll.loss",
            ("input", "target", "var"),
            gaussian_nll_torch,
            gaussian_nll_jax,
            _gaussian_inputs,
            [{}, {"full": 1.0}, {"full": 1.0, "eps": 0.1}],
            note=(
                "torch clamps var at eps under no_grad (gradient passes through); the spec's "
                "max(var, eps) has gradient 0 where var < eps. The inputs keep var >= 0.2."
            ),
        ),
    )
}

__all__ = ["NUM_CLASSES", "N_SHAPE_CASES", "REFERENCES", "SHAPE_CASES", "Reference"]

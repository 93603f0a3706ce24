"""Direct translations of the example specs (tests/examples/*.loss), written by hand the way a
user would write them in PyTorch or JAX, for the backends' tests to compare against.

Each function takes an ``ops`` namespace (torch or jax flavoured) so one translation serves
both frameworks; kinks use maximum/minimum, whose autodiff splits ties like lossdsl documents.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


def torch_ops() -> SimpleNamespace:
    import torch

    return SimpleNamespace(
        sigmoid=torch.sigmoid,
        log=torch.log,
        exp=torch.exp,
        sqrt=torch.sqrt,
        abs=torch.abs,
        softplus=torch.nn.functional.softplus,
        log_softmax=lambda x, axis: torch.log_softmax(x, dim=axis),
        sum=lambda x, axis=None: x.sum() if axis is None else x.sum(dim=axis),
        mean=lambda x: x.mean(),
        maximum=lambda a, b: torch.maximum(a, torch.as_tensor(b, dtype=a.dtype)),
        minimum=lambda a, b: torch.minimum(a, torch.as_tensor(b, dtype=a.dtype)),
        where=torch.where,
        take=lambda x, t: torch.gather(x, -1, t[..., None]).squeeze(-1),
        relu=torch.relu,
        ones_like=torch.ones_like,
    )


def jax_ops() -> SimpleNamespace:
    import jax
    import jax.numpy as jnp

    return SimpleNamespace(
        sigmoid=jax.nn.sigmoid,
        log=jnp.log,
        exp=jnp.exp,
        sqrt=jnp.sqrt,
        abs=jnp.abs,
        softplus=jax.nn.softplus,
        log_softmax=lambda x, axis: jax.nn.log_softmax(x, axis=axis),
        sum=lambda x, axis=None: jnp.sum(x, axis=axis),
        mean=jnp.mean,
        maximum=jnp.maximum,
        minimum=jnp.minimum,
        where=jnp.where,
        take=lambda x, t: jnp.take_along_axis(x, t[..., None], axis=-1)[..., 0],
        relu=jax.nn.relu,
        ones_like=jnp.ones_like,
    )


def focal(o: Any, logits: Any, target: Any, gamma: float = 2.0, alpha: float = 0.25) -> Any:
    p = o.sigmoid(logits)
    p_t = target * p + (1 - target) * (1 - p)
    alpha_t = target * alpha + (1 - target) * (1 - alpha)
    return o.mean(alpha_t * (1 - p_t) ** gamma * -o.log(p_t))


def huber(o: Any, pred: Any, target: Any, delta: float = 1.0) -> Any:
    r = o.abs(pred - target)
    return o.mean(o.where(r <= delta, 0.5 * r**2, delta * (r - 0.5 * delta)))


def dice(o: Any, logits: Any, target: Any, smooth: float = 1.0) -> Any:
    p = o.sigmoid(logits)
    inter = o.sum(p * target, axis=1)
    return o.mean(1 - (2 * inter + smooth) / (o.sum(p, axis=1) + o.sum(target, axis=1) + smooth))


def cross_entropy(
    o: Any, logits: Any, target: Any, weight: Any = None, smoothing: float = 0.0
) -> Any:
    logp = o.log_softmax(logits, 1)
    weight = o.ones_like(logits[0]) if weight is None else weight
    w = weight[target]
    nll = -o.take(logp, target)
    soft = -o.sum(weight * logp, axis=1) / logits.shape[1]
    return o.sum(w * ((1 - smoothing) * nll) + smoothing * soft) / o.sum(w)


def iou(o: Any, pred: Any, target: Any) -> Any:
    px1, py1, px2, py2 = (pred[:, k] for k in range(4))
    tx1, ty1, tx2, ty2 = (target[:, k] for k in range(4))
    iw = o.maximum(o.minimum(px2, tx2) - o.maximum(px1, tx1), 0.0)
    ih = o.maximum(o.minimum(py2, ty2) - o.maximum(py1, ty1), 0.0)
    inter = iw * ih
    union = (px2 - px1) * (py2 - py1) + (tx2 - tx1) * (ty2 - ty1) - inter
    return o.mean(1 - inter / (union + 1e-7))


def contrastive(o: Any, a: Any, b: Any, same: Any, margin: float = 1.0) -> Any:
    d = o.sqrt(o.sum((a - b) ** 2, axis=1))
    return o.mean(same * d**2 + (1 - same) * o.maximum(margin - d, 0.0) ** 2)


def stock(
    o: Any, pred: Any, demand: Any, under: float = 3.0, over: float = 1.0, barrier: float = 10.0
) -> Any:
    r = pred - demand
    asym = o.where(r < 0, under * r**2, over * r**2)
    return o.mean(asym) + barrier * o.mean(o.relu(-pred) ** 2)


def bce(o: Any, logits: Any, target: Any) -> Any:
    return o.mean(target * o.softplus(-logits) + (1 - target) * o.softplus(logits))


def detection(
    o: Any, logits: Any, target: Any, box: Any, box_gt: Any, box_weight: float = 2.0
) -> Any:
    return bce(o, logits, target) + box_weight * iou(o, box, box_gt)


# example file -> (loss name, translation)
EXAMPLES = {
    "focal": ("focal", focal),
    "huber": ("huber", huber),
    "dice": ("dice", dice),
    "cross_entropy": ("cross_entropy", cross_entropy),
    "iou": ("iou", iou),
    "contrastive": ("contrastive", contrastive),
    "stock": ("stock", stock),
    "detection": ("detection", detection),
}

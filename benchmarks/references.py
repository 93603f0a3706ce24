"""The hand-written losses lossdsl is measured against: what a user writes without it.

Each torch reference is the library call (``torch.nn.functional``) where PyTorch has one, or the
widely copied implementation (torchvision's focal and GIoU losses, segmentation_models_pytorch's
Dice and Tversky scores) transcribed as a user would paste it. Each JAX reference is the
``optax.losses`` call where optax has one, or the same formula in ``jax.numpy``. They compute
the same reduction and the same default params as the spec of the same name in ``specs/``.

torch, jax and optax are imported inside the functions, so that a worker imports only the
framework it measures.
"""

from __future__ import annotations

from typing import Any

# -- torch ------------------------------------------------------------------------------------


def focal_torch(logits, target, alpha=0.25, gamma=2.0):
    # torchvision.ops.sigmoid_focal_loss (ops/focal_loss.py), reduction="mean".
    import torch
    import torch.nn.functional as F

    p = torch.sigmoid(logits)
    ce_loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce_loss * ((1 - p_t) ** gamma)
    alpha_t = alpha * target + (1 - alpha) * (1 - target)
    return (alpha_t * loss).mean()


def bce_with_logits_torch(logits, target):
    import torch.nn.functional as F

    return F.binary_cross_entropy_with_logits(logits, target)


def huber_torch(input, target, delta=1.0):
    import torch.nn.functional as F

    return F.huber_loss(input, target, delta=delta)


def mse_torch(input, target):
    import torch.nn.functional as F

    return F.mse_loss(input, target)


def cross_entropy_torch(logits, target):
    import torch.nn.functional as F

    return F.cross_entropy(logits, target)


def giou_torch(pred, target, eps=1e-7):
    # torchvision.ops.generalized_box_iou_loss (ops/giou_loss.py and ops/_utils.py),
    # reduction="mean".
    import torch

    x1, y1, x2, y2 = pred.unbind(dim=-1)
    x1g, y1g, x2g, y2g = target.unbind(dim=-1)
    xkis1 = torch.max(x1, x1g)
    ykis1 = torch.max(y1, y1g)
    xkis2 = torch.min(x2, x2g)
    ykis2 = torch.min(y2, y2g)
    intsctk = torch.zeros_like(x1)
    mask = (ykis2 > ykis1) & (xkis2 > xkis1)
    intsctk[mask] = (xkis2[mask] - xkis1[mask]) * (ykis2[mask] - ykis1[mask])
    unionk = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - intsctk
    iouk = intsctk / (unionk + eps)
    xc1 = torch.min(x1, x1g)
    yc1 = torch.min(y1, y1g)
    xc2 = torch.max(x2, x2g)
    yc2 = torch.max(y2, y2g)
    area_c = (xc2 - xc1) * (yc2 - yc1)
    miouk = iouk - ((area_c - unionk) / (area_c + eps))
    return (1 - miouk).mean()


def dice_torch(logits, target, smooth=1.0):
    # segmentation_models_pytorch soft_dice_score per example, on sigmoid probabilities.
    import torch

    p = torch.sigmoid(logits)
    intersection = torch.sum(p * target, dim=1)
    cardinality = torch.sum(p + target, dim=1)
    score = (2.0 * intersection + 2 * smooth) / (cardinality + 2 * smooth)
    return (1.0 - score).mean()


def tversky_torch(logits, target, alpha=0.5, beta=0.5, smooth=1.0):
    # segmentation_models_pytorch soft_tversky_score per example, on sigmoid probabilities.
    import torch

    p = torch.sigmoid(logits)
    intersection = torch.sum(p * target, dim=1)
    fp = torch.sum(p * (1.0 - target), dim=1)
    fn = torch.sum((1 - p) * target, dim=1)
    score = (intersection + smooth) / (intersection + alpha * fp + beta * fn + smooth)
    return (1.0 - score).mean()


def contrastive_torch(x1, x2, target, margin=1.0):
    # Hadsell et al. with torch's pairwise distance (tensorflow_addons' convention: 1 = similar).
    import torch
    import torch.nn.functional as F

    d = F.pairwise_distance(x1, x2)
    return (target * d**2 + (1 - target) * torch.clamp_min(margin - d, 0) ** 2).mean()


def triplet_torch(anchor, positive, negative, margin=1.0):
    import torch.nn.functional as F

    return F.triplet_margin_loss(anchor, positive, negative, margin=margin)


def kl_div_torch(input, target):
    import torch.nn.functional as F

    return F.kl_div(input, target, reduction="batchmean")


def cosine_embedding_torch(x1, x2, target, margin=0.0):
    # torch takes the target in {1, -1}; the spec's Binary target is 1 or 0.
    import torch.nn.functional as F

    return F.cosine_embedding_loss(x1, x2, 2 * target - 1, margin=margin)


# -- JAX --------------------------------------------------------------------------------------


def focal_jax(logits, target, alpha=0.25, gamma=2.0):
    import optax

    return optax.losses.sigmoid_focal_loss(logits, target, alpha=alpha, gamma=gamma).mean()


def bce_with_logits_jax(logits, target):
    import optax

    return optax.losses.sigmoid_binary_cross_entropy(logits, target).mean()


def huber_jax(input, target, delta=1.0):
    import optax

    return optax.losses.huber_loss(input, target, delta=delta).mean()


def mse_jax(input, target):
    import optax

    return optax.losses.squared_error(input, target).mean()


def cross_entropy_jax(logits, target):
    import optax

    return optax.losses.softmax_cross_entropy_with_integer_labels(logits, target).mean()


def giou_jax(pred, target, eps=1e-7):
    # torchvision's generalized_box_iou_loss in jax.numpy (optax has no box losses).
    import jax.numpy as jnp

    x1, y1, x2, y2 = (pred[:, k] for k in range(4))
    x1g, y1g, x2g, y2g = (target[:, k] for k in range(4))
    xkis1 = jnp.maximum(x1, x1g)
    ykis1 = jnp.maximum(y1, y1g)
    xkis2 = jnp.minimum(x2, x2g)
    ykis2 = jnp.minimum(y2, y2g)
    mask = (ykis2 > ykis1) & (xkis2 > xkis1)
    intsctk = jnp.where(mask, (xkis2 - xkis1) * (ykis2 - ykis1), 0.0)
    unionk = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - intsctk
    iouk = intsctk / (unionk + eps)
    area_c = (jnp.maximum(x2, x2g) - jnp.minimum(x1, x1g)) * (
        jnp.maximum(y2, y2g) - jnp.minimum(y1, y1g)
    )
    return (1 - (iouk - (area_c - unionk) / (area_c + eps))).mean()


def dice_jax(logits, target, smooth=1.0):
    import optax

    return optax.losses.binary_dice_loss(logits, target, smooth=smooth).mean()


def tversky_jax(logits, target, alpha=0.5, beta=0.5, smooth=1.0):
    import jax
    import jax.numpy as jnp

    p = jax.nn.sigmoid(logits)
    intersection = jnp.sum(p * target, axis=1)
    fp = jnp.sum(p * (1.0 - target), axis=1)
    fn = jnp.sum((1 - p) * target, axis=1)
    score = (intersection + smooth) / (intersection + alpha * fp + beta * fn + smooth)
    return (1.0 - score).mean()


def contrastive_jax(x1, x2, target, margin=1.0, eps=1e-6):
    import jax.numpy as jnp

    d = jnp.linalg.norm(x1 - x2 + eps, axis=-1)
    return (target * d**2 + (1 - target) * jnp.maximum(margin - d, 0) ** 2).mean()


def triplet_jax(anchor, positive, negative, margin=1.0):
    # optax puts its eps inside the square root where torch adds it to the difference: the
    # values differ by about 1e-6, the cost not at all.
    import optax

    return optax.losses.triplet_margin_loss(anchor, positive, negative, margin=margin).mean()


def kl_div_jax(input, target):
    import optax

    return optax.losses.kl_divergence(input, target).mean()


def cosine_embedding_jax(x1, x2, target, margin=0.0):
    import jax.numpy as jnp
    import optax

    cos = optax.losses.cosine_similarity(x1, x2, epsilon=1e-12)
    return jnp.where(target == 1, 1 - cos, jnp.maximum(cos - margin, 0)).mean()


TORCH: dict[str, Any] = {
    name.removesuffix("_torch"): fn for name, fn in globals().items() if name.endswith("_torch")
}
JAX: dict[str, Any] = {
    name.removesuffix("_jax"): fn for name, fn in globals().items() if name.endswith("_jax")
}

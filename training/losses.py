"""Training losses of the RGA recipe: label-smoothed cross-entropy + batch-hard triplet, weighted 1:1.

Both losses compute in float32 with autocast disabled, whatever the dtype of their inputs, so they are
safe inside ``torch.autocast(dtype=torch.bfloat16)``; gradients flow back in the inputs' dtype.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)


def _no_autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device_type=device.type, enabled=False)


def _check_targets(name: str, batch: int, targets: Tensor) -> None:
    if targets.ndim != 1 or targets.shape[0] != batch:
        raise ValueError(f"{name}: targets must have shape ({batch},), got {tuple(targets.shape)}")


class CrossEntropyLabelSmooth(nn.Module):
    """Cross-entropy against ``(1 - epsilon) * one_hot + epsilon / num_classes``, averaged over the batch.

    forward(logits (B, C) any float dtype, targets (B,) int64 in [0, C)) -> scalar float32 tensor.
    """

    def __init__(self, epsilon: float = 0.1) -> None:
        super().__init__()
        if not 0 <= epsilon < 1:
            raise ValueError(f"label smoothing epsilon must be in [0, 1), got {epsilon}")
        self.epsilon = epsilon

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        if logits.ndim != 2:
            raise ValueError(f"logits must have shape (B, num_classes), got {tuple(logits.shape)}")
        _check_targets("cross-entropy", logits.shape[0], targets)
        with _no_autocast(logits.device):
            return F.cross_entropy(logits.float(), targets, label_smoothing=self.epsilon)


def pairwise_euclidean(features: Tensor, eps: float = 1e-12) -> Tensor:
    """Euclidean distances between rows: (B, D) -> (B, B) float32.

    Computed as sqrt(clamp(|a|^2 + |b|^2 - 2 a.b, min=eps)) in float32: the clamp keeps the square root
    and its gradient finite where two features coincide (the diagonal); clamped entries get zero gradient.
    """
    with _no_autocast(features.device):
        x = features.float()
        sq = x.pow(2).sum(dim=1)
        d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
        return d2.clamp(min=eps).sqrt()


class BatchHardTripletLoss(nn.Module):
    """Batch-hard triplet loss (Hermans et al. 2017) on unnormalised features with euclidean distance.

    For each anchor: hardest positive = largest distance to another sample of its identity, hardest
    negative = smallest distance to a sample of another identity; loss = mean over anchors of
    ``relu(d_ap - d_an + margin)``. An anchor with no other sample of its identity uses d_ap = 0 (the
    official code takes its distance to itself, ~1e-6). Anchors without any negative (a batch of a single
    identity) are left out; if none is left the loss is a zero that still depends on the features.

    forward(features (B, D) any float dtype, targets (B,) int) -> scalar float32 tensor.
    """

    def __init__(self, margin: float = 0.3) -> None:
        super().__init__()
        if margin < 0:
            raise ValueError(f"triplet margin must be >= 0, got {margin}")
        self.margin = margin

    def forward(self, features: Tensor, targets: Tensor) -> Tensor:
        if features.ndim != 2:
            raise ValueError(f"features must have shape (B, D), got {tuple(features.shape)}")
        _check_targets("triplet", features.shape[0], targets)
        dist = pairwise_euclidean(features)
        with _no_autocast(features.device):
            same = targets[:, None] == targets[None, :]
            eye = torch.eye(len(targets), dtype=torch.bool, device=targets.device)
            positive = same & ~eye
            negative = ~same
            zero = dist.new_zeros(())
            d_ap = torch.where(positive, dist, zero).amax(dim=1)
            d_an = torch.where(negative, dist, dist.new_tensor(float("inf"))).amin(dim=1)
            has_negative = negative.any(dim=1)
            if not bool(has_negative.any()):
                return dist.sum() * 0.0
            per_anchor = F.relu(d_ap - d_an + self.margin)
            return per_anchor[has_negative].mean()


class ReIDLossOutput(NamedTuple):
    """``total`` is what to backpropagate; ``cross_entropy`` and ``triplet`` are the unweighted parts."""

    total: Tensor
    cross_entropy: Tensor
    triplet: Tensor


class ReIDLoss(nn.Module):
    """The recipe's objective: ``ce_weight * CE(logits) + triplet_weight * triplet(features)``.

    forward(logits (B, C): classifier output on the BNNeck feature ``feat``;
            features (B, D): the pooled feature ``feat_`` before the BNNeck;
            targets (B,) int64 training labels) -> ReIDLossOutput of scalar float32 tensors.
    """

    def __init__(
        self,
        epsilon: float = 0.1,
        margin: float = 0.3,
        ce_weight: float = 1.0,
        triplet_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.cross_entropy = CrossEntropyLabelSmooth(epsilon)
        self.triplet = BatchHardTripletLoss(margin)
        self.ce_weight = ce_weight
        self.triplet_weight = triplet_weight

    def forward(self, logits: Tensor, features: Tensor, targets: Tensor) -> ReIDLossOutput:
        ce = self.cross_entropy(logits, targets)
        tri = self.triplet(features, targets)
        return ReIDLossOutput(self.ce_weight * ce + self.triplet_weight * tri, ce, tri)

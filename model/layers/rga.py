"""Relation-aware global attention (RGA), spatial then channel (Zhang et al., CVPR 2020).

At a feature map x (B, C, H, W) with N = H*W positions, RGA-S embeds x twice
(theta, phi: 1x1 conv C -> C/8 + BN + ReLU), forms the pairwise relations
G = theta^T phi (N x N), stacks for every position p its relations "to" and
"from" all positions ([G^T; G], 2N values), embeds them with a 1x1 conv
2N -> N/8 (+ BN + ReLU), appends the channel-mean of a third embedding of x
(the unary term) and turns the result into one attention weight per position
through a small conv-BN-ReLU-conv-BN and a sigmoid. RGA-C is the same with the
roles of positions and channels swapped (x seen as N "channels" at C
"positions"), giving one weight per channel.

Module and parameter names follow the official code
(reid/models/models_utils/rga_modules.py), so its checkpoints load as they are.

The fast form. The relation conv is linear in G, and G = theta^T phi has rank
d = C/8 (spatial) or N/8 (channel). Writing the conv weight as [A | B]
(o x n each):

    conv([G^T; G])[:, p] = sum_k A[:, k] G[p, k] + B[:, k] G[k, p]
                         = ((A phi^T) theta + (B theta^T) phi)[:, p]

so the relation features cost O(o*n*d) instead of O(n^2 * (d + o)), and the
n x n matrix never exists. `form="direct"` keeps the paper's computation
(materialising G); it is the test oracle and the benchmark baseline.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from model.errors import InputSizeError

RGAForm = Literal["fast", "direct"]


def _embed(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 conv (no bias) + BN + ReLU: the embedding the official code uses everywhere."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


def _attention_head(in_channels: int, down_ratio: int) -> nn.Sequential:
    """conv -> BN -> ReLU -> conv to one map -> BN (the sigmoid is applied by the caller)."""
    hidden = in_channels // down_ratio
    if hidden < 1:
        raise ValueError(
            f"RGA attention head with {in_channels} input channels and down ratio {down_ratio} "
            "has no hidden channel: the input size is too small for these ratios"
        )
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, kernel_size=1, bias=False),
        nn.BatchNorm2d(hidden),
        nn.ReLU(),
        nn.Conv2d(hidden, 1, kernel_size=1, bias=False),
        nn.BatchNorm2d(1),
    )


def relation_features(theta: torch.Tensor, phi: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The relation conv applied to [G^T; G], G = theta^T phi, without forming G.

    theta, phi: (B, d, n) embeddings of n items; weight: (o, 2n) conv weight.
    Returns (B, o, n): column p is weight @ [G[p, :]; G[:, p]].
    """
    n = theta.shape[-1]
    w_in, w_out = weight[:, :n], weight[:, n:]
    return torch.matmul(torch.matmul(w_in, phi.transpose(1, 2)), theta) + torch.matmul(
        torch.matmul(w_out, theta.transpose(1, 2)), phi
    )


class RGAModule(nn.Module):
    """RGA after one ResNet stage: spatial attention, then channel attention on its output.

    Args:
        in_channel: C of the feature map.
        in_spatial: N = H*W of the feature map; the channel branch's weights depend on it.
        use_spatial, use_channel: which attentions (RGA-S, RGA-C, or both = RGA-SC).
        cha_ratio, spa_ratio, down_ratio: the reduction ratios (8, 8, 8 in the paper).
        form: "fast" (reassociated, default) or "direct" (materialises G, as the paper writes it).
    """

    def __init__(
        self,
        in_channel: int,
        in_spatial: int,
        use_spatial: bool = True,
        use_channel: bool = True,
        cha_ratio: int = 8,
        spa_ratio: int = 8,
        down_ratio: int = 8,
        form: RGAForm = "fast",
    ) -> None:
        super().__init__()
        if not (use_spatial or use_channel):
            raise ValueError("an RGA module needs the spatial or the channel attention (or both)")
        self.in_channel = in_channel
        self.in_spatial = in_spatial
        self.use_spatial = use_spatial
        self.use_channel = use_channel
        self.inter_channel = in_channel // cha_ratio
        self.inter_spatial = in_spatial // spa_ratio
        if self.inter_channel < 1 or self.inter_spatial < 1:
            raise ValueError(
                f"RGA module with C={in_channel}, N={in_spatial} and ratios {cha_ratio}/{spa_ratio} "
                "has an empty embedding: the input size is too small"
            )
        self.form: RGAForm = form

        # Registration order follows the official module so state-dict order matches too.
        if use_spatial:
            self.gx_spatial = _embed(in_channel, self.inter_channel)
        if use_channel:
            self.gx_channel = _embed(in_spatial, self.inter_spatial)
        if use_spatial:
            self.gg_spatial = _embed(2 * in_spatial, self.inter_spatial)
        if use_channel:
            self.gg_channel = _embed(2 * in_channel, self.inter_channel)
        if use_spatial:
            self.W_spatial = _attention_head(1 + self.inter_spatial, down_ratio)
        if use_channel:
            self.W_channel = _attention_head(1 + self.inter_channel, down_ratio)
        if use_spatial:
            self.theta_spatial = _embed(in_channel, self.inter_channel)
            self.phi_spatial = _embed(in_channel, self.inter_channel)
        if use_channel:
            self.theta_channel = _embed(in_spatial, self.inter_spatial)
            self.phi_channel = _embed(in_spatial, self.inter_spatial)

    def extra_repr(self) -> str:
        return (
            f"in_channel={self.in_channel}, in_spatial={self.in_spatial}, "
            f"spatial={self.use_spatial}, channel={self.use_channel}, form={self.form!r}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if c != self.in_channel or h * w != self.in_spatial:
            raise InputSizeError(
                f"RGA module built for {self.in_channel} channels x {self.in_spatial} positions got a "
                f"{c} x {h}x{w} feature map: the network was built for another input size"
            )
        if self.form == "direct":
            return self._forward_direct(x)
        if self.use_spatial:
            x = x * torch.sigmoid(self._spatial_logits(x))
        if self.use_channel:
            x = x * torch.sigmoid(self._channel_logits(x))
        return x

    def _relation(self, embed: nn.Sequential, theta: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        """BN+ReLU of the relation conv of (theta, phi) (B, d, n) -> (B, o, n, 1)."""
        conv, bn, relu = embed
        rel = relation_features(theta, phi, conv.weight.flatten(1).to(theta.dtype))
        if conv.bias is not None:  # a BatchNorm folded into the conv (model.fold); bn is then Identity
            rel = rel + conv.bias.to(rel.dtype).view(1, -1, 1)
        return relu(bn(rel.unsqueeze(-1)))

    def _spatial_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> attention logits (B, 1, H, W)."""
        b, _, h, w = x.shape
        theta = self.theta_spatial(x).flatten(2)  # (B, C/8, N)
        phi = self.phi_spatial(x).flatten(2)
        relation = self._relation(self.gg_spatial, theta, phi).view(b, self.inter_spatial, h, w)
        unary = self.gx_spatial(x).mean(dim=1, keepdim=True)  # (B, 1, H, W)
        return self.W_spatial(torch.cat((unary, relation), dim=1))

    def _channel_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> attention logits (B, C, 1, 1)."""
        b, c = x.shape[:2]
        xc = x.flatten(2).transpose(1, 2).unsqueeze(-1)  # (B, N, C, 1): N "channels" at C positions
        theta = self.theta_channel(xc).squeeze(-1)  # (B, N/8, C)
        phi = self.phi_channel(xc).squeeze(-1)
        relation = self._relation(self.gg_channel, theta, phi)  # (B, C/8, C, 1)
        unary = self.gx_channel(xc).mean(dim=1, keepdim=True)  # (B, 1, C, 1)
        return self.W_channel(torch.cat((unary, relation), dim=1)).view(b, c, 1, 1)

    def _forward_direct(self, x: torch.Tensor) -> torch.Tensor:
        """The paper's computation, step for step as the official code does it (G materialised)."""
        b, c, h, w = x.shape
        if self.use_spatial:
            theta = self.theta_spatial(x).view(b, self.inter_channel, -1).permute(0, 2, 1)
            phi = self.phi_spatial(x).view(b, self.inter_channel, -1)
            gs = torch.matmul(theta, phi)  # (B, N, N)
            gs_in = gs.permute(0, 2, 1).reshape(b, h * w, h, w)
            gs_out = gs.view(b, h * w, h, w)
            gs_joint = self.gg_spatial(torch.cat((gs_in, gs_out), 1))
            g_xs = torch.mean(self.gx_spatial(x), dim=1, keepdim=True)
            w_ys = self.W_spatial(torch.cat((g_xs, gs_joint), 1))
            x = F.sigmoid(w_ys.expand_as(x)) * x
        if self.use_channel:
            xc = x.reshape(b, c, -1).permute(0, 2, 1).unsqueeze(-1)
            theta = self.theta_channel(xc).squeeze(-1).permute(0, 2, 1)
            phi = self.phi_channel(xc).squeeze(-1)
            gc = torch.matmul(theta, phi)  # (B, C, C)
            gc_in = gc.permute(0, 2, 1).unsqueeze(-1)
            gc_out = gc.unsqueeze(-1)
            gc_joint = self.gg_channel(torch.cat((gc_in, gc_out), 1))
            g_xc = torch.mean(self.gx_channel(xc), dim=1, keepdim=True)
            w_yc = self.W_channel(torch.cat((g_xc, gc_joint), 1)).transpose(1, 2)
            x = F.sigmoid(w_yc) * x
        return x

"""1D ConvNeXt-V2 ECG encoder (Woo et al. 2023, adapted to 12-lead signals as in ESI).

Stem: Conv1d k=4 s=4 + LayerNorm. Four stages separated by three downsampling layers
(LayerNorm + Conv1d k=2 s=2). Each block: depthwise Conv1d k=7 (pad 3) -> LayerNorm ->
Linear 4x -> GELU -> GRN -> Linear, residual with optional drop path. A 10 s record at
100 Hz (1000 samples) gives T' = 1000 / 32 = 31 time steps; at 500 Hz (5000) 156.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

#: depths and widths of the four stages.
VARIANTS = {
    "small": ((1, 1, 2, 1), (24, 48, 96, 192)),  # quick profile: fast on CPU
    "tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "base": ((3, 3, 27, 3), (128, 256, 512, 1024)),
}


class LayerNormChannelsFirst(nn.Module):
    """LayerNorm over the channel axis of a (B, C, T) tensor."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x):
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class GRN(nn.Module):
    """Global response normalisation over time, for channels-last (B, T, C) input."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, dim))
        self.eps = eps

    def forward(self, x):
        gx = torch.norm(x, p=2, dim=1, keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + self.eps)
        return self.gamma * (x * nx) + self.beta + x


def drop_path(x, p: float, training: bool):
    """Stochastic depth: drop whole residual branches per sample."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class Block(nn.Module):
    def __init__(self, dim: int, drop_path: float = 0.0):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.grn = GRN(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.drop_path = drop_path

    def forward(self, x):  # (B, C, T)
        y = self.dwconv(x).transpose(1, 2)
        y = self.pwconv2(self.grn(self.act(self.pwconv1(self.norm(y)))))
        return x + drop_path(y.transpose(1, 2), self.drop_path, self.training)


class ConvNeXt1D(nn.Module):
    """1D ConvNeXt-V2. ``forward_features`` gives the (B, T', dim) sequence, ``forward`` the pooled (B, dim)."""

    def __init__(self, variant: str = "small", in_channels: int = 12, drop_path: float = 0.0):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown ConvNeXt1D variant {variant!r}; choose one of {sorted(VARIANTS)}")
        depths, dims = VARIANTS[variant]
        self.variant = variant
        self.in_channels = in_channels
        self.dim = dims[-1]
        self.downsample = nn.ModuleList()
        self.downsample.append(
            nn.Sequential(nn.Conv1d(in_channels, dims[0], kernel_size=4, stride=4), LayerNormChannelsFirst(dims[0]))
        )
        for i in range(3):
            self.downsample.append(
                nn.Sequential(LayerNormChannelsFirst(dims[i]), nn.Conv1d(dims[i], dims[i + 1], kernel_size=2, stride=2))
            )
        n = sum(depths)
        rates = [drop_path * i / max(n - 1, 1) for i in range(n)]
        self.stages = nn.ModuleList()
        k = 0
        for i, depth in enumerate(depths):
            self.stages.append(nn.Sequential(*[Block(dims[i], rates[k + j]) for j in range(depth)]))
            k += depth
        self.norm = nn.LayerNorm(self.dim, eps=1e-6)  # on the feature sequence
        self.head_norm = nn.LayerNorm(self.dim, eps=1e-6)  # after global average pooling
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Conv1d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, T) -> (B, T', dim), the time steps before pooling (after a final LayerNorm)."""
        if x.ndim != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (batch, {self.in_channels}, samples), got {tuple(x.shape)}")
        if x.shape[-1] < 32:
            raise ValueError(f"input has {x.shape[-1]} samples; ConvNeXt1D needs at least 32 (total stride)")
        for down, stage in zip(self.downsample, self.stages):
            x = stage(down(x))
        return self.norm(x.transpose(1, 2))

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """(B, T', dim) -> (B, dim): global average over time, then LayerNorm."""
        return self.head_norm(features.mean(dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.forward_features(x))


def ecg_encoder(variant: str = "small", in_channels: int = 12, drop_path: float = 0.0) -> ConvNeXt1D:
    """A fresh 1D ConvNeXt-V2 ECG encoder."""
    return ConvNeXt1D(variant, in_channels=in_channels, drop_path=drop_path)


def n_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

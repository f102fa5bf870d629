"""A small 1-D U-Net for per-sample labelling of signals (ALFRED's delineator)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _Block(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int):
        super().__init__(
            nn.Conv1d(c_in, c_out, k, padding=k // 2, bias=False), nn.BatchNorm1d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv1d(c_out, c_out, k, padding=k // 2, bias=False), nn.BatchNorm1d(c_out),
            nn.ReLU(inplace=True),
        )


class UNet1D(nn.Module):
    """A small 1-D U-Net: (batch, in_channels, n) → logits (batch, n_classes, n).

    ``depth`` poolings by 2; level ``i`` has ``base·(i+1)`` channels (linear growth keeps it fast
    on a CPU), the bottleneck ``base·(depth+1)``. Any length works: the input is padded
    (edge values) to a multiple of ``2**depth`` and the output cropped back.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 4, base: int = 16, depth: int = 4,
                 kernel: int = 7):
        super().__init__()
        self.config = dict(in_channels=in_channels, n_classes=n_classes, base=base, depth=depth,
                           kernel=kernel)
        self.depth = depth
        chans = [base * (i + 1) for i in range(depth + 1)]
        self.down = nn.ModuleList()
        c = in_channels
        for i in range(depth):
            self.down.append(_Block(c, chans[i], kernel))
            c = chans[i]
        self.bottom = _Block(c, chans[depth], kernel)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in reversed(range(depth)):
            self.up.append(nn.ConvTranspose1d(chans[i + 1], chans[i], 2, stride=2))
            self.dec.append(_Block(2 * chans[i], chans[i], kernel))
        self.head = nn.Conv1d(chans[0], n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[-1]
        mult = 2 ** self.depth
        pad = (-n) % mult
        if pad:
            x = F.pad(x, (0, pad), mode="replicate")
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool1d(x, 2)
        x = self.bottom(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            x = dec(torch.cat([up(x), skip], dim=1))
        return self.head(x)[..., :n]

"""Networks shared across the papers: the 1D ConvNeXt-V2 ECG encoder (ESI, clinical transfer) and
the 1D U-Net (ALFRED's delineator)."""
from __future__ import annotations

from .convnext import VARIANTS, ConvNeXt1D, ecg_encoder, n_parameters
from .unet import UNet1D

__all__ = ["VARIANTS", "ConvNeXt1D", "ecg_encoder", "n_parameters", "UNet1D"]

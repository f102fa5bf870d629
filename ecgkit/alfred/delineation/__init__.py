"""ALFRED step 1: a 1-D U-Net that labels every sample of every lead as P, QRS, T or none.

Classes (:data:`CLASSES`): 0 none, 1 P wave, 2 QRS complex, 3 T wave.

Leads are processed independently, as a batch of single-channel signals, so any lead set and any
number of leads works (one included; all-NaN columns are missing leads and are skipped). The
network sees 500 Hz input (:data:`FS`); other rates are resampled with
:func:`ecgkit.data.preprocess.ecg_resample` and the fiducials are mapped back to the input rate.
Each lead is standardised (mean removed, divided by its standard deviation, floored at 0.01 mV).

**Beats.** Which QRS complexes are beats is not left to a vote over the leads' U-Net labels (a
few noisy leads outvote nothing on real ECGs and add beats): :func:`delineate` anchors the beats
on a QRS detector run on one multi-lead QRS-energy signal (:mod:`ecgkit.alfred.beats`) and keeps
the U-Net for the wave boundaries (:func:`align_beats`).

Ground truth comes from the synthetic cohort's per-lead fiducials (:func:`fiducials_to_mask`).
**T onset:** the generator writes no ``t_on``, so the T label starts at
``t_peak − (t_off − t_peak)`` (the T wave mirrored about its peak), but never before ``qrs_off``
(the ST segment is labelled T only when the T wave is that wide). Predicted T onsets are therefore
reported (``t_on``) but not scored.

The quick-profile weights ship with the package (``ecgkit/resources/delineator-quick``,
safetensors, about 0.3 MB) so that nothing trains on first use; ``python -m ecgkit.alfred.delineation
train --profile quick --out ecgkit/resources/delineator-quick`` retrains them from scratch and
records their scores on held-out synthetic records (:func:`held_out_scores`). Other weights are
cached as safetensors under ``cache_dir("models", "delineator-<key>")``, keyed by the training
configuration, :data:`ecgkit.versions.VERSIONS` (generator and delineator) and the seed
(:func:`load_delineator`); a profile with neither shipped nor cached weights is trained once, with
a message saying so.

One module per job: :mod:`.labels` (ground truth ↔ per-sample labels), :mod:`.training`,
:mod:`.inference` (:func:`standardise`, :func:`delineate`, :func:`align_beats`), :mod:`.scoring`
(:func:`score_delineation`, NeuroKit2 for comparison); this module holds the settings, the cache,
loading and the command line, and re-exports the rest. The network is :class:`ecgkit.nn.UNet1D`.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...cache import key as cache_key
from ...config import ProfileSettings, cache_dir
from ...versions import VERSIONS
from ...vocabulary import LEADS  # noqa: F401 (re-exported)
from ...nn import UNet1D  # noqa: F401 (re-exported)
from .inference import (P_SHARE, SPLIT_RR, WEAK_ENERGY, WEAK_SHARE, align_beats,  # noqa: F401
                        delineate, standardise)
from .labels import (CLASSES, FS, GAP_MS, MIN_MS, OUTPUT_COLUMNS, fiducials_to_mask,  # noqa: F401
                     mask_to_fiducials)
from .scoring import SCORED, _empty, neurokit_fiducials, score_delineation  # noqa: F401
from .training import _augment_batch, train_delineator, train_step  # noqa: F401

__all__ = [
    "CLASSES", "FS", "DELINEATOR_VERSION", "PROFILES", "OUTPUT_COLUMNS", "SCORED",
    "fiducials_to_mask", "mask_to_fiducials", "UNet1D", "standardise", "train_delineator",
    "train_step", "load_delineator", "save_delineator", "read_delineator", "delineator_key",
    "delineator_config", "shipped_delineator_dir", "held_out_records", "held_out_scores",
    "delineate", "score_delineation", "neurokit_fiducials", "align_beats", "P_SHARE", "WEAK_SHARE",
    "SPLIT_RR", "WEAK_ENERGY", "DelineatorSettings", "compare_with_neurokit",
]

#: Bump when the model, the labels or the training loop change (part of the cache key).
DELINEATOR_VERSION = VERSIONS["delineator"]


@dataclass(frozen=True)
class DelineatorSettings(ProfileSettings):
    """The training configuration of the delineator (defaults: the quick profile's)."""

    window: int = 2048
    augment: bool = True
    records_per_batch: int = 4
    lr: float = 3e-3
    base: int = 8
    depth: int = 4
    kernel: int = 7
    n_records: int = 300
    epochs: int = 10

    PROFILES = {"full": dict(n_records=2000, epochs=15)}
    SMOKE = dict(n_records=8, epochs=1)   # make smoke: the full architecture, 8 synthetic records, 1 epoch


#: Training profiles for :func:`load_delineator`.
PROFILES = {name: DelineatorSettings.for_profile(name).as_dict() for name in ("quick", "full")}


# --------------------------------------------------------------------------------------------
# Saving and the cache
# --------------------------------------------------------------------------------------------

def delineator_key(config: dict) -> str:
    """Cache key: the training config and the generator's version (the delineator's own version
    is the key's version)."""
    return cache_key("delineator", {**config, "generator": VERSIONS["synthetic"]}, DELINEATOR_VERSION)


def save_delineator(model: UNet1D, folder: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` (architecture and ``extra``) to ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(suffix=".safetensors", dir=folder)
    os.close(fd)
    save_file(state, tmp)
    meta = {"model": model.config, **(extra or {})}
    (folder / "config.json.tmp").write_text(json.dumps(meta, indent=1, default=str))
    os.replace(tmp, folder / "model.safetensors")
    os.replace(folder / "config.json.tmp", folder / "config.json")
    return folder / "model.safetensors"


def read_delineator(folder: str | os.PathLike) -> UNet1D:
    """A model written by :func:`save_delineator` (safetensors only; no pickle), in eval mode."""
    from safetensors.torch import load_file

    folder = Path(folder)
    meta = json.loads((folder / "config.json").read_text())
    model = UNet1D(**meta["model"])
    model.load_state_dict(load_file(folder / "model.safetensors"))
    model.eval()
    model.meta = meta
    return model


def delineator_config(profile: str | None = None, seed: int = 0, **overrides) -> dict:
    """The training configuration of a profile's delineator (:class:`DelineatorSettings`)."""
    return {**DelineatorSettings.for_profile(profile, **overrides).as_dict(), "seed": int(seed)}


def shipped_delineator_dir(profile: str = "quick") -> Path:
    """Where the package keeps a profile's trained weights (only ``quick`` ships)."""
    return Path(__file__).resolve().parents[2] / "resources" / f"delineator-{profile}"


def load_delineator(profile: str | None = None, seed: int = 0, progress: bool = True,
                    **overrides) -> UNet1D:
    """The delineator for a profile (:data:`PROFILES`): the shipped weights when their key matches
    this configuration, else the cache, else trained once (with a message) and cached."""
    from ...config import profile as active_profile

    name = active_profile(profile)
    config = delineator_config(name, seed, **overrides)
    key = delineator_key(config)
    shipped = shipped_delineator_dir(name)
    if (shipped / "config.json").is_file():
        if json.loads((shipped / "config.json").read_text()).get("key") == key:
            return read_delineator(shipped)
    folder = cache_dir("models", f"delineator-{key}")
    if (folder / "model.safetensors").is_file() and (folder / "config.json").is_file():
        return read_delineator(folder)
    print(f"training the {name}-profile delineator once (no shipped or cached weights for key "
          f"{key}; {config['n_records']} synthetic records, {config['epochs']} epochs); "
          f"`python -m ecgkit.alfred.delineation train --profile {name}` does this ahead of time",
          flush=True)
    t = time.perf_counter()
    model = train_delineator(progress=progress, **config)
    seconds = time.perf_counter() - t
    save_delineator(model, folder, {"key": key, "train": config, "history": model.history,
                                    "train_seconds": seconds, "profile": name})
    return read_delineator(folder)


_HELD_OUT = [("NORM",), ("STACH",), ("SBRAD",), ("AFIB",), ("CLBBB",), ("CRBBB",), ("1AVB",),
             ("LVH",), ("IMI",), ("ISCAL",)]


def held_out_records(n_records: int = 20, seed: int = 1000):
    """Synthetic 12-lead records outside every training cohort (a mix of conditions and rhythms,
    seeds ``seed…``): signals (records × 5000 × 12) and the per-lead true fiducials."""
    from ...data.synthetic import simulate_ecg

    signals, truths = [], []
    for i in range(n_records):
        sig, fid = simulate_ecg(_HELD_OUT[i % len(_HELD_OUT)], seed=seed + i)
        signals.append(sig)
        truths.append(fid[fid["lead"] != "all"].reset_index(drop=True))
    return np.stack(signals), truths


def held_out_scores(model: UNet1D, n_records: int = 20, seed: int = 1000) -> pd.DataFrame:
    """:func:`score_delineation` of ``model`` on :func:`held_out_records`."""
    signals, truths = held_out_records(n_records, seed)
    return score_delineation(delineate(signals, FS, model=model), truths, FS)


def _train_command(argv=None) -> int:
    """``python -m ecgkit.alfred.delineation train``: retrain a profile's delineator from scratch."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m ecgkit.alfred.delineation train",
                                     description="Train a profile's delineator from scratch on the "
                                     "synthetic cohort, score it on held-out synthetic records and "
                                     "write model.safetensors + config.json.")
    parser.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="folder to write (default: the cache folder of its key)")
    args = parser.parse_args(argv)
    config = delineator_config(args.profile, args.seed)
    key = delineator_key(config)
    out = Path(args.out) if args.out else cache_dir("models", f"delineator-{key}")
    t = time.perf_counter()
    model = train_delineator(progress=True, **config)
    seconds = time.perf_counter() - t
    scores = held_out_scores(model)
    print(scores.round(3).to_string())
    save_delineator(model, out, {"key": key, "train": config, "history": model.history,
                                 "train_seconds": round(seconds, 1), "profile": args.profile,
                                 "held_out": {"n_records": 20, "seed": 1000,
                                              "scores": scores.round(4).to_dict(orient="index")}})
    print(f"delineator {key} ({args.profile}) written to {out} after {seconds:.0f} s of training")
    return 0

def main(argv=None) -> int:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "train":
        print("usage: python -m ecgkit.alfred.delineation train [--profile quick|full] [--seed N] [--out DIR]")
        return 2
    return _train_command(argv[1:])

def compare_with_neurokit(n_records: int = 20, seed: int = 1000, model: UNet1D | None = None,
                          batch_size: int = 64) -> dict:
    """The U-Net against NeuroKit2 (``dwt``, lead by lead) on ``n_records`` held-out synthetic
    records (seeds ``seed…``, outside training): ``scores`` (:func:`score_delineation` of each
    against the generator's ground truth), the seconds each took, and NeuroKit2's failed leads."""
    model = model if model is not None else load_delineator("quick", progress=False)
    signals, truths = held_out_records(n_records, seed)
    delineate(signals[:1], FS, model=model)  # warm-up
    t = time.perf_counter()
    unet = delineate(signals, FS, model=model, batch_size=batch_size)
    unet_s = time.perf_counter() - t
    t = time.perf_counter()
    nk = [neurokit_fiducials(s, FS, method="dwt") for s in signals]
    nk_s = time.perf_counter() - t
    return {"records": n_records, "unet_seconds": unet_s, "neurokit_seconds": nk_s,
            "nk_failed_leads": sum(12 - f["lead"].nunique() if len(f) else 12 for f in nk),
            "scores": {"unet": score_delineation(unet, truths, FS),
                       "neurokit": score_delineation(nk, truths, FS)}}

"""U-Net delineation (ALFRED step 1) against NeuroKit2: speed and accuracy on synthetic ECGs.

Both delineate the same ``n_records`` 12-lead synthetic records (10 s, 500 Hz, typical noise;
a mix of conditions and rhythms from :func:`ecgkit.data.synthetic.simulate_ecg`): the U-Net in batches,
NeuroKit2 (``dwt``) lead by lead. Accuracy is :func:`score_delineation` against the generator's
per-lead ground truth. The model is the shipped quick-profile delineator.
"""
from __future__ import annotations

import os

import pandas as pd


def _summary(score: pd.DataFrame, prefix: str) -> dict:
    out = {}
    for fid, row in score.iterrows():
        out[f"{prefix}_{fid}_sens"] = float(row["sensitivity"])
        out[f"{prefix}_{fid}_ppv"] = float(row["ppv"])
        out[f"{prefix}_{fid}_err_ms"] = float(row["mean_error_ms"])
        out[f"{prefix}_{fid}_sd_ms"] = float(row["sd_error_ms"])
    return out


def run(n_records: int = 20, seed: int = 1000, model=None, return_scores: bool = False,
        cache: bool = False) -> dict:
    """Time and score both methods on ``n_records`` records (seeds ``seed…``, outside training):
    :func:`ecgkit.alfred.delineation.compare_with_neurokit`, summarised (``cache``: as measured
    the first time, see ``measured_at``)."""
    from ..alfred.delineation import compare_with_neurokit

    c = compare_with_neurokit(n_records, seed, model, cache=cache)
    s_unet, s_nk = c["scores"]["unet"], c["scores"]["neurokit"]
    result = {"benchmark": "12-lead delineation: U-Net (batched) vs neurokit2 dwt",
              "records": n_records, "unet_ecg_per_s": n_records / c["unet_seconds"],
              "neurokit_ecg_per_s": n_records / c["neurokit_seconds"],
              "speedup": c["neurokit_seconds"] / c["unet_seconds"],
              "cpus": os.cpu_count(), "nk_failed_leads": c["nk_failed_leads"],
              "measured_at": c["measured_at"]}
    result.update(_summary(s_unet, "unet"))
    result.update(_summary(s_nk, "nk"))
    if return_scores:
        result["scores"] = {"unet": s_unet, "neurokit": s_nk}
    return result


if __name__ == "__main__":  # pragma: no cover
    r = run(return_scores=True)
    scores = r.pop("scores")
    print({k: v for k, v in r.items() if "_" not in k or k.endswith("per_s") or k == "speedup"})
    for name, s in scores.items():
        print(name)
        print(s.round(3).to_string())

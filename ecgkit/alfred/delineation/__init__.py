"""ALFRED step 1: a 1-D U-Net that labels every sample of every lead as P, QRS, T or none.

Classes (:data:`CLASSES`): 0 none, 1 P wave, 2 QRS complex, 3 T wave; a wave occupies
``[onset, offset)`` (an offset is the first sample after the wave, as in the cardiologists'
annotations).

Leads are processed independently, as a batch of single-channel signals, so any lead set and any
number of leads works (one included; all-NaN columns are missing leads and are skipped). The
network sees its own rate (``model.fs``: 250 Hz for the delineator learnt from cardiologists, 500 Hz
for weights that do not say); other rates are resampled with
:func:`ecgkit.data.preprocess.ecg_resample` and the fiducials mapped back to the input rate.
Each lead is standardised (mean removed, divided by its standard deviation, floored at 0.01 mV),
and the logits are corrected for the class weights of training (:func:`.inference.logit_adjustment`).

**Beats.** Which QRS complexes are beats is not left to a vote over the leads' U-Net labels (a
few noisy leads outvote nothing on real ECGs and add beats): :func:`delineate` anchors the beats
on a QRS detector run on one multi-lead QRS-energy signal (:mod:`ecgkit.alfred.beats`) and keeps
the U-Net for the wave boundaries (:func:`align_beats`).

**Training data.** The wave boundaries cardiologists marked lead by lead on real ECGs
(:mod:`ecgkit.data.delineation`: LUDB, the QT Database; ``$ECGKIT_DELINEATION``), optionally with
synthetic records (``synthetic_records``; their generator's fiducials, :func:`fiducials_to_mask`).
:func:`cross_validate` scores a configuration by record-wise folds (:mod:`.crossval`); the train
command records those held-out scores, the folds and the fold models beside the weights.

The quick-profile weights ship with the package (``ecgkit/resources/delineator-quick``,
safetensors, with the five fold models) so that nothing trains on first use; ``python -m
ecgkit.alfred.delineation train --profile quick --data DIR --out ecgkit/resources/delineator-quick``
retrains them from scratch. The previous version's weights, learnt from the synthetic cohort
only, ship as ``delineator-synthetic`` for comparison. Other weights are cached as safetensors
under ``cache_dir("models", "delineator-<key>")``, keyed by the training configuration, the data's
fingerprint, :data:`ecgkit.versions.VERSIONS` and the seed (:func:`load_delineator`); a profile
with neither shipped nor cached weights is trained once, with a message saying so.

One module per job: :mod:`.labels` (ground truth ↔ per-sample labels), :mod:`.training`,
:mod:`.inference` (:func:`standardise`, :func:`delineate`, :func:`align_beats`), :mod:`.scoring`
(:func:`score_delineation`, NeuroKit2 for comparison), :mod:`.crossval` (folds, scoring against
cardiologists, the published rows); this module holds the settings, the cache, loading and the
command line, and re-exports the rest. The network is :class:`ecgkit.nn.UNet1D`.
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
                        delineate, model_identity, standardise)
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
    "SPLIT_RR", "WEAK_ENERGY", "DelineatorSettings", "compare_with_neurokit", "cross_validate",
    "cross_validated", "read_fold_models", "training_data", "train_on", "scores_frame",
]

#: Bump when the model, the labels or the training loop change (part of the cache key).
DELINEATOR_VERSION = VERSIONS["delineator"]


@dataclass(frozen=True)
class DelineatorSettings(ProfileSettings):
    """The training configuration of the delineator (defaults: the quick profile's).

    It learns from the cardiologists' boundaries of ``$ECGKIT_DELINEATION`` (LUDB, QT Database)
    plus ``synthetic_records`` records of the synthetic cohort (0: none), at ``fs`` Hz; ``folds``
    record-wise cross-validation folds give the held-out scores; ``max_records`` (0: all) keeps
    the first records of each database only (toy runs). Without annotated data it learns
    from the synthetic cohort alone (``synthetic_records``, at least 300)."""

    window: int = 1024
    augment: bool = True
    records_per_batch: int = 6
    lr: float = 3e-3
    base: int = 8
    depth: int = 4
    kernel: int = 7
    fs: float = 250.0
    synthetic_records: int = 0
    epochs: int = 20
    folds: int = 5
    max_records: int = 0

    PROFILES = {"full": dict(base=16, epochs=60)}
    # make smoke: the full architecture on 8 annotated records, 1 epoch, 2 folds
    SMOKE = dict(max_records=8, epochs=1, folds=2)


#: Training profiles for :func:`load_delineator`.
PROFILES = {name: DelineatorSettings.for_profile(name).as_dict() for name in ("quick", "full")}


# --------------------------------------------------------------------------------------------
# Saving and the cache
# --------------------------------------------------------------------------------------------

def delineator_key(config: dict, data: str) -> str:
    """Cache key: the training config and the data it learns from (``data``: the fingerprint of
    the annotated ECGs, :func:`training_data`); the delineator's version is the key's version."""
    return cache_key("delineator", {**config, "data": data, "generator": VERSIONS["synthetic"]},
                     DELINEATOR_VERSION)


def save_delineator(model: UNet1D, folder: str | os.PathLike, extra: dict | None = None,
                    name: str = "model") -> Path:
    """Write ``<name>.safetensors`` and (for ``model``) ``config.json`` (architecture, rate and
    ``extra``) to ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(suffix=".safetensors", dir=folder)
    os.close(fd)
    save_file(state, tmp, metadata={"fs": str(float(getattr(model, "fs", FS)))})
    os.replace(tmp, folder / f"{name}.safetensors")
    if name == "model":
        meta = {"model": model.config, "fs": float(getattr(model, "fs", FS)), **(extra or {})}
        if getattr(model, "class_weights", None) is not None:
            meta["class_weights"] = list(model.class_weights)
        (folder / "config.json.tmp").write_text(json.dumps(meta, indent=1, default=str))
        os.replace(folder / "config.json.tmp", folder / "config.json")
    return folder / f"{name}.safetensors"


def read_delineator(folder: str | os.PathLike, name: str = "model") -> UNet1D:
    """A model written by :func:`save_delineator` (safetensors only; no pickle), in eval mode,
    with ``model.fs`` (its rate: 500 Hz for weights that do not say) and ``model.meta``."""
    from safetensors.torch import load_file

    folder = Path(folder)
    meta = json.loads((folder / "config.json").read_text())
    model = UNet1D(**meta["model"])
    model.load_state_dict(load_file(folder / f"{name}.safetensors"))
    model.eval()
    model.meta = meta
    model.fs = float(meta.get("fs", FS))
    model.class_weights = meta.get("class_weights")   # None: logits used as they are
    model.folder = folder
    return model


def read_fold_models(folder: str | os.PathLike) -> dict[int, UNet1D]:
    """The cross-validation models written beside a delineator (``fold-<k>.safetensors``)."""
    folder = Path(folder)
    meta = json.loads((folder / "config.json").read_text())
    return {int(k): read_delineator(folder, f"fold-{k}") for k in meta.get("cross_validation", {}).get("models", [])}


def delineator_config(profile: str | None = None, seed: int = 0, **overrides) -> dict:
    """The training configuration of a profile's delineator (:class:`DelineatorSettings`)."""
    return {**DelineatorSettings.for_profile(profile, **overrides).as_dict(), "seed": int(seed)}


def shipped_delineator_dir(profile: str = "quick") -> Path:
    """Where the package keeps a profile's trained weights (only ``quick`` ships; ``synthetic``
    is the earlier quick delineator, trained on the synthetic cohort only, kept for comparison)."""
    return Path(__file__).resolve().parents[2] / "resources" / f"delineator-{profile}"


def training_data(config: dict, folder=None):
    """The annotated ECGs (``folder``, default ``$ECGKIT_DELINEATION``) and the fingerprint the
    key uses: that of the annotated ECGs, or ``"synthetic"`` when there are none."""
    from ...data.delineation import fingerprint, load_annotated

    ecgs = load_annotated(folder)
    if config.get("max_records"):
        keep = set()
        for db in dict.fromkeys(e.database for e in ecgs):
            keep |= set(list(dict.fromkeys(e.group for e in ecgs if e.database == db))[:config["max_records"]])
        ecgs = [e for e in ecgs if e.group in keep]
    return ecgs, (fingerprint(ecgs) if ecgs else "synthetic")


def train_on(ecgs, config: dict, progress: bool = True, exclude=()) -> UNet1D:
    """Train a delineator with ``config`` on the annotated ``ecgs`` (less the records of
    ``exclude``) plus ``config["synthetic_records"]`` synthetic records; on the synthetic cohort
    alone (at least 300 records) when there are no annotated ECGs."""
    from .training import annotated_items, synthetic_items

    fs = config["fs"]
    items = annotated_items([e for e in ecgs if e.group not in set(exclude)], fs)
    n_synthetic = config["synthetic_records"] if items else max(300, config["synthetic_records"])
    items += synthetic_items(n_synthetic, config["seed"], fs, progress)
    return train_delineator(data=items, progress=progress, **{k: v for k, v in config.items()
                                                               if k not in ("synthetic_records", "folds", "max_records")})


def load_delineator(profile: str | None = None, seed: int = 0, progress: bool = True,
                    **overrides) -> UNet1D:
    """The delineator for a profile (:data:`PROFILES`): the shipped weights when they were trained
    with this configuration, else the cache (keyed by configuration and data), else trained once
    on ``$ECGKIT_DELINEATION`` (with a message) and cached."""
    from ...config import profile as active_profile

    name = active_profile(profile)
    config = delineator_config(name, seed, **overrides)
    shipped = shipped_delineator_dir(name)
    if (shipped / "config.json").is_file():
        meta = json.loads((shipped / "config.json").read_text())
        if meta.get("key") == delineator_key(config, meta.get("data", {}).get("fingerprint", "")):
            return read_delineator(shipped)
    ecgs, data = training_data(config)
    key = delineator_key(config, data)
    folder = cache_dir("models", f"delineator-{key}")
    if (folder / "model.safetensors").is_file() and (folder / "config.json").is_file():
        return read_delineator(folder)
    source = (f"{len(ecgs)} annotated ECGs of $ECGKIT_DELINEATION" if ecgs else
              "the synthetic cohort ($ECGKIT_DELINEATION is not set)")
    print(f"training the {name}-profile delineator once (no shipped or cached weights for key "
          f"{key}; {source}, {config['epochs']} epochs); `python -m ecgkit.alfred.delineation "
          f"train --profile {name}` does this ahead of time", flush=True)
    t = time.perf_counter()
    model = train_on(ecgs, config, progress)
    save_delineator(model, folder, {"key": key, "train": config, "history": model.history,
                                    "train_seconds": time.perf_counter() - t, "profile": name,
                                    "data": _data_record(ecgs, data)})
    return read_delineator(folder)


def cross_validated(profile: str | None = None, seed: int = 0, progress: bool = True, **overrides):
    """``(folds, fold models, model)`` of a profile's delineator: the record-wise folds and the
    model trained without each fold (:func:`cross_validate`), and the model trained on every
    record. The shipped delineator carries its fold models; another profile's are trained once
    beside its cached weights (with a message). ``None`` when the delineator was trained on the
    synthetic cohort only (there is nothing to cross-validate)."""
    model = load_delineator(profile, seed, progress, **overrides)
    folder = model.folder
    cv = model.meta.get("cross_validation")
    have = cv is not None and all((folder / f"fold-{k}.safetensors").is_file() for k in cv["models"])
    if not have:
        config = model.meta.get("train") or delineator_config(profile, seed, **overrides)
        ecgs, data = training_data(config)
        if not ecgs or data != model.meta.get("data", {}).get("fingerprint"):
            return None
        print(f"cross-validating the delineator {model.meta.get('key')} once ({config['folds']} folds; "
              "`python -m ecgkit.alfred.delineation train` does this ahead of time)", flush=True)
        cv = cross_validate(ecgs, config, progress, out=folder)
        meta = {**model.meta, "cross_validation": cv}
        (folder / "config.json").write_text(json.dumps(meta, indent=1, default=str))
    return cv["folds"], read_fold_models(folder), model


def _data_record(ecgs, data: str) -> dict:
    from ...data.delineation import describe_annotated

    table = describe_annotated(ecgs)
    return {"fingerprint": data,
            "databases": {db: {k: (int(v) if k in ("records", "stretches", "leads") else round(float(v), 2))
                               for k, v in row.items()} for db, row in table.iterrows()}}


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


def _train_job(args):
    """One training of :func:`cross_validate` / the train command (a worker process: one thread)."""
    import torch

    ecgs, config, exclude, threads = args
    if threads:
        torch.set_num_threads(threads)
    return train_on(ecgs, config, progress=False, exclude=exclude)


def _train_many(ecgs, config: dict, excludes: list, workers: int = 1, progress: bool = True,
                progress_dir: Path | None = None) -> list:
    """One model per entry of ``excludes`` (records left out), ``workers`` processes at a time."""
    if workers <= 1:
        return [train_on(ecgs, config, progress, exclude=ex) for ex in excludes]
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing as mp

    jobs = [(ecgs, config, ex, 1) for ex in excludes]
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        models = []
        for i, model in enumerate(pool.map(_train_job, jobs)):
            if progress:
                print(f"trained {i + 1}/{len(jobs)} ({model.history[-1]['seconds']:.0f} s, "
                      f"final loss {model.history[-1]['loss']:.4f})", flush=True)
            if i == 0 and progress_dir is not None:     # the first model, for a look before the rest
                save_delineator(model, progress_dir, name="first")
            models.append(model)
    return models


def cross_validate(ecgs, config: dict, progress: bool = True, out: Path | None = None,
                   workers: int = 1, final: bool = False) -> dict:
    """Train one model per record-wise fold (:func:`~.crossval.record_folds`, ``config["folds"]``
    folds, seeded by ``config["seed"]``) without that fold's records, delineate the fold with it,
    and score every ECG against its cardiologists (:func:`~.crossval.score_against_cardiologists`).
    The fold models are written to ``out`` (``fold-<k>.safetensors``) when given; ``workers``
    trainings run at once (one thread each); ``final``: also train the model on every record
    (returned as ``"final"``). Returns the folds, the scores (per database and fiducial) and the
    seconds taken."""
    from .crossval import out_of_fold, record_folds, score_against_cardiologists

    k = int(config["folds"])
    folds = record_folds(ecgs, k, config["seed"])
    excludes = [{g for g, f in folds.items() if f == fold} for fold in range(1, k + 1)]
    t = time.perf_counter()
    if progress:
        print(f"cross-validation: {k} folds of {len(folds)} records, {workers} at a time", flush=True)
    # the model on every record first: the rest of the work can start from it
    trained = _train_many(ecgs, config, ([set()] if final else []) + excludes, workers, progress, out)
    if final:
        final_model, trained = trained[0], trained[1:]
    models = dict(zip(range(1, k + 1), trained[:k]))
    if out is not None:
        for fold, model in models.items():
            save_delineator(model, out, name=f"fold-{fold}")
    scores = score_against_cardiologists(ecgs, out_of_fold(ecgs, folds, models))
    result = {"folds": folds, "models": list(models), "seconds": round(time.perf_counter() - t, 1),
              "scores": _scores_record(scores)}
    if final:
        result["final"] = final_model
    return result


def _scores_record(scores: pd.DataFrame) -> dict:
    return {f"{db}/{fid}": {k: (round(float(v), 4) if isinstance(v, float) else int(v))
                            for k, v in row.items()} for (db, fid), row in scores.iterrows()}


def scores_frame(record: dict) -> pd.DataFrame:
    """A recorded scores dict (``cross_validation["scores"]``) back as a (database, fiducial) frame."""
    rows = [{"database": k.split("/")[0], "fiducial": k.split("/")[1], **v} for k, v in record.items()]
    return pd.DataFrame(rows).set_index(["database", "fiducial"])


def _train_command(argv=None) -> int:
    """``python -m ecgkit.alfred.delineation train``: retrain a profile's delineator from scratch."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m ecgkit.alfred.delineation train",
        description="Train a profile's delineator from scratch on ECGs with cardiologists' wave "
        "boundaries (--data, default $ECGKIT_DELINEATION; the synthetic cohort when none), score it "
        "by record-wise cross-validation, then train it on every record and write "
        "model.safetensors, the fold models and config.json (key, data, folds, held-out scores).")
    parser.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", help="a folder of annotated ECGs (default $ECGKIT_DELINEATION)")
    parser.add_argument("--out", help="folder to write (default: the cache folder of its key)")
    parser.add_argument("--no-cv", action="store_true", help="skip the cross-validation")
    parser.add_argument("--workers", type=int, default=1,
                        help="trainings at once, one thread each (default 1: one after the other)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a setting of DelineatorSettings (e.g. synthetic_records=300)")
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.set:            # values as JSON (300, 0.001, false), else text
        name, _, value = item.partition("=")
        try:
            overrides[name] = json.loads(value)
        except ValueError:
            overrides[name] = value
    config = delineator_config(args.profile, args.seed, **overrides)
    ecgs, data = training_data(config, args.data)
    key = delineator_key(config, data)
    out = Path(args.out) if args.out else cache_dir("models", f"delineator-{key}")
    print(f"delineator {key} ({args.profile}): " + (
        f"{len(ecgs)} annotated ECGs ({', '.join(sorted({e.database for e in ecgs}))}) + "
        f"{config['synthetic_records']} synthetic records" if ecgs else "the synthetic cohort"), flush=True)
    extra = {"key": key, "train": config, "profile": args.profile, "data": _data_record(ecgs, data)}
    t = time.perf_counter()
    if ecgs and not args.no_cv:
        cv = cross_validate(ecgs, config, True, out, workers=args.workers, final=True)
        model = cv.pop("final")
        extra["cross_validation"] = cv
        print(scores_frame(cv["scores"]).round(3).to_string(), flush=True)
    else:
        model = train_on(ecgs, config, True)
    seconds = time.perf_counter() - t
    scores = held_out_scores(model)
    save_delineator(model, out, {**extra, "history": model.history, "train_seconds": round(seconds, 1),
                                 "held_out_synthetic": {"n_records": 20, "seed": 1000,
                                                        "scores": scores.round(4).to_dict(orient="index")}})
    print(f"delineator {key} ({args.profile}) written to {out} after {seconds:.0f} s of training"
          + (" (cross-validation included)" if "cross_validation" in extra else ""))
    return 0


def main(argv=None) -> int:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "train":
        print("usage: python -m ecgkit.alfred.delineation train [--profile quick|full] [--seed N] "
              "[--data DIR] [--out DIR] [--no-cv] [--set NAME=VALUE]")
        return 2
    return _train_command(argv[1:])

def compare_with_neurokit(n_records: int = 20, seed: int = 1000, model: UNet1D | None = None,
                          batch_size: int = 64, cache: bool = False) -> dict:
    """The U-Net against NeuroKit2 (``dwt``, lead by lead) on ``n_records`` held-out synthetic
    records (seeds ``seed…``, outside training): ``scores`` (:func:`score_delineation` of each
    against the generator's ground truth), the seconds each took, and NeuroKit2's failed leads.

    With ``cache`` the result (seconds included, as measured then, with ``measured_at``) is kept
    under the key of the model's weights, the records and neurokit2's version (``delineator_comparison``);
    ``make bench`` measures afresh (``cache=False``)."""
    model = model if model is not None else load_delineator("quick", progress=False)

    def compute() -> dict:
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
                "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "scores": {"unet": score_delineation(unet, truths, FS),
                           "neurokit": score_delineation(nk, truths, FS)}}

    if not cache:
        return compute()
    import neurokit2

    from ...cache import build_or_load

    spec = {"records": n_records, "seed": seed, "batch_size": batch_size, "neurokit2": neurokit2.__version__,
            "model": model_identity(model)}

    def build(folder):
        result = compute()
        for name, frame in result.pop("scores").items():
            frame.to_csv(folder / f"{name}.csv")
        (folder / "result.json").write_text(json.dumps(result))

    def load(folder):
        result = json.loads((folder / "result.json").read_text())
        result["scores"] = {name: pd.read_csv(folder / f"{name}.csv", index_col=0) for name in ("unet", "neurokit")}
        return result

    result, k, built = build_or_load("delineator_comparison", spec, build, load)
    print(f"U-Net vs neurokit2 on {n_records} synthetic records: "
          f"{'computed and cached' if built else 'from cache'} (key {k}; timed {result['measured_at']})", flush=True)
    return result

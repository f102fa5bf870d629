"""The chapter's experiments: ESI against its baselines, ablations and curves, per seed.

Every training run is cached (:mod:`ecgkit.esi.train`), so a rerun only evaluates. Results come
as long tables (one row per seed, method, protocol, task and metric) that the notebook pivots.

Settings per profile are in :data:`SETTINGS`; the quick profile uses a small encoder, few epochs,
2 seeds, fine-tunes on the primary task only (real PTB-XL when given) and runs the ablations and
curves with one seed.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import pandas as pd

from ..config import profile as active_profile
from .downstream import (Task, class_prompts, embed, identification, misaligned, probe_task, subsample,
                         supervised_task, zero_shot_task)
from .encoder import ecg_encoder
from .train import ESIConfig, QUICK_PRETRAIN, TrainConfig, fingerprint, pretrain_esi, pretrain_simclr

SETTINGS = {
    "quick": {
        "seeds": 2,
        "pretrain": QUICK_PRETRAIN,
        "finetune": TrainConfig(epochs=6, warmup_epochs=1, decay_every=3, lr=1e-3, batch_size=32),
        "max_pretrain_records": 600,
        "ablation_seeds": 1,
        "sizes": (0.25, 0.5, 1.0),
        "misalignment": (0.0, 0.5, 1.0),
        "finetune_all_tasks": False,
    },
    "full": {
        "seeds": 5,
        "pretrain": TrainConfig(),
        "finetune": TrainConfig(epochs=30, warmup_epochs=5, decay_every=10, lr=1e-4, batch_size=64),
        "max_pretrain_records": None,
        "ablation_seeds": 5,
        "sizes": (0.1, 0.25, 0.5, 1.0),
        "misalignment": (0.0, 0.25, 0.5, 0.75, 1.0),
        "finetune_all_tasks": True,
    },
}


def settings(profile: str | None = None, **overrides) -> dict:
    """The profile's settings with ``overrides`` (None values ignored)."""
    base = dict(SETTINGS[active_profile(profile)])
    base.update({k: v for k, v in overrides.items() if v is not None})
    return base


# ----------------------------------------------------------------------------- pretraining set


@dataclass
class Corpus:
    """The ECG-text pairs ESI pretrains on, with plain-label texts for the "w/o CQA" ablation."""

    signals: np.ndarray
    texts: list
    plain: list
    ids: list          # "dataset:ecg_id"
    sources: dict      # dataset name -> records taken

    @property
    def data_id(self) -> str:
        return fingerprint(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows) -> "Corpus":
        rows = np.asarray(rows)
        return Corpus(self.signals[rows], [self.texts[i] for i in rows], [self.plain[i] for i in rows],
                      [self.ids[i] for i in rows], dict(self.sources))


def pretraining_corpus(datasets: Sequence, texts: dict, plain: dict, limit: int | None = None,
                       seed: int = 0) -> Corpus:
    """The training folds (1–8) of each dataset, in the order given, with their texts.

    ``texts`` / ``plain``: dataset name -> Series (record id -> text). With ``limit``, datasets
    are taken in order until the limit; the last one is subsampled (seeded).
    """
    signals, all_texts, all_plain, ids, sources = [], [], [], [], {}
    room = limit if limit is not None else float("inf")
    for ds in datasets:
        rows = ds.part("train")
        if room <= 0:
            break
        if len(rows) > room:
            rows = np.sort(np.random.default_rng(seed).choice(rows, size=int(room), replace=False))
        records = ds.meta.index[rows]
        missing = [r for r in records if r not in texts[ds.name].index]
        if missing:
            raise KeyError(f"{ds.name}: no text for records {missing[:5]} ({len(missing)} in all)")
        signals.append(np.asarray(ds.signals[rows], dtype=np.float32))
        all_texts += texts[ds.name].loc[records].tolist()
        all_plain += plain[ds.name].loc[records].tolist()
        ids += [f"{ds.name}:{r}" for r in records]
        sources[ds.name] = len(rows)
        room -= len(rows)
    return Corpus(np.concatenate(signals), all_texts, all_plain, ids, sources)


# ----------------------------------------------------------------------------- evaluation


@dataclass
class IdentificationSet:
    name: str
    signals: object
    patient_ids: np.ndarray


def identification_set(dataset) -> IdentificationSet:
    return IdentificationSet(dataset.name, dataset.signals, dataset.meta["patient_id"].to_numpy())


def _rows(base: dict, values: dict, skip=("cached",)) -> list[dict]:
    return [{**base, "metric": k, "value": float(v)} for k, v in values.items() if k not in skip]


def evaluate_frozen(encoder, tasks: Sequence[Task], id_sets: Sequence[IdentificationSet], base: dict) -> list[dict]:
    """Linear probe on every task and identification on every set, for one frozen encoder."""
    rows = []
    for task in tasks:
        rows += _rows({**base, "protocol": "linear probe", "task": task.name}, probe_task(encoder, task))
    for ids in id_sets:
        result = identification(embed(encoder, ids.signals), ids.patient_ids)
        rows += _rows({**base, "protocol": "identification", "task": ids.name}, result)
    return rows


def method_comparison(seed: int, corpus: Corpus, tasks: Sequence[Task], id_sets: Sequence[IdentificationSet],
                      esi_config: ESIConfig, cfg: dict, progress: bool = True) -> tuple[list[dict], dict]:
    """ESI, SimCLR, supervised from scratch and a random encoder, for one seed.

    Returns (rows, {"esi": Pretrained, "simclr": FitResult}). Fine-tuning runs on the first task
    only unless ``cfg["finetune_all_tasks"]``.
    """
    import torch

    pre = replace(cfg["pretrain"], seed=seed)
    ft = replace(cfg["finetune"], seed=seed)
    variant = esi_config.variant
    esi = pretrain_esi(corpus.signals, corpus.texts, esi_config, pre, progress=progress, data_id=corpus.data_id)
    simclr = pretrain_simclr(corpus.signals, variant, pre, progress=progress, data_id=corpus.data_id)
    torch.manual_seed(seed)
    random_encoder = ecg_encoder(variant).eval()
    rows = []
    for method, encoder in (("ESI", esi.encoder), ("SimCLR", simclr.model.encoder), ("random init", random_encoder)):
        rows += evaluate_frozen(encoder, tasks, id_sets, {"seed": seed, "method": method})
    for task in tasks:
        rows += _rows({"seed": seed, "method": "ESI", "protocol": "zero-shot", "task": task.name},
                      zero_shot_task(esi.model, task, class_prompts(list(task.y.columns)),
                                     esi_config.max_text_tokens))
    ft_tasks = tasks if cfg["finetune_all_tasks"] else tasks[:1]
    scratch = None
    for task in ft_tasks:
        for method, init, init_id in (("ESI", esi.encoder, esi.fit.run_dir.name),
                                      ("SimCLR", simclr.model.encoder, simclr.run_dir.name),
                                      ("supervised (scratch)", None, None)):
            metrics, result = supervised_task(task, variant, ft, init=init, init_id=init_id, progress=progress)
            rows += _rows({"seed": seed, "method": method,
                           "protocol": "supervised" if init is None else "fine-tune", "task": task.name}, metrics)
            if init is None and scratch is None:
                scratch = result
    # identification with the encoder trained from scratch on the first task's labels
    for ids in id_sets:
        result = identification(embed(scratch.model.encoder, ids.signals), ids.patient_ids)
        rows += _rows({"seed": seed, "method": "supervised (scratch)", "protocol": "identification",
                       "task": ids.name}, result)
    return rows, {"esi": esi, "simclr": simclr}


def _esi_variant_rows(name: str, corpus: Corpus, texts, esi_config: ESIConfig, pre: TrainConfig, tasks,
                      id_sets, base: dict, zero_shot: bool, progress: bool) -> list[dict]:
    esi = pretrain_esi(corpus.signals, texts, esi_config, pre, progress=progress, data_id=corpus.data_id)
    rows = evaluate_frozen(esi.encoder, tasks, id_sets, {**base, "setting": name})
    if zero_shot and esi_config.contrastive_weight > 0:
        for task in tasks:
            rows += _rows({**base, "setting": name, "protocol": "zero-shot", "task": task.name},
                          zero_shot_task(esi.model, task, class_prompts(list(task.y.columns)),
                                         esi_config.max_text_tokens))
    for r in rows:
        r["seconds"] = esi.fit.seconds
        r["cached"] = esi.fit.cached
    return rows


def ablations(corpus: Corpus, tasks, id_sets, esi_config: ESIConfig, cfg: dict, seeds: Sequence[int],
              progress: bool = True) -> list[dict]:
    """The paper's Table 5: full ESI, without CQA (plain labels), without L_cap, without L_con."""
    rows = []
    for seed in seeds:
        pre = replace(cfg["pretrain"], seed=seed)
        for name, texts, conf in (
            ("ESI (full)", corpus.texts, esi_config),
            ("w/o CQA", corpus.plain, esi_config),
            ("w/o L_cap", corpus.texts, replace(esi_config, caption_weight=0.0)),
            ("w/o L_con", corpus.texts, replace(esi_config, contrastive_weight=0.0)),
        ):
            rows += _esi_variant_rows(name, corpus, texts, conf, pre, tasks, id_sets,
                                      {"seed": seed, "experiment": "ablation"}, False, progress)
    return rows


def size_curve(corpus: Corpus, tasks, esi_config: ESIConfig, cfg: dict, seeds: Sequence[int],
               progress: bool = True) -> list[dict]:
    """Linear-probe AUC against the fraction of the pretraining set used (same epochs)."""
    rows = []
    for seed in seeds:
        pre = replace(cfg["pretrain"], seed=seed)
        for fraction in cfg["sizes"]:
            part = corpus if fraction >= 1 else corpus.subset(subsample(len(corpus), fraction, seed))
            pre_f = replace(pre, batch_size=min(pre.batch_size, len(part)))
            rows += _esi_variant_rows(f"{fraction:.0%}", part, part.texts, esi_config, pre_f, tasks, [],
                                      {"seed": seed, "experiment": "size", "fraction": fraction,
                                       "records": len(part)}, False, progress)
    return rows


def misalignment_curve(corpus: Corpus, tasks, esi_config: ESIConfig, cfg: dict, seeds: Sequence[int],
                       progress: bool = True) -> list[dict]:
    """Linear-probe and zero-shot AUC against the share of ECG-text pairs shuffled."""
    rows = []
    for seed in seeds:
        pre = replace(cfg["pretrain"], seed=seed)
        for fraction in cfg["misalignment"]:
            texts = misaligned(corpus.texts, fraction, seed)
            rows += _esi_variant_rows(f"{fraction:.0%}", corpus, texts, esi_config, pre, tasks, [],
                                      {"seed": seed, "experiment": "misalignment", "fraction": fraction},
                                      True, progress)
    return rows


# ----------------------------------------------------------------------------- tables


def summary(rows: Sequence[dict] | pd.DataFrame, index: Sequence[str], columns: Sequence[str] = ("task",),
            metric: str = "auc") -> pd.DataFrame:
    """Mean and sd over seeds of one metric: ``index`` rows, (``columns``..., mean|sd|n) columns."""
    frame = pd.DataFrame(rows)
    frame = frame[frame["metric"] == metric]
    grouped = frame.groupby(list(index) + list(columns), sort=False)["value"]
    stats = pd.DataFrame({"mean": grouped.mean(), "sd": grouped.std(ddof=1), "n": grouped.size()})
    out = stats.unstack(list(columns))
    out.columns = out.columns.reorder_levels(list(range(1, out.columns.nlevels)) + [0])
    return out.sort_index(axis=1, level=list(range(out.columns.nlevels - 1)), sort_remaining=False)

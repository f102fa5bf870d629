"""The chapter's experiments: ESI against its baselines, ablations and curves, per seed.

Every training run is cached (:mod:`ecgkit.esi.train`), and so are the encoders' embeddings, by
run key and the signals' content (:func:`~.downstream.cached_embed`): a rerun only fits the probes. Results come
as long tables (one row per seed, method, protocol, task and metric) that the notebook pivots.

Settings per profile are in :data:`SETTINGS`. Every method gets the same budget: the same encoder
and the same number of optimizer steps on the same pretraining records (ESI and its ablations on
ECG-text pairs, SimCLR on the ECGs, the supervised baseline on the records' superclass labels).
The quick profile uses a small encoder, a fixed budget of steps, 3 seeds, no fine-tuning, and runs
the ablations and curves with one seed.
"""
from __future__ import annotations

import re
from pathlib import Path
from dataclasses import dataclass, field, fields, replace
from typing import Sequence

import numpy as np
import pandas as pd

from ..config import ProfileSettings
from .downstream import (Task, cached_embed, class_prompts, data_key, embed, identification, log_embeddings, macro_auc,
                         misaligned, probe_task, subsample, supervised_task, weights_key, zero_shot_task)
from ..nn import ecg_encoder
from .train import ESIConfig, QUICK_PRETRAIN, TrainConfig, fingerprint, pretrain_esi, pretrain_simclr

#: the quick profile's budget: optimizer steps of batch 32 for every pretraining run
QUICK_STEPS = 160

@dataclass(frozen=True)
class ExperimentSettings(ProfileSettings):
    """The chapter's experiment plan (the full profile's as defaults; :data:`SETTINGS`)."""

    seeds: int = 5
    pretrain: TrainConfig = field(default_factory=TrainConfig)
    finetune: TrainConfig | None = field(default_factory=lambda: TrainConfig(
        epochs=30, warmup_epochs=5, decay_every=10, lr=1e-4, batch_size=64))
    max_pretrain_records: int | None = None
    ablation_fraction: float = 1.0
    ablation_seeds: int = 5
    sizes: tuple = (0.1, 0.25, 0.5, 1.0)
    misalignment: tuple = (0.0, 0.25, 0.5, 0.75, 1.0)
    finetune_all_tasks: bool = True
    identification_patients: int | None = None   # patients with two records per identification set (seeded)
    n_boot: int = 1000

    PROFILES = {"quick": dict(
        seeds=3,
        pretrain=replace(QUICK_PRETRAIN, max_steps=QUICK_STEPS),
        finetune=None,                 # no fine-tuning in the quick profile (linear probe only)
        ablation_seeds=1,
        sizes=(0.1, 0.3, 1.0),
        misalignment=(0.0, 0.5, 1.0),
        finetune_all_tasks=False,
        identification_patients=200,
    )}

    def as_dict(self) -> dict:
        """The settings as a dictionary (the training configurations kept as objects)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


#: the plan per profile, as dictionaries
SETTINGS = {name: ExperimentSettings.for_profile(name).as_dict() for name in ("quick", "full")}


def scaled(config: TrainConfig, epochs: int | None) -> TrainConfig:
    """``config`` with ``epochs``, its warm-up and decay period scaled in proportion (at least 1)."""
    if not epochs or epochs == config.epochs:
        return config
    ratio = epochs / config.epochs
    return replace(config, epochs=int(epochs), warmup_epochs=max(1, round(config.warmup_epochs * ratio)),
                   decay_every=max(1, round(config.decay_every * ratio)))


def settings(profile: str | None = None, epochs: int | None = None, finetune_epochs: int | None = None,
             steps: int | None = None, **overrides) -> dict:
    """The profile's settings with ``overrides`` (None values ignored); ``epochs`` and
    ``finetune_epochs`` rescale the schedules (:func:`scaled`); ``steps`` sets the step budget."""
    try:
        base = ExperimentSettings.for_profile(profile, **overrides).as_dict()
    except TypeError as error:
        raise KeyError(str(error)) from None
    base["pretrain"] = scaled(base["pretrain"], epochs)
    if steps:
        base["pretrain"] = replace(base["pretrain"], max_steps=int(steps))
    if base["finetune"] is not None:
        base["finetune"] = scaled(base["finetune"], finetune_epochs)
    return base


# ----------------------------------------------------------------------------- pretraining set


@dataclass
class Corpus:
    """The ECG-text pairs ESI pretrains on, with plain-label texts for the "w/o CQA" ablation and,
    where given, expert-card texts (the third text source of the ablation)."""

    signals: np.ndarray
    texts: list
    plain: list
    ids: list          # "dataset:ecg_id"
    sources: dict      # dataset name -> records taken
    labels: pd.DataFrame | None = None   # superclass multi-hot per record (the supervised baseline)
    cards: list | None = None            # the texts with the expert cards' waveform sections

    @property
    def data_id(self) -> str:
        return fingerprint(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows) -> "Corpus":
        rows = np.asarray(rows)
        return Corpus(self.signals[rows], [self.texts[i] for i in rows], [self.plain[i] for i in rows],
                      [self.ids[i] for i in rows], dict(self.sources),
                      None if self.labels is None else self.labels.iloc[rows],
                      None if self.cards is None else [self.cards[i] for i in rows])


def pretraining_corpus(datasets: Sequence, texts: dict, plain: dict, limit: int | None = None,
                       seed: int = 0, cards: dict | None = None) -> Corpus:
    """The training folds (1–8) of each dataset, in the order given, with their texts.

    ``texts`` / ``plain`` / ``cards`` (optional): dataset name -> Series (record id -> text). With
    ``limit``, datasets are taken in order until the limit; the last one is subsampled (seeded).
    """
    signals, all_texts, all_plain, all_cards, ids, sources, labels = [], [], [], [], [], {}, []
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
        if cards is not None:
            all_cards += cards[ds.name].loc[records].tolist()
        ids += [f"{ds.name}:{r}" for r in records]
        y = ds.label_view("superdiagnostic").y.iloc[rows]
        labels.append(y.set_axis([f"{ds.name}:{r}" for r in records]))
        sources[ds.name] = len(rows)
        room -= len(rows)
    y = pd.concat(labels).fillna(0).astype(np.float32)
    return Corpus(np.concatenate(signals), all_texts, all_plain, ids, sources, y,
                  all_cards if cards is not None else None)


# ----------------------------------------------------------------------------- evaluation


@dataclass
class IdentificationSet:
    name: str
    signals: object
    patient_ids: np.ndarray


def identification_set(dataset, max_patients: int | None = None, seed: int = 0) -> IdentificationSet:
    """The records of ``dataset`` for identification; with ``max_patients``, only the records of a
    seeded sample of that many patients with two or more records (a linear probe with one class per
    patient grows with their number)."""
    ids = dataset.meta["patient_id"].to_numpy()
    if max_patients is None:
        return IdentificationSet(dataset.name, dataset.signals, ids)
    counts = pd.Series(ids).value_counts()
    eligible = np.sort(counts.index[counts >= 2].to_numpy())
    if len(eligible) > max_patients:
        eligible = np.random.default_rng(seed).choice(eligible, size=max_patients, replace=False)
    rows = np.flatnonzero(np.isin(ids, eligible))
    return IdentificationSet(dataset.name, np.asarray(dataset.signals[rows], dtype=np.float32), ids[rows])


def _fitting(config: TrainConfig, n: int) -> TrainConfig:
    """``config`` with a batch no larger than the ``n`` records (tiny test runs)."""
    return replace(config, batch_size=max(1, min(config.batch_size, n)))


def _rows(base: dict, values: dict, skip=("cached",)) -> list[dict]:
    return [{**base, "metric": k, "value": float(v)} for k, v in values.items() if k not in skip]


def evaluate_frozen(encoder, tasks: Sequence[Task], id_sets: Sequence[IdentificationSet], base: dict,
                    scores: dict | None = None, run: str | None = None) -> list[dict]:
    """Linear probe on every task and identification on every set, for one frozen encoder.

    Each distinct signal array is embedded once (a dataset serves its task and its set).
    ``scores`` receives the probe's test scores per task name (for paired tests). ``run``: the
    encoder's training run key: its embeddings are cached (:func:`~.downstream.cached_embed`)
    and so are the probes' results (``esi_frozen_eval``, keyed by the run and the tasks' and sets'
    data, labels and splits); one line says what came from the cache."""
    label = ", ".join(str(base[k]) for k in ("method", "setting", "seed") if k in base)
    if run is None:
        rows, kept = _evaluate_frozen(encoder, tasks, id_sets, None)
    else:
        rows, kept = _cached_evaluation(encoder, tasks, id_sets, run, label)
    if scores is not None:
        scores.update(kept)
    return [{**base, **r} for r in rows]


def _evaluate_frozen(encoder, tasks, id_sets, run, log: list | None = None) -> tuple[list[dict], dict]:
    features = {}

    def of(signals):
        if id(signals) not in features:
            features[id(signals)] = (embed(encoder, signals) if run is None
                                     else cached_embed(encoder, signals, run, log=log))
        return features[id(signals)]

    rows, scores = [], {}
    for task in tasks:
        keep = {}
        rows += _rows({"protocol": "linear probe", "task": task.name}, probe_task(encoder, task, of(task.signals), keep))
        scores[task.name] = keep["scores"]
    for ids in id_sets:
        rows += _rows({"protocol": "identification", "task": ids.name},
                      identification(of(ids.signals), ids.patient_ids))
    return rows, scores


def _cached_evaluation(encoder, tasks, id_sets, run: str, label: str) -> tuple[list[dict], dict]:
    """:func:`_evaluate_frozen` through the cache (``esi_frozen_eval``)."""
    import json

    from ..cache import build_or_load

    spec = {"run": run,
            "tasks": [{"name": t.name, "data": data_key(t.signals), "labels": fingerprint(t.y.to_numpy(dtype=float), [str(c) for c in t.y.columns]),
                       "split": fingerprint([np.asarray(t.train).tolist(), np.asarray(t.val).tolist(),
                                             np.asarray(t.test).tolist()])} for t in tasks],
            "id_sets": [{"name": s.name, "data": data_key(s.signals),
                         "patients": fingerprint(np.asarray(s.patient_ids).tolist())} for s in id_sets]}
    log: list = []

    def build(folder):
        rows, scores = _evaluate_frozen(encoder, tasks, id_sets, run, log)
        (folder / "rows.json").write_text(json.dumps(rows))
        np.savez(folder / "scores.npz", **{f"task{i}": scores[t.name] for i, t in enumerate(tasks)})

    def load(folder):
        with np.load(folder / "scores.npz") as held:
            scores = {t.name: held[f"task{i}"] for i, t in enumerate(tasks)}
        return json.loads((folder / "rows.json").read_text()), scores

    (rows, scores), k, built = build_or_load("esi_frozen_eval", spec, build, load)
    if built:
        log_embeddings(f"{label}, {run}" if label else run, log)
    print(f"probes ({label + ', ' if label else ''}{run}): "
          + ("computed and cached" if built else "from cache") + f" (key {k})", flush=True)
    return rows, scores


def run_key(fit) -> str:
    """The training run's key (its cache folder's name: kind and key) of a FitResult."""
    return Path(fit.run_dir).name


def method_comparison(seed: int, corpus: Corpus, tasks: Sequence[Task], id_sets: Sequence[IdentificationSet],
                      esi_config: ESIConfig, cfg: dict, progress: bool = True) -> tuple[list[dict], dict]:
    """ESI, SimCLR, supervised and a random encoder, for one seed, at one budget.

    ESI pretrains on the corpus's ECG-text pairs, SimCLR on its ECGs and the supervised baseline on
    its superclass labels, each for the same optimizer steps (``cfg["pretrain"]``) with the same
    encoder; all four encoders are then probed frozen. The supervised model's own head is scored
    as well (protocol "supervised"). With ``cfg["finetune"]``, ESI, SimCLR and an encoder from
    scratch are also fine-tuned (on the first task only unless ``cfg["finetune_all_tasks"]``).

    Returns (rows, {"esi": Pretrained, "simclr": FitResult, "supervised": FitResult,
    "scores": {(method, task): linear-probe test scores}}).
    """
    import torch

    from .downstream import predict
    from .train import train_supervised

    pre = _fitting(replace(cfg["pretrain"], seed=seed), len(corpus))
    variant = esi_config.variant
    esi = pretrain_esi(corpus.signals, corpus.texts, esi_config, pre, progress=progress, data_id=corpus.data_id)
    simclr = pretrain_simclr(corpus.signals, variant, pre, progress=progress, data_id=corpus.data_id)
    supervised = train_supervised(corpus.signals, corpus.labels.to_numpy(copy=True), variant, pre, progress=progress,
                                  data_id=[corpus.data_id, "superdiagnostic", list(corpus.labels.columns)])
    torch.manual_seed(seed)
    random_encoder = ecg_encoder(variant).eval()
    rows, scores = [], {}
    for method, encoder, run in (("ESI", esi.encoder, run_key(esi.fit)),
                                 ("SimCLR", simclr.model.encoder, run_key(simclr)),
                                 ("supervised (scratch)", supervised.model.encoder, run_key(supervised)),
                                 ("random init", random_encoder, weights_key(random_encoder))):
        kept = {}
        rows += evaluate_frozen(encoder, tasks, id_sets, {"seed": seed, "method": method}, kept, run)
        scores.update({(method, task): v for task, v in kept.items()})
    for task in tasks:
        if list(task.y.columns) == list(corpus.labels.columns):
            test = task.y.iloc[task.test]
            auc, per = macro_auc(test, predict(supervised.model, task.signals[task.test]))
            rows += _rows({"seed": seed, "method": "supervised (scratch)", "protocol": "supervised",
                           "task": task.name}, {"auc": auc, **{f"auc_{k}": v for k, v in per.items()}})
        rows += _rows({"seed": seed, "method": "ESI", "protocol": "zero-shot", "task": task.name},
                      zero_shot_task(esi.model, task, class_prompts(list(task.y.columns)),
                                     esi_config.max_text_tokens, run_key(esi.fit)))
    if cfg.get("finetune") is not None:
        ft = _fitting(replace(cfg["finetune"], seed=seed), min(len(t.train) for t in tasks))
        for task in (tasks if cfg["finetune_all_tasks"] else tasks[:1]):
            for method, init, init_id in (("ESI", esi.encoder, esi.fit.run_dir.name),
                                          ("SimCLR", simclr.model.encoder, simclr.run_dir.name),
                                          ("supervised (scratch)", None, None)):
                metrics, _ = supervised_task(task, variant, ft, init=init, init_id=init_id, progress=progress)
                rows += _rows({"seed": seed, "method": method,
                               "protocol": "fine-tune" if init is not None else "fine-tune (scratch)",
                               "task": task.name}, metrics)
    return rows, {"esi": esi, "simclr": simclr, "supervised": supervised, "scores": scores}


BASELINES = ("SimCLR", "supervised (scratch)", "random init")


def task_key(name: str) -> str:
    """A short key for a task in metric names: "real" (PTB-XL), "synthetic", else the name's words."""
    if name.startswith("ptbxl"):
        return "real"
    if name.startswith("synthetic"):
        return "synthetic"
    return "_".join(re.findall(r"[a-z0-9]+", name.lower()))


def verdict(low: float, high: float) -> str:
    """"better" when a 95% interval of A − B lies above 0, "worse" below, else "no detectable difference"."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "not estimable"
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return "no detectable difference"


def paired_comparisons(runs: dict, tasks: Sequence[Task], reference: str = "ESI",
                       baselines: Sequence[str] = BASELINES, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Linear-probe macro AUC of ``reference`` against each baseline, per task.

    ``runs``: seed -> the second value of :func:`method_comparison`. The test is a paired bootstrap
    over the test records (:func:`ecgkit.metrics.paired_macro_auroc_difference`): each replicate
    draws the records once and averages over seeds the difference of the two probes' macro AUCs.
    Rows (task, baseline); columns: both AUCs, difference, 95% interval, p, seeds, verdict.
    """
    from ..metrics import paired_macro_auroc_difference

    seeds = sorted(runs)
    out = []
    for task in tasks:
        y = task.y.iloc[task.test].to_numpy(dtype=float)
        for base in baselines:
            a = [runs[s]["scores"][(reference, task.name)] for s in seeds]
            b = [runs[s]["scores"][(base, task.name)] for s in seeds]
            r = paired_macro_auroc_difference(y, a, b, n_boot=n_boot, seed=seed)
            out.append({"task": task.name, "baseline": base, reference: r["auroc_a"], "baseline AUC": r["auroc_b"],
                        "difference": r["difference"], "low": r["low"], "high": r["high"], "p": r["p_value"],
                        "seeds": len(seeds), "test records": len(y), "verdict": verdict(r["low"], r["high"])})
    return pd.DataFrame(out).set_index(["task", "baseline"])


def _esi_variant_rows(name: str, corpus: Corpus, texts, esi_config: ESIConfig, pre: TrainConfig, tasks,
                      id_sets, base: dict, zero_shot: bool, progress: bool) -> list[dict]:
    pre = _fitting(pre, len(corpus))
    esi = pretrain_esi(corpus.signals, texts, esi_config, pre, progress=progress, data_id=corpus.data_id)
    rows = evaluate_frozen(esi.encoder, tasks, id_sets, {**base, "setting": name}, run=run_key(esi.fit))
    if zero_shot and esi_config.contrastive_weight > 0:
        for task in tasks:
            rows += _rows({**base, "setting": name, "protocol": "zero-shot", "task": task.name},
                          zero_shot_task(esi.model, task, class_prompts(list(task.y.columns)),
                                         esi_config.max_text_tokens, run_key(esi.fit)))
    for r in rows:
        r["seconds"] = esi.fit.seconds
        r["cached"] = esi.fit.cached
    return rows


#: the ablation row pretrained on the expert cards' hand-written waveform texts
CARD_TEXTS = "expert-card texts"


def ablations(corpus: Corpus, tasks, id_sets, esi_config: ESIConfig, cfg: dict, seeds: Sequence[int],
              progress: bool = True) -> list[dict]:
    """The paper's Table 5: full ESI, without CQA (plain labels), without L_cap, without L_con;
    where the corpus has them, the expert cards' texts as a third text source (CARD_TEXTS)."""
    rows = []
    for seed in seeds:
        pre = replace(cfg["pretrain"], seed=seed)
        for name, texts, conf in (
            ("ESI (full)", corpus.texts, esi_config),
            *([(CARD_TEXTS, corpus.cards, esi_config)] if corpus.cards is not None else []),
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
            rows += _esi_variant_rows(f"{fraction:.0%}", part, part.texts, esi_config, pre, tasks, [],
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
    """Mean, sd and 95% interval (t over seeds) of one metric: ``index`` rows, (``columns``...,
    mean|sd|low|high|n) columns."""
    from scipy.stats import t as student

    frame = pd.DataFrame(rows)
    frame = frame[frame["metric"] == metric]
    grouped = frame.groupby(list(index) + list(columns), sort=False)["value"]
    stats = pd.DataFrame({"mean": grouped.mean(), "sd": grouped.std(ddof=1), "n": grouped.size()})
    half = stats["sd"] * student.ppf(0.975, (stats["n"] - 1).clip(lower=1)) / np.sqrt(stats["n"])
    half[stats["n"] < 2] = np.nan
    stats.insert(2, "low", stats["mean"] - half)
    stats.insert(3, "high", stats["mean"] + half)
    out = stats.unstack(list(columns))
    out.columns = out.columns.reorder_levels(list(range(1, out.columns.nlevels)) + [0])
    return out.sort_index(axis=1, level=list(range(out.columns.nlevels - 1)), sort_remaining=False)


def patients_with_two_records(data) -> int:
    """How many patients have at least two records (a dataset or an :class:`IdentificationSet`)."""
    from .downstream import identification_pairs

    ids = data.patient_ids if isinstance(data, IdentificationSet) else data.meta["patient_id"].to_numpy()
    return len(identification_pairs(ids)[0])


def with_paper(frame: pd.DataFrame, table: str, mapping: dict, metric: str = "AUC") -> pd.DataFrame:
    """``frame`` with the paper's value and configuration for the rows named in ``mapping``."""
    from ..results import paper_numbers

    paper = paper_numbers("esi", table)
    paper = paper[paper["metric"] == metric].set_index("configuration")["value"]
    out = frame.copy()
    configs = [mapping.get(i, "") for i in out.index]
    out[("paper", "configuration")] = configs
    out[("paper", metric)] = [paper.get(c, np.nan) if c else np.nan for c in configs]
    return out


def zero_shot_table(results: pd.DataFrame) -> pd.DataFrame:
    """Zero-shot macro AUC and F1 per task (mean, sd over seeds) beside the paper's Table 3."""
    from ..results import paper_numbers

    zs = results[results["protocol"] == "zero-shot"]
    stats = zs.groupby(["task", "metric"], sort=False)["value"].agg(["mean", "std"]).unstack("metric")
    paper = paper_numbers("esi", "zero_shot").set_index("metric")["value"]
    return pd.DataFrame({"AUC mean": stats[("mean", "auc")], "AUC sd": stats[("std", "auc")],
                         "F1 mean": stats[("mean", "f1")], "F1 sd": stats[("std", "f1")],
                         "paper AUC": paper.get("AUC", np.nan), "paper F1": paper.get("F1", np.nan)})


def identification_table(results: pd.DataFrame) -> pd.DataFrame:
    """Identification accuracy and AUC per set and method (mean over seeds), paper's Table 4 beside."""
    from ..results import paper_numbers

    ident = results[results["protocol"] == "identification"]
    table = ident.pivot_table(index=["task", "method"], columns="metric", values="value", aggfunc="mean", sort=False)
    table = table[["patients", "nn_accuracy", "nn_auc", "lp_accuracy", "lp_auc"]]
    table["lp_accuracy sd"] = ident[ident["metric"] == "lp_accuracy"].groupby(["task", "method"], sort=False)["value"].std()
    paper = paper_numbers("esi", "identification").set_index("configuration")["value"]
    table["paper lp_accuracy"] = [paper.get("ESI linear probe", np.nan) if m == "ESI" else np.nan for _, m in table.index]
    return table


def ablation_table(rows) -> pd.DataFrame:
    """Per setting: linear-probe macro AUC per task, identification linear-probe accuracy and AUC
    per set (means over seeds), and the paper's Table 5a."""
    from ..results import paper_numbers

    frame = pd.DataFrame(rows)
    parts = []
    lp = frame[(frame["protocol"] == "linear probe") & (frame["metric"] == "auc")]
    parts.append(lp.pivot_table(index="setting", columns="task", values="value", aggfunc="mean", sort=False)
                 .rename(columns=lambda t: f"{t}: linear probe AUC"))
    ident = frame[(frame["protocol"] == "identification") & frame["metric"].isin(["lp_accuracy", "lp_auc"])]
    if len(ident):
        wide = ident.pivot_table(index="setting", columns=["task", "metric"], values="value", aggfunc="mean", sort=False)
        wide.columns = [f"{t}: identification {m.replace('lp_', '')}" for t, m in wide.columns]
        parts.append(wide)
    table = pd.concat(parts, axis=1)
    paper = paper_numbers("esi", "ablation").pivot_table(index="configuration", columns="metric", values="value")
    for metric in ("arrhythmia", "identification"):
        table[f"paper {metric}"] = [paper[metric].get(s, np.nan) if metric in paper else np.nan for s in table.index]
    table["pretraining seconds"] = frame.groupby("setting", sort=False)["seconds"].max()
    return table


def curve_table(rows, key: str, protocols: Sequence[str]) -> pd.DataFrame:
    """Macro AUC (mean over seeds) per ``key`` value, one column per protocol and task."""
    frame = pd.DataFrame(rows)
    frame = frame[frame["protocol"].isin(protocols) & (frame["metric"] == "auc")]
    table = frame.pivot_table(index=key, columns=["protocol", "task"], values="value", aggfunc="mean")
    table.columns = [f"{p}: {t}" for p, t in table.columns]
    if "records" in frame:
        table.insert(0, "records", frame.groupby(key)["records"].max())
    return table

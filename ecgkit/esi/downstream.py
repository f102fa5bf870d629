"""Downstream evaluation of ECG encoders: zero-shot, linear probe, fine-tuning, identification.

- **Zero-shot**: cosine similarity between a record's ECG embedding and the embedded prompt of
  each class (:func:`zero_shot_scores`); macro AUC, and macro F1 at per-class thresholds chosen on
  the validation fold (never on the test fold).
- **Linear probe**: the encoder frozen, one logistic regression per class on its pooled features
  (:func:`linear_probe`).
- **Fine-tuning** and the **supervised baseline** train the whole encoder with one linear layer
  (:func:`ecgkit.esi.train.train_supervised`), from pretrained or random weights.
- **Identification** (:func:`identification`): patients with at least two records; one record
  enrolled, another queried; top-1 accuracy and AUC (genuine vs impostor scores) by nearest
  neighbour (cosine) and by a linear probe trained on the enrolled records.
- Ablation helpers: :func:`misaligned`, :func:`label_texts`, :func:`subsample`.

Embeddings are cached (:func:`cached_embed`) when the caller names the encoder's training run:
the key is the run, the output (pooled or joint) and the signals' content, so a rerun of the
chapter embeds nothing again.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.preprocessing import StandardScaler

SUPERCLASS_NAMES = {
    "NORM": "normal ECG",
    "MI": "myocardial infarction",
    "STTC": "ST/T change",
    "CD": "conduction disturbance",
    "HYP": "hypertrophy",
}


# ----------------------------------------------------------------------------- embeddings


def _batches(signals, batch_size: int):
    for i in range(0, len(signals), batch_size):
        chunk = np.asarray(signals[i:i + batch_size], dtype=np.float32)
        yield torch.from_numpy(np.ascontiguousarray(chunk.transpose(0, 2, 1)))


def embed(encoder: torch.nn.Module, signals, batch_size: int = 128) -> np.ndarray:
    """Pooled encoder features (N, dim) of ``signals`` (N × T × 12 mV), eval mode, no gradient."""
    device = next(encoder.parameters()).device
    was = encoder.training
    encoder.eval()
    out = []
    with torch.inference_mode():
        for x in _batches(signals, batch_size):
            out.append(encoder(x.to(device)).float().cpu().numpy())
    encoder.train(was)
    return np.concatenate(out) if out else np.zeros((0, getattr(encoder, "dim", 0)), np.float32)


#: content keys of read-only signal arrays (memmaps) already hashed in this process
_DATA_KEYS: dict[int, tuple] = {}


def data_key(signals) -> str:
    """The content hash of ``signals`` (shape, dtype and values); memoized for read-only arrays
    (a dataset's memory-mapped signals are hashed once per process, not once per encoder)."""
    import weakref

    from ..hashing import content_sha256

    frozen = isinstance(signals, np.ndarray) and not signals.flags.writeable
    if frozen:
        held = _DATA_KEYS.get(id(signals))
        if held is not None and held[0]() is signals:
            return held[1]
    digest = content_sha256(np.asarray(signals))
    if frozen:
        _DATA_KEYS[id(signals)] = (weakref.ref(signals), digest)
    return digest


def weights_key(model: torch.nn.Module) -> str:
    """A run key for weights that no training run names (a random encoder): their content hash."""
    from ..hashing import content_sha256

    from ..cache import DIGEST_CHARS

    return "weights-" + content_sha256(*[v for v in model.state_dict().values()])[:DIGEST_CHARS]


def cached_embed(model, signals, run: str, joint: bool = False, batch_size: int = 128,
                 log: list | None = None) -> np.ndarray:
    """:func:`embed` (or :func:`embed_joint` with ``joint``) of ``signals``, kept in the cache
    (``esi_embeddings``) under the key of the encoder's training run (``run``: its run folder's
    name, or :func:`weights_key`), the output and the signals' content (:func:`data_key`).
    ``log`` receives ``(records, from cache, key)``; without it one line is printed."""
    from ..cache import build_or_load

    spec = {"run": run, "output": "joint" if joint else "pooled", "data": data_key(signals)}

    def build(folder):
        out = embed_joint(model, signals, batch_size) if joint else embed(model, signals, batch_size)
        np.save(folder / "embeddings.npy", out)

    out, k, built = build_or_load("esi_embeddings", spec, build,
                                  lambda folder: np.load(folder / "embeddings.npy"))
    if log is not None:
        log.append((len(out), not built, k))
    else:
        print(f"embeddings of {len(out):,} records ({run}): "
              + ("computed and cached" if built else "from cache") + f" (key {k})", flush=True)
    return out


def log_embeddings(label: str, log: list) -> None:
    """One line for the embeddings of one step (:func:`cached_embed`'s ``log``)."""
    if not log:
        return
    hits = sum(hit for _, hit, _ in log)
    what = ("from cache" if hits == len(log) else "computed and cached" if not hits
            else f"{hits} of {len(log)} from cache, the rest computed and cached")
    print(f"embeddings ({label}): {sum(n for n, _, _ in log):,} records in {len(log)} sets {what} "
          f"(keys {', '.join(k for _, _, k in log)})", flush=True)


def embed_joint(model, signals, batch_size: int = 128) -> np.ndarray:
    """L2-normalised ECG embeddings in ESI's joint ECG-text space."""
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for x in _batches(signals, batch_size):
            out.append(model.encode_ecg(x.to(device)).float().cpu().numpy())
    return np.concatenate(out)


def predict(model, signals, batch_size: int = 128) -> np.ndarray:
    """Class probabilities (sigmoid) of a :class:`~ecgkit.esi.model.SupervisedModel`."""
    device = next(model.parameters()).device
    model.eval()
    out = []
    with torch.inference_mode():
        for x in _batches(signals, batch_size):
            out.append(torch.sigmoid(model.logits(x.to(device)).float()).cpu().numpy())
    return np.concatenate(out)


# ----------------------------------------------------------------------------- metrics


def macro_auc(y_true, scores) -> tuple[float, dict]:
    """Mean ROC AUC over the classes that have both outcomes in ``y_true``; (macro, per class).

    :func:`ecgkit.metrics.auroc` underneath. A class with only one outcome has no AUC: it is
    left out of the mean and reported as NaN.
    """
    from ..metrics import auroc

    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=float)
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in shape")
    columns = list(y_true.columns) if isinstance(y_true, pd.DataFrame) else list(range(y.shape[1]))
    values = auroc(y.astype(float), s, classes=columns)
    if np.isnan(values.loc["macro"]):
        raise ValueError("no class has both positive and negative records: AUC is undefined")
    return float(values.loc["macro"]), {c: float(values.loc[c]) for c in columns}


def best_thresholds(y_true, scores) -> np.ndarray:
    """Per class, the score threshold that maximises F1 (to be chosen on validation records)."""
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=float)
    out = np.empty(y.shape[1])
    for j in range(y.shape[1]):
        candidates = np.unique(s[:, j])
        if not len(candidates):
            out[j] = 0.0
            continue
        # F1 of "score >= t" for every candidate t at once: 2 TP / (positives + predicted positives)
        positive = y[:, j].astype(bool)
        predicted = len(s) - np.searchsorted(np.sort(s[:, j]), candidates, side="left")
        tp = positive.sum() - np.searchsorted(np.sort(s[positive, j]), candidates, side="left")
        denominator = positive.sum() + predicted
        f1 = np.divide(2.0 * tp, denominator, out=np.zeros(len(candidates)), where=denominator > 0)
        out[j] = candidates[int(np.argmax(f1))]
    return out


def macro_f1(y_true, scores, thresholds) -> float:
    y = np.asarray(y_true)
    return float(f1_score(y, np.asarray(scores) >= np.asarray(thresholds)[None, :], average="macro",
                          zero_division=0))


def mean_sd(values: Sequence[float]) -> str:
    """"0.812 ± 0.004" (sample sd; "± –" for one value)."""
    v = np.asarray([x for x in values if x is not None and not np.isnan(x)], dtype=float)
    if len(v) == 0:
        return "–"
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f} ± –"


# ----------------------------------------------------------------------------- protocols


def class_prompts(classes: Sequence[str], names: dict | None = None,
                  template: str = "ECG findings: {name}.") -> list[str]:
    """One prompt per class, from its readable name, worded as the findings part of the training texts."""
    from ..data.cpsc2018 import CPSC_CLASS_NAMES

    names = {**CPSC_CLASS_NAMES, **SUPERCLASS_NAMES, **(names or {})}
    return [template.format(name=names.get(c, c)) for c in classes]


def zero_shot_scores(model, signals, prompts: Sequence[str], max_length: int = 128,
                     run: str | None = None, log: list | None = None) -> np.ndarray:
    """(N, classes) cosine similarity between ECG embeddings and the embedded class prompts.
    ``run``: the model's run key, to cache the ECG embeddings (:func:`cached_embed`)."""
    if getattr(model, "text", None) is None:
        raise ValueError("zero-shot needs the text tower: this model was trained without the contrastive loss")
    ecg = embed_joint(model, signals) if run is None else cached_embed(model, signals, run, joint=True, log=log)
    text = model.text.embed(list(prompts), max_length=max_length).numpy()
    return ecg @ text.T


def linear_probe(x_train, y_train, x_test, c: float = 1.0, max_iter: int = 2000) -> np.ndarray:
    """Scores (N_test, classes): one logistic regression per class on standardised frozen features.

    A class with a single outcome in training gets a constant score (its AUC is then 0.5).
    """
    y = np.asarray(y_train)
    scaler = StandardScaler().fit(x_train)
    a, b = scaler.transform(x_train), scaler.transform(x_test)
    out = np.zeros((len(b), y.shape[1]))
    for j in range(y.shape[1]):
        if 0 < y[:, j].sum() < len(y):
            clf = LogisticRegression(C=c, max_iter=max_iter).fit(a, y[:, j])
            out[:, j] = clf.decision_function(b)
    return out


@dataclass
class Task:
    """A multi-label classification task on one dataset: signals with train/val/test row positions."""

    name: str
    signals: object
    y: pd.DataFrame
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def part(self, which: str):
        rows = getattr(self, which)
        return self.signals[rows], self.y.iloc[rows]


def ptbxl_task(dataset, view: str = "superdiagnostic", name: str | None = None) -> Task:
    """PTB-XL's benchmark split (train folds 1–8, validation 9, test 10), records with a label only."""
    labels = dataset.label_view(view)
    has = labels.y.sum(axis=1).to_numpy() > 0
    rows = {p: np.array([r for r in dataset.part(p) if has[r]], dtype=int) for p in ("train", "val", "test")}
    return Task(name or f"{dataset.name} {view}", dataset.signals, labels.y, rows["train"], rows["val"], rows["test"])


def random_split_task(dataset, name: str | None = None, seed: int = 0, fractions=(0.7, 0.1, 0.2)) -> Task:
    """A dataset without folds (CPSC 2018): a seeded random 70/10/20 split of the labelled records."""
    y = dataset.labels
    if y is None:
        raise ValueError(f"{dataset.name} has no labels")
    rows = np.flatnonzero(y.sum(axis=1).to_numpy() > 0)
    rows = np.random.default_rng(seed).permutation(rows)
    a, b = int(fractions[0] * len(rows)), int((fractions[0] + fractions[1]) * len(rows))
    return Task(name or dataset.name, dataset.signals, y, np.sort(rows[:a]), np.sort(rows[a:b]), np.sort(rows[b:]))


def scorable(task: Task) -> bool:
    """Whether some class has both outcomes among the test records (else no AUC can be computed)."""
    y = task.y.iloc[task.test].to_numpy()
    return len(task.train) > 0 and bool(np.any((y.sum(0) > 0) & (y.sum(0) < len(y))))


def probe_task(encoder, task: Task, features: np.ndarray | None = None, keep: dict | None = None) -> dict:
    """Linear-probe macro AUC on the task's test rows (features of its train rows, frozen encoder).

    ``features``: the encoder's features of all of ``task.signals`` when already computed;
    ``keep``: a dict that receives the test scores under ``"scores"`` (for paired tests).
    """
    if features is None:
        x_train, x_test = embed(encoder, task.signals[task.train]), embed(encoder, task.signals[task.test])
    else:
        x_train, x_test = features[task.train], features[task.test]
    scores = linear_probe(x_train, task.y.iloc[task.train], x_test)
    if keep is not None:
        keep["scores"] = scores
    auc, per = macro_auc(task.y.iloc[task.test], scores)
    return {"auc": auc, **{f"auc_{k}": v for k, v in per.items()}}


def zero_shot_task(model, task: Task, prompts: Sequence[str], max_length: int = 128,
                   run: str | None = None) -> dict:
    """Zero-shot macro AUC on test rows, and macro F1 at thresholds chosen on the validation rows.
    ``run``: the model's run key, to cache the ECG embeddings (one line says whether they were)."""
    log = [] if run is not None else None
    test = zero_shot_scores(model, task.signals[task.test], prompts, max_length, run, log)
    auc, per = macro_auc(task.y.iloc[task.test], test)
    out = {"auc": auc, **{f"auc_{k}": v for k, v in per.items()}}
    if len(task.val):
        val = zero_shot_scores(model, task.signals[task.val], prompts, max_length, run, log)
        out["f1"] = macro_f1(task.y.iloc[task.test], test, best_thresholds(task.y.iloc[task.val], val))
    if log:
        log_embeddings(f"zero-shot, {run}, {task.name}", log)
    return out


def supervised_task(task: Task, variant: str, train, init=None, init_id: str | None = None,
                    progress: bool = True) -> tuple[dict, object]:
    """Fine-tune ``init`` (or train from scratch) on the task's train rows.

    Returns (macro AUC and per-class AUC on the test rows, the :class:`~ecgkit.esi.train.FitResult`)."""
    from .train import train_supervised

    result = train_supervised(task.signals[task.train], task.y.iloc[task.train].to_numpy(), variant, train,
                              init=init, init_id=init_id, progress=progress,
                              data_id=[task.name, task.y.iloc[task.train].index.tolist()])
    auc, per = macro_auc(task.y.iloc[task.test], predict(result.model, task.signals[task.test]))
    return {"auc": auc, **{f"auc_{k}": v for k, v in per.items()}}, result


# ----------------------------------------------------------------------------- identification


def identification_pairs(patient_ids, records_per_patient: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(enrolled rows, query rows): for each patient with ≥ 2 records, the first and the second.

    Records are taken in their order in the dataset (PTB-XL's ecg_id, i.e. recording order).
    """
    ids = pd.Series(np.asarray(patient_ids))
    enrolled, query = [], []
    for _, rows in ids.groupby(ids, sort=True).groups.items():
        rows = sorted(rows)
        if len(rows) >= records_per_patient:
            enrolled.append(rows[0])
            query.append(rows[1])
    return np.array(enrolled, dtype=int), np.array(query, dtype=int)


def _id_metrics(scores: np.ndarray) -> dict:
    """Top-1 accuracy and genuine-vs-impostor AUC from a (queries × enrolled) score matrix, diagonal = true."""
    n = len(scores)
    truth = np.eye(n, dtype=bool)
    return {"accuracy": float(np.mean(scores.argmax(axis=1) == np.arange(n))),
            "auc": float(roc_auc_score(truth.ravel(), scores.ravel()))}


def identification(features: np.ndarray, patient_ids, c: float = 1.0) -> dict:
    """Patient identification from ECG features: nearest neighbour (cosine) and linear probe.

    For each patient with at least two records, the first is enrolled and the second queried.
    Nearest neighbour: the query's cosine similarity to every enrolled record. Linear probe: a
    multinomial logistic regression on the standardised enrolled features (one record per
    patient), its class probabilities as scores. Returns accuracy and AUC of both, and the
    number of patients.
    """
    enrolled, query = identification_pairs(patient_ids)
    if len(enrolled) < 2:
        raise ValueError(f"identification needs at least 2 patients with 2 records, found {len(enrolled)}")
    x = np.asarray(features, dtype=float)
    a = x[enrolled] / np.linalg.norm(x[enrolled], axis=1, keepdims=True).clip(1e-12)
    b = x[query] / np.linalg.norm(x[query], axis=1, keepdims=True).clip(1e-12)
    nn = _id_metrics(b @ a.T)
    scaler = StandardScaler().fit(x[enrolled])
    with warnings.catch_warnings():  # one record per class is the point here
        warnings.filterwarnings("ignore", message="The number of unique classes")
        clf = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(x[enrolled]), np.arange(len(enrolled)))
    lp = _id_metrics(clf.predict_proba(scaler.transform(x[query])))
    return {"patients": len(enrolled), "nn_accuracy": nn["accuracy"], "nn_auc": nn["auc"],
            "lp_accuracy": lp["accuracy"], "lp_auc": lp["auc"]}


# ----------------------------------------------------------------------------- ablation data


def misaligned(texts: Sequence[str], fraction: float, seed: int = 0) -> list[str]:
    """The texts with ``fraction`` of the ECG-text pairs broken: those texts rotated among themselves.

    Rotating (not permuting) the chosen texts guarantees that every chosen record gets another
    record's text.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    texts = list(texts)
    k = int(round(fraction * len(texts)))
    if k < 2:
        return texts
    chosen = np.random.default_rng(seed).choice(len(texts), size=k, replace=False)
    out = list(texts)
    for src, dst in zip(chosen, np.roll(chosen, 1)):
        out[dst] = texts[src]
    return out


def label_texts(dataset) -> pd.Series:
    """Record id -> plain label text (the "w/o CQA" ablation): "ECG findings: a; b." from its
    statements' descriptions, most likely first, with no demographics and no waveform description."""
    desc = dataset.scp["description"] if dataset.scp is not None else pd.Series(dtype=str)
    out = {}
    for rec, codes in dataset.meta["scp_codes"].items():
        names = [str(desc.get(c, c)).strip().rstrip(".") for c, _ in sorted(codes.items(), key=lambda kv: -kv[1])]
        out[rec] = "ECG findings: " + "; ".join(names) + "." if names else "ECG findings: none stated."
    return pd.Series(out, name="text")


def subsample(n: int, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted row positions of a seeded random ``fraction`` of ``n`` records (at least one)."""
    k = max(1, int(round(fraction * n)))
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))

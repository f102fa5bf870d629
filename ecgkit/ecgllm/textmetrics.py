"""Open answers against reference answers: BLEU (sacrebleu), ROUGE-1/2/L (rouge-score), BERTScore.

BERTScore runs the local sentence encoder (:func:`ecgkit.models.text_encoder_path`, all-MiniLM-L6-v2
by default; any BERT-like folder or hub id in the local cache), so nothing is downloaded.
bert-score only knows the best layer of the models it lists; for any other model the layer is
given (``num_layers``, default: the encoder's last layer). Scores are not rescaled with a
baseline (bert-score ships baselines only for the models it lists), so they are comparable
between configurations here, not with published BERTScore values.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pandas as pd

__all__ = ["corpus_bleu", "sentence_bleu", "rouge", "bertscore", "text_metrics", "summarize"]

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def _check(predictions: Sequence[str], references: Sequence[str]) -> tuple[list[str], list[str]]:
    predictions, references = [p or "" for p in predictions], [r or "" for r in references]
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    return predictions, references


def corpus_bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (0-100) of the predictions against one reference each (sacrebleu defaults)."""
    import sacrebleu

    predictions, references = _check(predictions, references)
    return float(sacrebleu.corpus_bleu(predictions, [references]).score) if predictions else float("nan")


def sentence_bleu(prediction: str, reference: str) -> float:
    """Sentence BLEU (0-100) with sacrebleu's default smoothing."""
    import sacrebleu

    return float(sacrebleu.sentence_bleu(prediction or "", [reference or ""]).score)


def rouge(predictions: Sequence[str], references: Sequence[str], stemmer: bool = True) -> pd.DataFrame:
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measures per pair (0-1)."""
    from rouge_score import rouge_scorer

    predictions, references = _check(predictions, references)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=stemmer)
    rows = [{k: v.fmeasure for k, v in scorer.score(ref, pred).items()} for pred, ref in zip(predictions, references)]
    return pd.DataFrame(rows, columns=list(ROUGE_TYPES))


@lru_cache(maxsize=2)
def _scorer(folder: str, num_layers: int, batch_size: int):
    import bert_score

    return bert_score.BERTScorer(model_type=folder, num_layers=num_layers, batch_size=batch_size,
                                 lang="en", rescale_with_baseline=False)


def _layers(folder: str, num_layers: int | None) -> int:
    from transformers import AutoConfig

    total = int(AutoConfig.from_pretrained(folder).num_hidden_layers)
    if num_layers is None:
        return total
    if not 1 <= num_layers <= total:
        raise ValueError(f"num_layers must be between 1 and {total} for {folder}")
    return int(num_layers)


def bertscore(predictions: Sequence[str], references: Sequence, model=None, num_layers: int | None = None,
              batch_size: int = 32) -> pd.DataFrame:
    """BERTScore precision, recall and F1 per pair with a local encoder (an empty prediction scores 0).

    A reference may be a list of references: the best of them counts (bert-score's multi-reference
    scoring). ``model``: a folder or a name :func:`ecgkit.models.text_encoder_path` resolves (None:
    the packaged all-MiniLM-L6-v2); ``num_layers`` None: its last layer. No baseline rescaling
    (none exists for a local model), so values are not on the scale of roberta-large scores.
    """
    from ..models import text_encoder_path

    refs = [[r or ""] if r is None or isinstance(r, str) else [x or "" for x in r] for r in references]
    predictions = [p or "" for p in predictions]
    if len(predictions) != len(refs):
        raise ValueError(f"{len(predictions)} predictions but {len(refs)} references")
    if any(not r for r in refs):
        raise ValueError("every prediction needs at least one reference")
    out = pd.DataFrame({"bertscore_p": 0.0, "bertscore_r": 0.0, "bertscore_f1": 0.0}, index=range(len(predictions)))
    keep = [i for i, p in enumerate(predictions) if p.strip()]
    if keep:
        folder = str(text_encoder_path(model))
        scorer = _scorer(folder, _layers(folder, num_layers), batch_size)
        single = all(len(refs[i]) == 1 for i in keep)
        p, r, f = scorer.score([predictions[i] for i in keep],
                               [refs[i][0] if single else refs[i] for i in keep])
        out.loc[keep, "bertscore_p"] = p.numpy()
        out.loc[keep, "bertscore_r"] = r.numpy()
        out.loc[keep, "bertscore_f1"] = f.numpy()
    return out


def text_metrics(predictions: Sequence[str], references: Sequence[str], bertscore_model=None,
                 num_layers: int | None = None) -> pd.DataFrame:
    """Per pair: sentence BLEU, ROUGE-1/2/L F and BERTScore F1 (``bertscore_model=False`` skips it)."""
    predictions, references = _check(predictions, references)
    frame = rouge(predictions, references)
    frame.insert(0, "bleu", [sentence_bleu(p, r) for p, r in zip(predictions, references)])
    if bertscore_model is not False:
        frame["bertscore_f1"] = bertscore(predictions, references, bertscore_model, num_layers)["bertscore_f1"].to_numpy()
    return frame


def summarize(frame: pd.DataFrame, predictions: Sequence[str], references: Sequence[str]) -> dict:
    """Means of the per-pair metrics, with corpus BLEU in place of the mean sentence BLEU."""
    out = {"bleu": corpus_bleu(predictions, references)}
    for column in frame.columns:
        if column != "bleu":
            out[column] = float(np.mean(frame[column])) if len(frame) else float("nan")
    out["n"] = len(frame)
    return out

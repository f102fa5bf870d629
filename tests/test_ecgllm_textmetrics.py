"""BLEU, ROUGE and BERTScore on fixed strings."""
import pytest

from ecgkit.ecgllm.textmetrics import bertscore, corpus_bleu, rouge, sentence_bleu, summarize, text_metrics

REF = "the cat sat on the mat"


def test_bleu_exact_values():
    assert corpus_bleu([REF, "a wide QRS complex"], [REF, "a wide QRS complex"]) == pytest.approx(100.0)
    assert sentence_bleu(REF, REF) == pytest.approx(100.0)
    assert corpus_bleu(["completely unrelated words here"], [REF]) == pytest.approx(0.0)
    assert 0 < sentence_bleu("the cat sat on a mat", REF) < 100
    with pytest.raises(ValueError):
        corpus_bleu(["a"], ["a", "b"])


def test_rouge_exact_values():
    scores = rouge(["the cat sat", REF, "dog"], [REF, REF, REF])
    # "the cat sat" vs the reference: unigram P = 1, R = 3/6; bigram P = 1, R = 2/5; LCS = 3 words
    assert scores.loc[0, "rouge1"] == pytest.approx(2 / 3)
    assert scores.loc[0, "rouge2"] == pytest.approx(2 * 0.4 / 1.4)
    assert scores.loc[0, "rougeL"] == pytest.approx(2 / 3)
    assert (scores.loc[1] == 1.0).all() and (scores.loc[2] == 0.0).all()


def test_bertscore_with_the_local_encoder():
    frame = bertscore([REF, "", "the QRS complex is wide"], [REF, REF, REF])
    assert frame.loc[0, "bertscore_f1"] == pytest.approx(1.0, abs=1e-5)
    assert frame.loc[1, "bertscore_f1"] == 0.0                         # empty answer
    assert 0 < frame.loc[2, "bertscore_f1"] < frame.loc[0, "bertscore_f1"]
    with pytest.raises(ValueError, match="num_layers"):
        bertscore([REF], [REF], num_layers=99)


def test_text_metrics_table_and_summary():
    preds, refs = [REF, "the cat sat"], [REF, REF]
    frame = text_metrics(preds, refs)
    assert list(frame.columns) == ["bleu", "rouge1", "rouge2", "rougeL", "bertscore_f1"]
    assert frame.loc[0, "bleu"] == pytest.approx(100.0)
    summary = summarize(frame, preds, refs)
    assert summary["n"] == 2 and summary["rouge1"] == pytest.approx((1 + 2 / 3) / 2)
    assert summary["bleu"] == pytest.approx(corpus_bleu(preds, refs))
    assert "bertscore_f1" not in text_metrics(preds, refs, bertscore_model=False).columns


def test_bertscore_knows_the_answer_on_the_judges_control_pairs():
    """Beside the judge's control pairs: a reference scored against itself gets the maximum, and
    against another statement's reference (the pair's wrong answer) less."""
    from ecgkit.ecgllm.judge import control_pairs

    statements = {"t0": "Left bundle branch block widens the QRS complex beyond 120 ms with a broad R wave in V6.",
                  "t1": "Atrial fibrillation shows an irregularly irregular rhythm without distinct P waves.",
                  "t2": "Hyperkalaemia produces tall peaked T waves and, when severe, a widened QRS complex.",
                  "t3": "First-degree AV block is a PR interval longer than 200 ms with every P wave conducted."}
    items = [{"id": f"i{k}", "type": "open", "template": "open_definition", "topic": t, "question": "?",
              "reference": text} for k, (t, text) in enumerate(statements.items())]
    pairs = control_pairs(items)
    right = bertscore([p["right"] for p in pairs], [p["reference"] for p in pairs])["bertscore_f1"]
    wrong = bertscore([p["wrong"] for p in pairs], [p["reference"] for p in pairs])["bertscore_f1"]
    assert len(pairs) == 4
    assert right.to_numpy() == pytest.approx(1.0, abs=1e-5)
    assert (wrong < right - 0.05).all(), list(wrong)

"""The label-probability instrument's controls: a scorer that reads the stated answer passes, one
that leans the wrong way fails, shuffled statements sit near chance, and the inversion table
names the prompt part that turns a class's ranking around."""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from ecgkit.alfred.controls import (balanced_sample, control_table, design_scores, inversion_by_prompt_part,
                                    passed, run_controls, shuffled_truth, state_classes, without_parts)
from ecgkit.alfred.prompt import BuiltPrompt, SUPERCLASSES
from ecgkit.llm import LLM, OptionScores


class Reader(LLM):
    """Scores "yes" / a class name by whether the class is named in a cardiologist's report line
    (``sign=-1``: the other way round) or, without a report, in a ``Rules:`` line."""

    name = "reader"
    option_scoring = "full"

    def __init__(self, sign: float = 1.0):
        self.sign = sign

    def generate(self, prompts, **kwargs):
        raise NotImplementedError

    def _named(self, text: str) -> set:
        line = re.search(r"Cardiologist's report: (.*)", text) or re.search(r"Rules: (.*)", text)
        return set(re.findall(r"\((NORM|MI|STTC|CD|HYP)\)", line.group(1))) if line else set()

    def option_logprobs(self, items, system=None, progress=None, batch_size=None):
        out = []
        for prompt, prefix, options in items:
            named = self._named(prompt)
            asked = (prefix or "").rstrip(":") or re.search(r"is (\w+) \(", prompt.split("Question:")[-1]).group(1) \
                if (prefix or "Question:" in prompt) else None
            logprobs = {}
            for o in options:
                if o.strip() in SUPERCLASSES:       # the class-name design
                    logprobs[o] = math.log(0.8 if (o.strip() in named) == (self.sign > 0) else 0.05)
                else:
                    yes = (asked in named) == (self.sign > 0)
                    is_yes = o.strip().lower() == "yes"
                    logprobs[o] = math.log(0.4 if is_yes == yes else 0.02)
            out.append(OptionScores(logprobs, {o: "full" for o in options}, {o: 1 for o in options}))
        return out


@pytest.fixture
def truth():
    rng = np.random.default_rng(3)
    y = pd.DataFrame(rng.random((40, 5)) < 0.3, columns=list(SUPERCLASSES), index=[f"r{i}" for i in range(40)])
    y["NORM"] = ~y[["MI", "STTC", "CD", "HYP"]].any(axis=1)
    return y


def test_the_report_line_states_the_classes_before_the_instructions(truth):
    prompts = ["## 1. Features\nx\n\n## 5. Instructions\nanswer", "no sections"]
    stated = pd.DataFrame({"NORM": [False, False], "MI": [True, False], "STTC": [False, False],
                           "CD": [True, False], "HYP": [False, False]})
    out = state_classes(prompts, stated)
    assert out[0].index("Cardiologist's report") < out[0].index("## 5. Instructions")
    assert "myocardial infarction (MI) and conduction disturbance (CD) and nothing else" in out[0]
    assert out[1].endswith("Cardiologist's report: this ECG has none of the five superclasses.")
    with pytest.raises(ValueError, match="prompts"):
        state_classes(prompts, stated.iloc[:1])
    shuffled = shuffled_truth(truth, seed=1)
    assert shuffled.index.equals(truth.index) and (shuffled.sum() == truth.sum()).all()
    assert not shuffled.equals(truth)


@pytest.mark.parametrize("design", ["answer line", "question", "class name"])
def test_a_scorer_that_reads_the_answer_passes_and_an_inverted_one_fails(truth, design):
    prompts = ["## 1. Features\nsome numbers\n\n## 5. Instructions\nanswer"] * len(truth)
    good = run_controls(Reader(), prompts, truth, design, n_boot=50)
    pos = good.table.xs("positive", level="control")["estimate"]
    neg = good.table.loc[("negative", "macro")]
    assert pos["macro"] == pytest.approx(1.0) and good.passed
    assert abs(neg["estimate"] - 0.5) < 0.15 and neg["low"] <= 0.5 <= neg["high"]
    bad = run_controls(Reader(sign=-1), prompts, truth, design, n_boot=50)
    assert bad.table.loc[("positive", "macro"), "estimate"] == pytest.approx(0.0) and not bad.passed
    table = control_table({"reads": good, "inverted": bad})
    assert list(table[("", "passed")]) == ["yes", "no"] and ("positive", "macro") in table.columns
    assert good.summary()["passed"] and not bad.summary()["passed"]


def test_passing_needs_every_class_and_a_negative_control_at_chance():
    rows = {("positive", c): [0.95, 0.9, 1.0] for c in ("NORM", "MI", "macro")}
    rows[("negative", "macro")] = [0.5, 0.3, 0.7]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["estimate", "low", "high"])
    table.index = pd.MultiIndex.from_tuples(table.index, names=["control", "class"])
    assert passed(table)
    weak = table.copy(); weak.loc[("positive", "MI"), "estimate"] = 0.6
    assert not passed(weak)                                   # one class below 0.7
    leak = table.copy(); leak.loc[("negative", "macro")] = [0.9, 0.8, 0.95]
    assert not passed(leak)                                   # shuffled statements still rank: a leak


def test_balanced_sample_gives_every_class_positives(truth):
    ids = balanced_sample(truth, per_class=4)
    counts = truth.loc[ids].sum()
    assert (counts >= 4).all() and len(ids) < len(truth)
    assert list(ids) == [i for i in truth.index if i in set(ids)]          # the truth's order
    assert balanced_sample(truth, 4).equals(ids)                            # deterministic


def test_inversion_table_shows_the_part_that_moves_the_scores(truth):
    def built(row):
        named = " ".join(f"({c})" for c in SUPERCLASSES if not row[c])     # rules that name the wrong classes
        parts = {"features": "## 1. Features\nx", "rules": f"## 2. Rules\nRules: {named}",
                 "instructions": "## 5. Instructions\nanswer"}
        return BuiltPrompt("\n\n".join(parts.values()), "Proposed", parts)

    prompts = [built(row) for _, row in truth.iterrows()]
    assert "Rules:" not in without_parts(prompts[0], ["rules"])
    with pytest.raises(TypeError):
        without_parts("text", ["rules"])
    table = inversion_by_prompt_part(Reader(), prompts, truth, "answer line")
    assert table.loc[("whole prompt", "macro"), "AUROC"] == pytest.approx(0.0)
    assert table.loc[("without rule results", "macro"), "AUROC"] == pytest.approx(0.5)   # constant: chance
    hyp = table.loc[("whole prompt", "HYP")]
    assert hyp["mean score, positive records"] < hyp["mean score, negative records"]
    assert "without retrieved text" not in table.index.get_level_values("prompt")   # no such part here


def test_design_scores_refuses_unknown_designs_and_non_scorers():
    with pytest.raises(ValueError, match="unknown scoring design"):
        design_scores(Reader(), ["p"], "guess")

    class Writer(LLM):
        name = "writer"

        def generate(self, prompts, **kwargs):
            return []

    with pytest.raises(ValueError, match="cannot score"):
        design_scores(Writer(), ["p"], "class name")

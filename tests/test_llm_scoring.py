"""The one option scorer of ecgkit.llm: shared prefill on a tiny local model (equal to plain
full-sequence log-likelihoods), an endpoint's top_logprobs (a vLLM-like fake on 127.0.0.1), the
per-item score cache, ALFRED label probabilities and thresholds, repetition controls."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ecgkit.alfred.probabilities import (NO_VARIANTS, YES_VARIANTS, apply_thresholds, label_items,
                                         label_probabilities, label_scores, threshold_from_validation)
from ecgkit.alfred.prompt import SUPERCLASSES, SYSTEM_PROMPT, PromptBudget
from ecgkit.llm import (LLM, CachedLLM, Generation, GenerationCache, LocalLLM, OpenAIChat, OptionScores,
                        count_cut)
from ecgkit.standin import StandIn

from ecgllm_fakes import tiny_llama

PROMPT = ("Measured features: heart rate 72 bpm, PR 160 ms, QRS 140 ms, QTc 450 ms. "
          "Rule results: complete left bundle branch block. " * 3)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, llm_dir):
    folder = tiny_llama(tmp_path_factory.mktemp("tiny") / "llama", llm_dir)
    return LocalLLM(str(folder), threads=1, batch_size=4)


def _as_messages(prompt, prefix):
    if not prefix:
        return prompt
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": prefix}]


# ----------------------------------------------------------------------------- local: shared prefill


def test_shared_prefill_equals_full_sequence_loglikelihoods(tiny):
    items = [(PROMPT, f"{c}:", [" yes", " no", "Yes", " not present", ""]) for c in SUPERCLASSES]
    items += [("What is the normal PR interval?", None, ["120 to 200 ms", "1", "purple"]),
              ("Short?", "Answer:", [" A", " B long option"]),
              (PROMPT, None, ["NORM: yes"])]
    scored = tiny.option_logprobs(items, system=SYSTEM_PROMPT)
    assert len(scored) == len(items) and all(s.ok and not s.cached for s in scored)
    flat = [(k, o) for k, (_, _, opts) in enumerate(items) for o in opts if o]
    plain = tiny.loglikelihood([_as_messages(items[k][0], items[k][1]) for k, _ in flat], [o for _, o in flat],
                               system=SYSTEM_PROMPT, batch_size=1)
    got = [scored[k].logprobs[o] for k, o in flat]
    assert np.allclose(got, plain, atol=1e-4)
    assert scored[0].logprobs[""] == 0.0 and scored[0].tokens[""] == 0
    assert scored[0].tokens[" yes"] == 1 and scored[0].tokens[" not present"] == 2
    assert all(v == "full" for s in scored for v in s.status.values())
    # the same numbers one item at a time and through the single-item helper
    alone = tiny.option_logprobs([items[6]], system=SYSTEM_PROMPT)[0]
    assert all(math.isclose(alone.logprobs[o], scored[6].logprobs[o], abs_tol=1e-4) for o in items[6][2])
    helper = tiny.score_options(items[5][0], items[5][1], items[5][2])
    assert set(helper) == set(items[5][2]) and helper == tiny.option_logprobs([items[5]])[0].logprobs
    assert tiny.option_logprobs([items[5]])[0].best() == max(helper, key=helper.get)


def test_five_questions_share_one_prefill(tiny):
    """Label probabilities of one record: one forward pass over the prompt, one short batch."""
    decoder = tiny.model.get_decoder()
    shapes = []
    hook = decoder.register_forward_hook(lambda m, args, kwargs, out: shapes.append(tuple(kwargs["input_ids"].shape)),
                                         with_kwargs=True)
    items = label_items([PROMPT])
    try:
        scored = tiny.option_logprobs(items, system=SYSTEM_PROMPT)
    finally:
        hook.remove()
    # the prompt once; then only the five prefix rests ("NORM:", "MI:"...), a few tokens each, on its cache
    assert shapes[0][0] == 1 and shapes[0][1] > 40
    assert len(shapes) == 6 and all(n == 1 and width <= 3 for n, width in shapes[1:])
    flat = [(k, o) for k, (_, _, opts) in enumerate(items) for o in opts]
    plain = tiny.loglikelihood([_as_messages(items[k][0], items[k][1]) for k, _ in flat], [o for _, o in flat],
                               system=SYSTEM_PROMPT)
    assert np.allclose([scored[k].logprobs[o] for k, o in flat], plain, atol=1e-4)


def test_prompts_that_start_alike_run_only_what_differs(tiny):
    """Two configurations' prompts share their features part: the second runs only its own tail."""
    decoder = tiny.model.get_decoder()
    shapes = []
    hook = decoder.register_forward_hook(lambda m, args, kwargs, out: shapes.append(tuple(kwargs["input_ids"].shape)),
                                         with_kwargs=True)
    a, b = PROMPT + "\n\n## 2. Rule results\n- none positive", PROMPT + "\n\n## 3. Background\n- a card"
    items = label_items([a, b])
    try:
        scored = tiny.option_logprobs(items, system=SYSTEM_PROMPT)
    finally:
        hook.remove()
    firsts = [w for n, w in shapes if w > 3]            # the passes over a prompt (not the 2-token rests)
    assert len(firsts) == 2 and firsts[1] < firsts[0] / 2
    flat = [(k, o) for k, (_, _, opts) in enumerate(items) for o in opts]
    plain = tiny.loglikelihood([_as_messages(items[k][0], items[k][1]) for k, _ in flat], [o for _, o in flat],
                               system=SYSTEM_PROMPT)
    assert np.allclose([scored[k].logprobs[o] for k, o in flat], plain, atol=1e-4)


def test_over_context_is_an_error_item(tiny):
    long = "sinus rhythm " * 600   # over the tiny model's 1024 positions
    out = tiny.option_logprobs([(long, "NORM:", [" yes"]), ("ok?", None, [" yes"])])
    assert not out[0].ok and math.isnan(out[0].logprobs[" yes"]) and out[0].status[" yes"] == "nan"
    assert out[1].ok and out[1].logprobs[" yes"] < 0
    with pytest.raises(TypeError):
        tiny.option_logprobs(("prompt", None, ["a"]))       # not a list of items
    with pytest.raises(TypeError):
        tiny.option_logprobs([("prompt", None, "ab")])      # options must be a list


# ----------------------------------------------------------------------------- label probabilities


def test_label_probabilities_on_the_tiny_model(tiny):
    prompts = [PROMPT, "Measured features: heart rate 45 bpm, PR 260 ms. " * 4]
    scores = label_scores(tiny, prompts, ids=["a", "b"])
    assert len(scores) == 10 and (scores["error"] == "").all()
    assert ((scores["probability"] >= 0) & (scores["probability"] <= 1)).all()
    assert np.allclose(scores["probability"], scores["p_yes"] / (scores["p_yes"] + scores["p_no"]))
    assert (scores["mass"] <= 1 + 1e-6).all()
    # P(yes) is the summed probability of the single-token variants, from plain log-likelihoods
    yes = tiny.loglikelihood([_as_messages(PROMPT, "MI:")] * len(YES_VARIANTS), list(YES_VARIANTS),
                             system=SYSTEM_PROMPT)
    row = scores[(scores["record"] == "a") & (scores["class"] == "MI")].iloc[0]
    single = [v for v in YES_VARIANTS if tiny.count_tokens([v])[0] == 1]
    assert len(single) == 4
    assert row["p_yes"] == pytest.approx(sum(math.exp(lp) for lp in yes), rel=1e-3)
    table = label_probabilities(tiny, prompts, ids=["a", "b"])
    assert list(table.columns) == list(SUPERCLASSES) and list(table.index) == ["a", "b"]
    assert np.allclose(table.loc["a", "MI"], row["probability"])


class FixedScorer(LLM):
    """Scores each class's yes/no variants from a table; counts the items it was asked."""

    name = "fixed"

    def __init__(self, table):
        self.table, self.asked = table, []

    def generate(self, prompts, **kwargs):
        return [Generation(text="") for _ in prompts]

    @property
    def option_scoring(self):
        return "full"

    def option_logprobs(self, items, system=None, progress=None, batch_size=None):
        out = []
        for prompt, prefix, options in items:
            self.asked.append((prompt, prefix))
            values = self.table[(prompt, prefix)]
            out.append(OptionScores({o: values.get(o, -30.0) for o in options}, {o: "full" for o in options},
                                    {o: 1 for o in options}))
        return out


def test_label_probabilities_normalise_yes_and_no():
    table = {("p", f"{c}:"): {" yes": math.log(0.3), "Yes": math.log(0.1), " no": math.log(0.2)}
             for c in SUPERCLASSES}
    table[("p", "CD:")] = {" yes": math.log(0.05), " no": math.log(0.6), "no": math.log(0.15)}
    scores = label_scores(FixedScorer(table), ["p"])
    cd = scores.set_index("class").loc["CD"]
    assert cd["p_yes"] == pytest.approx(0.05, rel=1e-6) and cd["p_no"] == pytest.approx(0.75, rel=1e-6)
    assert cd["probability"] == pytest.approx(0.05 / 0.8)
    mi = scores.set_index("class").loc["MI"]
    assert mi["probability"] == pytest.approx(0.4 / 0.6) and mi["mass"] == pytest.approx(0.6, rel=1e-6)
    # an endpoint variant missing from the top list ("bound") or multi-token is left out of the mass
    bounded = OptionScores({" yes": -1.0, "yes": -2.0, " no": -1.0}, {" yes": "full", "yes": "bound", " no": "full"},
                           {" yes": 1, "yes": None, " no": 1})
    from ecgkit.alfred.probabilities import _mass

    assert _mass(bounded, YES_VARIANTS) == (pytest.approx(math.exp(-1.0)), 1)
    assert _mass(bounded, NO_VARIANTS)[1] == 1
    with pytest.raises(ValueError):
        label_scores(FixedScorer(table), ["p"], ids=[1, 2])


def test_label_probabilities_need_a_scorer():
    class Writer(LLM):
        name = "writer"

        def generate(self, prompts, **kwargs):
            return [Generation(text="NORM: yes") for _ in prompts]

    with pytest.raises(ValueError, match="cannot score"):
        label_probabilities(Writer(), ["p"])


# ----------------------------------------------------------------------------- thresholds


def test_threshold_from_validation_maximises_youden_on_validation_only():
    probs_val = pd.DataFrame({"MI": [0.1, 0.2, 0.35, 0.4, 0.8, 0.9], "CD": [0.5] * 6, "HYP": [0.2] * 6})
    y_val = pd.DataFrame({"MI": [0, 0, 0, 1, 1, 1], "CD": [0, 1, 0, 1, 0, 1], "HYP": [0] * 6}).astype(bool)
    thresholds = threshold_from_validation(probs_val, y_val)
    # MI: 0.4 and above are the positives; the threshold sits between 0.35 and 0.4
    assert 0.35 < thresholds["MI"] <= 0.4 and thresholds["MI"] == pytest.approx(0.375)
    assert thresholds["HYP"] == 0.5                      # no positive in validation: the default
    labels = apply_thresholds(probs_val, thresholds)
    assert list(labels["MI"]) == [False, False, False, True, True, True]
    # the test records play no part: the same thresholds whatever they are
    test = pd.DataFrame({"MI": [0.36, np.nan], "CD": [0.5, 0.1], "HYP": [0.9, 0.1]})
    assert list(apply_thresholds(test, thresholds)["MI"]) == [False, None]
    shuffled = probs_val.sample(frac=1, random_state=0)
    assert threshold_from_validation(shuffled, y_val.loc[shuffled.index]).equals(thresholds)
    with pytest.raises(ValueError):
        threshold_from_validation(probs_val, y_val.iloc[:3])


# ----------------------------------------------------------------------------- the per-item cache


class CountingScorer(FixedScorer):
    def option_logprobs(self, items, system=None, progress=None, batch_size=None):
        self.calls = getattr(self, "calls", 0) + 1
        return super().option_logprobs(items, system, progress, batch_size)


def test_cache_scores_only_new_items(tmp_path):
    table = {(f"p{k}", f"{c}:"): {" yes": -float(k + 1), " no": -1.0} for k in range(3) for c in SUPERCLASSES}
    backend = CountingScorer(table)
    cached = CachedLLM(backend, GenerationCache(tmp_path / "cache"))
    first = label_probabilities(cached, ["p0", "p1"])
    assert len(backend.asked) == 10 and cached.cache.n_scores() == 10
    again = label_probabilities(cached, ["p0", "p1", "p2"])      # one more record: five new items
    assert len(backend.asked) == 15 and backend.calls == 2
    assert np.allclose(again.iloc[:2].to_numpy(), first.to_numpy())
    out = cached.option_logprobs(label_items(["p2"]), system=SYSTEM_PROMPT)
    assert all(s.cached for s in out) and len(backend.asked) == 15
    # another system prompt is another item
    cached.option_logprobs(label_items(["p2"]), system="other")
    assert len(backend.asked) == 20
    # a fresh cache object on the same file sees them; failed items are not stored
    reopened = CachedLLM(backend, GenerationCache(tmp_path / "cache"))
    assert reopened.option_logprobs([("p0", "MI:", list(YES_VARIANTS + NO_VARIANTS))], system=SYSTEM_PROMPT)[0].cached
    assert reopened.cache.put_scores([("k", {"llm": "x"}, OptionScores.failed(["a"], "boom"))]) == 0
    nan_stored = OptionScores({"a": float("nan"), "b": -1.0}, {"a": "nan", "b": "full"}, {"a": None, "b": 1})
    reopened.cache.put_scores([("k2", {"llm": "x"}, nan_stored)])
    back = reopened.cache.get_scores(["k2"])["k2"]
    assert math.isnan(back.logprobs["a"]) and back.logprobs["b"] == -1.0 and back.cached


def test_local_scores_are_cached_per_item(tiny, tmp_path):
    cached = CachedLLM(tiny, GenerationCache(tmp_path / "c.sqlite"))
    items = label_items([PROMPT])
    fresh = cached.option_logprobs(items, system=SYSTEM_PROMPT)
    again = cached.option_logprobs(items, system=SYSTEM_PROMPT)
    assert cached.misses == 5 and cached.hits == 5 and all(s.cached for s in again)
    assert all(again[k].logprobs == fresh[k].logprobs for k in range(5))
    assert cached.option_scoring == "full"


# ----------------------------------------------------------------------------- endpoint (vLLM-like fake)


class LogprobServer(StandIn):
    """A chat/completions server answering ``max_tokens=1`` requests with vLLM-style logprobs.

    ``top`` maps the last message's content to a list of (token, logprob); with
    ``refuse_prefill`` a request with ``continue_final_message`` gets a 400 (like the OpenAI API).
    ``nologprobs:`` prompts get an answer without logprobs.
    """

    def __init__(self, top, refuse_prefill=False):
        self.requests = []
        self.top, self.refuse_prefill = top, refuse_prefill
        super().__init__(responder=self.respond)

    def respond(self, path, headers, body):
        self.requests.append(body)
        if self.refuse_prefill and body.get("continue_final_message"):
            return 400, {"error": {"message": "Unrecognized request argument supplied: "
                                              "continue_final_message"}}
        content = body["messages"][-1]["content"]
        user = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
        if user.startswith("nologprobs:"):
            return 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}}]}
        pairs = self.top.get(content) or self.top.get(user.split("\n\n")[0], [])
        entries = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in pairs]
        chosen = dict(entries[0]) if entries else {"token": "?", "logprob": -9.0, "bytes": []}
        return 200, {
            "id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": chosen["token"]},
                         "logprobs": {"content": [{**chosen, "top_logprobs": entries[:body.get("top_logprobs", 0)]}]},
                         "finish_reason": "length"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}}


def _endpoint(server, **kwargs):
    return OpenAIChat(model="fake-70b", base_url=server.url, api_key="sk-x", timeout=5, retries=1,
                      backoff=0.01, max_workers=2, **kwargs)


def test_endpoint_reads_top_logprobs_after_a_continued_prefix():
    top = {"NORM:": [(" yes", -0.2), (" no", -1.9), (" Yes", -4.0), ("yes", -5.0)],
           "Grade it.": [("4", -0.5), ("5", -1.2), ("3", -2.5)]}
    server = LogprobServer(top)
    try:
        llm = _endpoint(server)
        assert llm.option_scoring == "first_token"
        out = llm.option_logprobs([("The ECG...", "NORM:", [" yes", " no", " No", " yes please"]),
                                   ("Grade it.", None, ["1", "2", "3", "4", "5"])], system="sys")
        norm, grade = out
        assert norm.logprobs[" yes"] == -0.2 and norm.status[" yes"] == "full" and norm.tokens[" yes"] == 1
        assert norm.logprobs[" No"] == -5.0 and norm.status[" No"] == "bound"        # lowest returned: a bound
        assert norm.logprobs[" yes please"] == -0.2 and norm.status[" yes please"] == "first_token"
        assert grade.status["1"] == "bound" and grade.logprobs["4"] == -0.5
        body = server.requests[0] if server.requests[0]["messages"][-1]["role"] == "assistant" else server.requests[1]
        assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
        assert body["logprobs"] is True and body["top_logprobs"] == 20 and body["max_tokens"] == 1
        assert body["messages"][0] == {"role": "system", "content": "sys"}
        assert body["messages"][-1] == {"role": "assistant", "content": "NORM:"}
        plain = next(b for b in server.requests if b["messages"][-1]["role"] == "user")
        assert "continue_final_message" not in plain
        # label probabilities from the endpoint: single-token variants found in the top list
        probs = label_scores(llm, ["The ECG..."], classes=["NORM"], system=None)
        p_yes, p_no = math.exp(-0.2) + math.exp(-4.0) + math.exp(-5.0), math.exp(-1.9)
        assert probs["probability"][0] == pytest.approx(p_yes / (p_yes + p_no))
    finally:
        server.close()


def test_endpoint_falls_back_to_asking_in_the_user_message():
    server = LogprobServer({"The ECG...": [("yes", -0.1), ("no", -2.5)]}, refuse_prefill=True)
    try:
        llm = _endpoint(server)
        first = llm.option_logprobs([("The ECG...", "MI:", ["yes", "no", " yes"])])[0]
        assert first.ok and first.logprobs["yes"] == -0.1 and first.status[" yes"] == "bound"
        assert server.requests[0].get("continue_final_message") and not server.requests[1].get("continue_final_message")
        asked = server.requests[1]["messages"][-1]
        assert asked["role"] == "user" and 'starts with "MI:"' in asked["content"]
        llm.option_logprobs([("The ECG...", "CD:", ["yes", "no"])])      # settled: no second try
        assert len(server.requests) == 3 and "continue_final_message" not in server.requests[2]
        failed = llm.option_logprobs([("nologprobs: x", None, ["a"])])[0]
        assert not failed.ok and "logprobs" in failed.error and math.isnan(failed.logprobs["a"])
        strict = _endpoint(server, prefill="continue")   # no fallback: an error item
        assert not strict.option_logprobs([("The ECG...", "MI:", ["yes"])])[0].ok
        with pytest.raises(ValueError):
            _endpoint(server, prefill="maybe")
    finally:
        server.close()


# ----------------------------------------------------------------------------- loops: repetition controls


def test_repetition_controls_are_settings_and_cache_keys(tiny, tmp_path):
    assert tiny.settings()["llm"] == tiny.name and "repetition_penalty" not in tiny.settings()
    penalised = LocalLLM(str(tiny.path), threads=1, repetition_penalty=1.15, no_repeat_ngram_size=3)
    assert penalised.settings()["repetition_penalty"] == 1.15 and penalised.settings()["no_repeat_ngram_size"] == 3
    plain = tiny.generate(["Repeat: a a a a"], max_new_tokens=12)[0]
    guarded = penalised.generate(["Repeat: a a a a"], max_new_tokens=12)[0]
    assert plain.ok and guarded.ok
    ids = penalised.tokenizer(guarded.text, add_special_tokens=False)["input_ids"]
    trigrams = [tuple(ids[i:i + 3]) for i in range(len(ids) - 2)]
    assert len(trigrams) == len(set(trigrams))        # no 3-gram twice
    cache = GenerationCache(tmp_path / "g.sqlite")
    CachedLLM(tiny, cache).generate(["Repeat: a a a a"], max_new_tokens=12)
    again = CachedLLM(penalised, cache)
    assert not again.generate(["Repeat: a a a a"], max_new_tokens=12)[0].cached   # the penalty is in the key
    assert again.settings() == penalised.settings()


def test_endpoint_sends_frequency_penalty():
    server = LogprobServer({})
    try:
        llm = _endpoint(server, frequency_penalty=0.5)
        assert llm.settings()["frequency_penalty"] == 0.5 and llm.settings()["prefill"] == "auto"
        llm.generate(["hello"], max_new_tokens=3)
        llm.generate(["hello"], max_new_tokens=3, frequency_penalty=0.0, presence_penalty=0.2)
        assert server.requests[0]["frequency_penalty"] == 0.5 and "presence_penalty" not in server.requests[0]
        assert server.requests[1]["frequency_penalty"] == 0.0 and server.requests[1]["presence_penalty"] == 0.2
    finally:
        server.close()


def test_cut_answers_are_counted():
    gens = [Generation(text="a", finish_reason="length"), Generation(text="b"), Generation.failed("x")]
    assert [g.cut for g in gens] == [True, False, False] and count_cut(gens) == 1


def test_diagnose_probabilities_on_measured_records(tiny):
    from ecgkit.alfred.pipeline import measure_ecgs
    from ecgkit.alfred.probabilities import diagnose_probabilities
    from ecgkit.data.synthetic import simulate_ecg

    sigs = [simulate_ecg(c, noise=0.0, seed=i)[0] for i, c in enumerate((("NORM",), ("CLBBB",)))]
    measured = measure_ecgs(np.stack(sigs), 500, ages=[50, 60], sexes=[0, 1], ids=["n", "l"], progress=False)
    short = PromptBudget.for_profile("quick", max_chars=3000, lead_features=("st_j60",))   # within the tiny model's 1024 positions
    probs = diagnose_probabilities(measured, "LLM without retrieval", tiny, budget=short)
    assert list(probs.index) == ["n", "l"] and list(probs.columns) == list(SUPERCLASSES)
    assert ((probs >= 0) & (probs <= 1)).all().all()
    with pytest.raises(ValueError):
        diagnose_probabilities(measured, "Rules only", tiny)
    from ecgkit.alfred.probabilities import diagnose_probabilities_many

    both = diagnose_probabilities_many(measured, ["LLM without retrieval"], tiny, budget=short)
    assert list(both) == ["LLM without retrieval"] and list(both["LLM without retrieval"].index) == ["n", "l"]
    assert np.allclose(both["LLM without retrieval"].to_numpy(), probs.to_numpy(), atol=1e-4)


def test_an_endpoint_judge_gives_an_expected_rating(tmp_cache):
    from ecgkit.ecgllm.judge import judge_answers

    server = LogprobServer({"Question: q": [("4", -0.3), ("5", -1.5), ("3", -2.0), ("The", -2.5)]})
    try:
        frame = judge_answers(_endpoint(server), [{"question": "q", "reference": "r", "answer": "a"}])
        w = {3: math.exp(-2.0), 4: math.exp(-0.3), 5: math.exp(-1.5)}     # 1 and 2 not returned: 0
        assert frame["score"][0] == 4
        assert frame["expected"][0] == pytest.approx(sum(d * p for d, p in w.items()) / sum(w.values()))
        assert frame["p1"][0] == 0 and frame["p4"][0] == pytest.approx(w[4] / sum(w.values()))
        assert server.requests[0]["logprobs"] is True and server.requests[0]["max_tokens"] == 1
    finally:
        server.close()


def test_anti_loop_options_follow_the_backend(tmp_path, llm_dir):
    from ecgkit.llm import ANTI_LOOP, CachedLLM, LocalLLM, OpenAIChat, anti_loop_options

    local = LocalLLM(str(llm_dir))                    # nothing is loaded until it generates
    assert anti_loop_options(local) == ANTI_LOOP["local"]
    assert anti_loop_options(CachedLLM(local, tmp_path / "c.sqlite")) == ANTI_LOOP["local"]
    endpoint = OpenAIChat(model="m", base_url="http://127.0.0.1:9/v1")
    assert anti_loop_options(endpoint) == {"frequency_penalty": 0.5}
    assert anti_loop_options(object()) == {}


def test_keep_prefix_lets_generate_start_from_the_scored_prompt(tiny):
    from ecgkit.llm import keep_prefix

    messages = [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": "NORM:"}]
    items = [(PROMPT, f"{c}:", [" yes", " no"]) for c in SUPERCLASSES]
    plain = tiny.generate([messages], max_new_tokens=6, system=SYSTEM_PROMPT)[0]
    model, _ = tiny._load()
    seen = []
    hook = model.register_forward_pre_hook(lambda m, args, kw: seen.append(kw["input_ids"].shape[1]), with_kwargs=True)
    try:
        with keep_prefix(tiny):
            scored = tiny.option_logprobs(items, system=SYSTEM_PROMPT)
            seen.clear()
            shared = tiny.generate([messages], max_new_tokens=6, system=SYSTEM_PROMPT)[0]
        assert tiny._kept is None and not tiny._keeping                    # nothing survives the block
        seen_after = list(seen)
        seen.clear()
        again = tiny.generate([messages], max_new_tokens=6, system=SYSTEM_PROMPT)[0]
    finally:
        hook.remove()
    assert shared.text == plain.text == again.text and shared.completion_tokens == plain.completion_tokens
    prompt_tokens = plain.prompt_tokens
    assert seen_after[0] < 8 < prompt_tokens and seen[0] == prompt_tokens     # only the tail was prefilled
    fresh = tiny.option_logprobs(items, system=SYSTEM_PROMPT)                   # same scores without keep_prefix
    assert np.allclose([s.logprobs[o] for s in scored for o in (" yes", " no")],
                       [s.logprobs[o] for s in fresh for o in (" yes", " no")], atol=1e-4)
    with keep_prefix(object()) as other:                                       # other backends: nothing to keep
        assert isinstance(other, object)

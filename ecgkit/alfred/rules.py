"""ALFRED step 3: documented rules from the features to the 45 catalog conditions.

Every condition of :data:`ecgkit.knowledge.catalog.CONDITIONS` has exactly one :class:`Rule`:
a human-readable ``criterion`` (thresholds included; it goes into the LLM prompt), the feature
names it ``needs`` and a function of the features that returns ``True``, ``False`` or ``None``.
``None`` means *undetermined*: the features that would decide it are missing (NaN). The rules
never guess: they use three-valued (Kleene) logic, so a missing feature only makes a result
``None`` when the present features do not already decide it (e.g. left atrial enlargement is
``True`` from a wide P in II even when the V1 P terminal force is missing, but ``None`` when
the P in II is normal and V1 is missing).

Thresholds follow the criteria sections of the expert cards in
``ecgkit/knowledge/corpus/expert/conditions/<key>.md`` (AHA/ACCF/HRS recommendations, the
Fourth Universal Definition of Myocardial Infarction, ...). Where the card's criterion cannot be
checked from the feature set (beat-by-beat morphology, pacing spikes, F waves), the rule is a
documented *heuristic* on the global features (``Rule.heuristic`` is ``True`` and the criterion
text says so).

Conventions
-----------
* Features: a mapping (``dict`` or ``pandas.Series``) with ``f"{key}_{lead}"`` for the lead
  features and the global keys of the catalog, plus ``age`` (years) and ``sex`` (0 = male,
  1 = female, PTB-XL coding). Missing keys, ``None`` and NaN all count as missing.
* Amplitudes in mV, durations in ms, axes in degrees (normalised to (-180, 180]).
* Q and S waves: the rules use their *depth*, the magnitude of ``q_amplitude``/``s_amplitude``,
  so both conventions work: signed amplitudes (Q and S negative) and positive depths (which
  :mod:`ecgkit.alfred.features` reports). ``p_terminal_negative`` (the P terminal force in V1,
  mV·ms) is used as a magnitude as well.
* R/S comparisons are made on the amplitudes (R height vs S depth), not on ``r_s_ratio``, so a
  lead without an S wave (R/S undefined) still counts as R-dominant.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Optional

import pandas as pd

from ..knowledge.catalog import condition, feature
from ..vocabulary import LEADS, SUPERCLASSES

__all__ = [
    "Rule", "RULES", "rule", "evaluate_rules", "positive_conditions",
    "rules_to_superclasses", "rule_table", "SUPERCLASSES", "CONTIGUOUS_PAIRS", "as_number",
]

Tri = Optional[bool]

LIMB = ("I", "II", "III", "aVR", "aVL", "aVF")
PRECORDIAL = ("V1", "V2", "V3", "V4", "V5", "V6")
#: Anatomically contiguous lead pairs (Fourth Universal Definition groupings: inferior II, III,
#: aVF; lateral I, aVL; precordial neighbours V1..V6). aVR is not part of any pair.
CONTIGUOUS_PAIRS = (("II", "III"), ("II", "aVF"), ("III", "aVF"), ("I", "aVL"),
                    ("V1", "V2"), ("V2", "V3"), ("V3", "V4"), ("V4", "V5"), ("V5", "V6"))

# ---- thresholds shared by several rules (units in the names) -----------------------------
SINUS_P_RATIO = 0.9          # beats with a P wave (sinus cards)
SINUS_P_AXIS = (0.0, 75.0)   # degrees (sinus cards)
AF_P_RATIO = 0.8             # beats with a P wave at a constant PR (fitted on PTB-XL folds 1-9)
AF_ABRUPT = 1.75             # RMSSD / SDNN below this: no short-long ectopic pattern (folds 1-9: maximises
                             # AF sensitivity minus false alarms on sinus rhythm with premature beats)
SINUS_RATE_P_AXIS = (-15.0, 90.0)   # degrees: sinus origin for the rate rules (fitted on folds 1-9)
IRREGULAR_RR = 0.08          # RMSSD / mean RR above the sinus range (heuristic)
AF_RR = 0.10                 # normalised RMSSD (RMSSD / mean RR) > 0.1: Dash et al. 2009
REGULAR_RR = 0.05            # RMSSD / mean RR for "very low" irregularity (heuristic)
ABRUPT = 1.5                 # RMSSD / SDNN: abrupt short-long cycles vs gradual change (heuristic)
SINUS_ARRH_SDNN = 53.0       # ms; cyclic variation with SDNN 53 ms spans about 160 ms (heuristic)
Q_ABSENT_MV = 0.05           # "no septal q": depth below this
Q_PRESENT_MV = 0.025         # a q wave that is there at all (extractor's wave threshold)
R_PRIME_MV = 0.05            # a measurable R'
QS_R_MV = 0.05               # R below this with a Q/S of at least 0.1 mV: QS complex
PATH_Q_MS, PATH_Q_MV = 30.0, 0.1   # Fourth Universal Definition, general leads
ANT_Q_MS = 20.0              # any Q wave in V2-V3 longer than this
DELTA_MS = 20.0              # a slurred upstroke at least this long is a delta wave
ST_DEP_MV = -0.05
T_INV_MV = -0.1
PROMINENT_R_MV = 0.5
NOISE_MV = 0.05
DRIFT_MV = 0.5
FLAT_QRS_MV = 0.05
NORMAL_QRS_MV = 0.5
PTF_V1_MVMS = 4.0            # 0.1 mV x 40 ms = Morris index 0.04 mm·s (1 mm = 0.1 mV, 1 s = 1000 ms)


# ---- three-valued helpers ---------------------------------------------------------------
def as_number(x) -> Optional[float]:
    """``x`` as a float, None when it is missing, NaN or not a number (the one reading of a feature
    value in ``ecgkit.alfred``)."""
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _cmp(v: Optional[float], op, t: float) -> Tri:
    return None if v is None else bool(op(v, t))


def _ge(v, t): return _cmp(v, operator.ge, t)
def _gt(v, t): return _cmp(v, operator.gt, t)
def _le(v, t): return _cmp(v, operator.le, t)
def _lt(v, t): return _cmp(v, operator.lt, t)


def _between(v, lo, hi, lo_open=False, hi_open=False) -> Tri:
    if v is None:
        return None
    a = v > lo if lo_open else v >= lo
    b = v < hi if hi_open else v <= hi
    return bool(a and b)


def _all(vals: Iterable[Tri]) -> Tri:
    vals = list(vals)
    if any(v is False for v in vals):
        return False
    if any(v is None for v in vals):
        return None
    return True


def _any(vals: Iterable[Tri]) -> Tri:
    vals = list(vals)
    if any(v is True for v in vals):
        return True
    if any(v is None for v in vals):
        return None
    return False


def _not(v: Tri) -> Tri:
    return None if v is None else not v


def _at_least(k: int, vals: Iterable[Tri]) -> Tri:
    vals = list(vals)
    t = sum(v is True for v in vals)
    u = sum(v is None for v in vals)
    if t >= k:
        return True
    if t + u < k:
        return False
    return None


def _depth(v: Optional[float]) -> Optional[float]:
    """A Q or S depth from its amplitude, signed or not."""
    return None if v is None else abs(v)


def _axis(v: Optional[float]) -> Optional[float]:
    if v is None:
        return None
    a = ((v + 180.0) % 360.0) - 180.0
    return 180.0 if a == -180.0 else a


def _sex_dependent(v: Optional[float], sex: Optional[float], op, male_t: float,
                   female_t: float) -> Tri:
    """``op(v, threshold)`` with a sex-specific threshold; decided without sex when both agree."""
    if v is None:
        return None
    if sex is not None and sex in (0.0, 1.0):
        return bool(op(v, female_t if sex == 1.0 else male_t))
    a, b = bool(op(v, male_t)), bool(op(v, female_t))
    return a if a == b else None


class _Features:
    """Read access to the features a rule declared in ``needs`` (anything else is a bug)."""

    def __init__(self, data: Mapping, needs: tuple[str, ...], key: str):
        self._data, self._needs, self._key = data, set(needs), key

    def __call__(self, name: str) -> Optional[float]:
        if name not in self._needs:
            raise KeyError(f"rule {self._key!r} reads {name!r}, which is not in its needs")
        try:
            v = self._data[name]
        except (KeyError, IndexError):
            return None
        return as_number(v)

    def lead(self, feat: str, lead: str) -> Optional[float]:
        return self(f"{feat}_{lead}")

    def depth(self, feat: str, lead: str) -> Optional[float]:
        return _depth(self(f"{feat}_{lead}"))


def _lf(feat: str, leads: Iterable[str]) -> list[str]:
    return [f"{feat}_{lead}" for lead in leads]


# ---- rule record ------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    key: str
    criterion: str
    needs: tuple[str, ...]
    fn: Callable[[_Features], Tri] = field(repr=False)
    heuristic: bool = False

    @property
    def condition(self):
        return condition(self.key)

    def evaluate(self, features: Mapping) -> Tri:
        out = self.fn(_Features(features, self.needs, self.key))
        return None if out is None else bool(out)

    __call__ = evaluate


# ---- building blocks shared by several rules -------------------------------------------
def _sinus_p(f) -> Tri:
    return _all([_ge(f("p_wave_ratio"), SINUS_P_RATIO),
                 _between(_axis(f("p_axis")), *SINUS_P_AXIS)])


_SINUS_P_NEEDS = ["p_wave_ratio", "p_axis"]


def _abruptness(f) -> Optional[float]:
    """RMSSD / SDNN from rr_irregularity (RMSSD / mean RR), heart rate and rr_sd."""
    irr, hr, sd = f("rr_irregularity"), f("heart_rate"), f("rr_sd")
    if irr is None or hr is None or sd is None or hr <= 0:
        return None
    if sd <= 0:
        return math.inf if irr > 0 else 0.0
    return irr * (60000.0 / hr) / sd


def _no_septal_q(f, leads=("I", "V5", "V6")) -> Tri:
    return _all(_lt(f.depth("q_amplitude", ld), Q_ABSENT_MV) for ld in leads)


def _delta_leads(f) -> Tri:
    """A delta wave (≥ DELTA_MS) in at least two leads."""
    return _at_least(2, (_ge(f.lead("delta_wave", ld), DELTA_MS) for ld in LEADS))


def _qs(f, lead) -> Tri:
    return _all([_lt(f.lead("r_amplitude", lead), QS_R_MV),
                 _any([_ge(f.depth("q_amplitude", lead), PATH_Q_MV),
                       _ge(f.depth("s_amplitude", lead), PATH_Q_MV)])])


def _path_q(f, lead) -> Tri:
    """Fourth Universal Definition: Q ≥ 30 ms and ≥ 0.1 mV deep, or a QS complex."""
    return _any([_all([_ge(f.lead("q_duration", lead), PATH_Q_MS),
                       _ge(f.depth("q_amplitude", lead), PATH_Q_MV)]),
                 _qs(f, lead)])


def _path_q_needs(leads) -> list[str]:
    return (_lf("q_duration", leads) + _lf("q_amplitude", leads) + _lf("r_amplitude", leads)
            + _lf("s_amplitude", leads))


def _r_dominant(f, lead) -> Tri:
    """R taller than the S is deep (R/S > 1), computed from the amplitudes."""
    r, s = f.lead("r_amplitude", lead), f.depth("s_amplitude", lead)
    if r is None or s is None:
        return None
    return r > s


def _wide_s(f, lead) -> Tri:
    """S wave longer than the R wave or longer than 40 ms."""
    sd, rd = f.lead("s_duration", lead), f.lead("r_duration", lead)
    return _any([_gt(sd, 40.0), None if sd is None or rd is None else sd > rd])


def _rbbb_v1(f, complete: bool) -> Tri:
    """rsR' in V1 or V2; complete: R' taller than R, or a broad R (R-peak time V1 > 50 ms)."""
    parts = []
    for ld in ("V1", "V2"):
        rp = f.lead("r_prime_amplitude", ld)
        if complete:
            r = f.lead("r_amplitude", ld)
            parts.append(_all([_ge(rp, R_PRIME_MV),
                               None if rp is None or r is None else rp > r]))
        else:
            parts.append(_ge(rp, R_PRIME_MV))
    if complete:
        parts.append(_gt(f.lead("r_peak_time", "V1"), 50.0))
    return _any(parts)


def _rbbb_needs() -> list[str]:
    return (_lf("r_prime_amplitude", ("V1", "V2")) + _lf("r_amplitude", ("V1", "V2"))
            + ["r_peak_time_V1"] + _lf("s_duration", ("I", "V6")) + _lf("r_duration", ("I", "V6")))


def _complete_lbbb(f) -> Tri:
    return _all([_ge(f("qrs_duration"), 120.0),
                 _gt(f.lead("r_peak_time", "V5"), 60.0), _gt(f.lead("r_peak_time", "V6"), 60.0),
                 _no_septal_q(f),
                 _not(_r_dominant(f, "V1"))])


_CLBBB_NEEDS = (["qrs_duration", "r_peak_time_V5", "r_peak_time_V6"]
                + _lf("q_amplitude", ("I", "V5", "V6")) + ["r_amplitude_V1", "s_amplitude_V1"])


def _complete_rbbb(f) -> Tri:
    return _all([_ge(f("qrs_duration"), 120.0), _rbbb_v1(f, complete=True),
                 _wide_s(f, "I"), _wide_s(f, "V6")])


_CRBBB_NEEDS = ["qrs_duration"] + _rbbb_needs()


def _incomplete_lbbb(f) -> Tri:
    return _all([_between(f("qrs_duration"), 110.0, 120.0, hi_open=True),
                 _all(_gt(f.lead("r_peak_time", ld), 60.0) for ld in ("V4", "V5", "V6")),
                 _no_septal_q(f)])


_ILBBB_NEEDS = (["qrs_duration"] + _lf("r_peak_time", ("V4", "V5", "V6"))
                + _lf("q_amplitude", ("I", "V5", "V6")))


def _incomplete_rbbb(f) -> Tri:
    return _all([_between(f("qrs_duration"), 110.0, 120.0, hi_open=True),
                 _rbbb_v1(f, complete=False), _wide_s(f, "I"), _wide_s(f, "V6")])


_IRBBB_NEEDS = ["qrs_duration"] + _lf("r_prime_amplitude", ("V1", "V2")) + _lf(
    "s_duration", ("I", "V6")) + _lf("r_duration", ("I", "V6"))


def _sokolow(f) -> Tri:
    """S V1 + max(R V5, R V6) ≥ 3.5 mV (decided with one of R V5/V6 missing when already ≥)."""
    s1 = f.depth("s_amplitude", "V1")
    r5, r6 = f.lead("r_amplitude", "V5"), f.lead("r_amplitude", "V6")
    if s1 is None:
        return None
    rs = [r for r in (r5, r6) if r is not None]
    if rs and s1 + max(rs) >= 3.5:
        return True
    if len(rs) < 2:
        return None
    return False


_SOKOLOW_NEEDS = ["s_amplitude_V1", "r_amplitude_V5", "r_amplitude_V6"]


def _qtc(f) -> tuple[Optional[float], Optional[float], Optional[float]]:
    return f("qtc_bazett"), f("qtc_fridericia"), f("heart_rate")


def _qtc_rule(f, test: Callable[[float], Tri]) -> Tri:
    """Bazett at 60-90 bpm, Fridericia outside (card); without heart rate, both must agree."""
    b, fr, hr = _qtc(f)
    if hr is not None:
        return test(b) if 60.0 <= hr <= 90.0 else test(fr)
    rb, rf = test(b), test(fr)
    return rb if rb == rf else None


def _ste_v23(v: Optional[float], age: Optional[float], sex: Optional[float]) -> Tri:
    """V2-V3 J-point elevation: ≥ 0.2 mV men ≥ 40 y, ≥ 0.25 mV men < 40 y, ≥ 0.15 mV women."""
    if v is None:
        return None
    if sex == 1.0:
        ts = [0.15]
    elif sex == 0.0:
        ts = [0.2] if (age is not None and age >= 40) else [0.25] if age is not None else [0.2, 0.25]
    else:
        ts = [0.15, 0.2, 0.25] if age is None else [0.15, 0.25] if age < 40 else [0.15, 0.2]
    res = {v >= t for t in ts}
    return res.pop() if len(res) == 1 else None


def _pairs(test: Callable[[str], Tri], pairs) -> Tri:
    results = {}
    out = []
    for a, b in pairs:
        for ld in (a, b):
            if ld not in results:
                results[ld] = test(ld)
        out.append(_all([results[a], results[b]]))
    return _any(out)


# ---- the rules ---------------------------------------------------------------------------
def _r_sinus_rhythm(f):
    return _all([_sinus_p(f), _between(f("heart_rate"), 60.0, 100.0)])


def _sinus_origin(f) -> Tri:
    """A sinus rhythm for the rate rules: P waves before most beats (as many as AF's cut-off
    denies AF) with a P axis of sinus origin (:data:`SINUS_RATE_P_AXIS`)."""
    return _all([_ge(f("p_wave_ratio"), AF_P_RATIO),
                 _between(_axis(f("p_axis")), *SINUS_RATE_P_AXIS)])


def _r_sinus_brady(f):
    return _all([_sinus_origin(f), _lt(f("heart_rate"), 60.0)])


def _r_sinus_tachy(f):
    return _all([_sinus_origin(f), _gt(f("heart_rate"), 100.0)])


def _r_sinus_arrhythmia(f):
    ab = _abruptness(f)
    return _all([_sinus_p(f), _ge(f("rr_sd"), SINUS_ARRH_SDNN), _lt(ab, ABRUPT)])


def _r_af(f):
    # few P waves: AF; P waves before half the beats or more: only without the abrupt
    # short-long cycles of premature beats (those are premature complexes, not AF)
    return _all([_lt(f("p_wave_ratio"), AF_P_RATIO), _ge(f("rr_irregularity"), AF_RR),
                 _any([_lt(f("p_wave_ratio"), 0.5), _lt(_abruptness(f), AF_ABRUPT)])])


def _r_flutter(f):
    return _all([_between(f("heart_rate"), 135.0, 165.0), _lt(f("p_wave_ratio"), 0.5),
                 _lt(f("rr_irregularity"), AF_RR), _lt(f("qrs_duration"), 120.0)])


def _r_irregular(f):
    # the card: irregular rhythms that are not a more specific label (sinus arrhythmia, AF)
    return _all([_ge(f("rr_irregularity"), IRREGULAR_RR), _ge(f("p_wave_ratio"), 0.5),
                 _lt(f("qrs_duration"), 120.0), _not(_r_sinus_arrhythmia(f)), _not(_r_af(f))])


def _r_svt(f):
    return _all([_gt(f("heart_rate"), 100.0), _lt(f("rr_irregularity"), REGULAR_RR),
                 _lt(f("p_wave_ratio"), 0.5), _lt(f("qrs_duration"), 120.0)])


def _r_premature(f):
    return _all([_ge(f("rr_irregularity"), IRREGULAR_RR), _ge(_abruptness(f), ABRUPT),
                 _ge(f("p_wave_ratio"), 0.5)])


def _r_paced(f):
    return _all([_ge(f("qrs_duration"), 140.0), _between(_axis(f("qrs_axis")), -90.0, -30.0),
                 _not(_r_dominant(f, "V1")), _lt(f("rr_irregularity"), REGULAR_RR)])


def _r_1avb(f):
    return _all([_gt(f("pr_interval"), 200.0), _ge(f("p_wave_ratio"), SINUS_P_RATIO)])


def _r_short_pr(f):
    return _all([_lt(f("pr_interval"), 120.0), _lt(f("qrs_duration"), 110.0),
                 _not(_delta_leads(f))])


def _r_wpw(f):
    return _all([_lt(f("pr_interval"), 120.0), _delta_leads(f), _ge(f("qrs_duration"), 110.0)])


def _r_lafb(f):
    return _all([_between(_axis(f("qrs_axis")), -90.0, -45.0), _lt(f("qrs_duration"), 120.0),
                 _ge(f.depth("q_amplitude", "aVL"), Q_PRESENT_MV), _r_dominant(f, "aVL"),
                 _ge(f.lead("r_peak_time", "aVL"), 45.0)])


def _r_lpfb(f):
    return _all([_between(_axis(f("qrs_axis")), 90.0, 180.0, lo_open=True),
                 _lt(f("qrs_duration"), 120.0), _not(_r_dominant(f, "I")),
                 _ge(f.depth("q_amplitude", "III"), Q_PRESENT_MV), _r_dominant(f, "III")])


def _r_ivcd(f):
    return _all([_ge(f("qrs_duration"), 110.0),
                 _not(_any([_complete_lbbb(f), _complete_rbbb(f), _incomplete_lbbb(f),
                            _incomplete_rbbb(f)])),
                 _not(_delta_leads(f))])


def _r_long_qt(f):
    sex = f("sex")
    return _qtc_rule(f, lambda q: _sex_dependent(q, sex, operator.ge, 450.0, 460.0))


def _r_short_qt(f):
    return _qtc_rule(f, lambda q: _le(q, 390.0))


def _r_sokolow(f):
    return _all([_sokolow(f), _lt(f("qrs_duration"), 120.0)])


def _r_cornell(f):
    r, s = f.lead("r_amplitude", "aVL"), f.depth("s_amplitude", "V3")
    v = None if r is None or s is None else r + s
    return _all([_sex_dependent(v, f("sex"), operator.gt, 2.8, 2.0),
                 _lt(f("qrs_duration"), 120.0)])


def _r_rvh(f):
    return _all([_lt(f("qrs_duration"), 120.0),
                 _any([_ge(f.lead("r_amplitude", "V1"), 0.7), _r_dominant(f, "V1")]),
                 _between(_axis(f("qrs_axis")), 110.0, 180.0, lo_open=True)])


def _r_lae(f):
    ptf = f("p_terminal_negative_V1")
    return _any([_ge(f("p_duration_II"), 120.0),
                 _ge(None if ptf is None else abs(ptf), PTF_V1_MVMS)])


def _r_rae(f):
    return _any([_gt(f.lead("p_amplitude", ld), 0.25) for ld in ("II", "III", "aVF")]
                + [_gt(f.lead("p_amplitude", ld), 0.15) for ld in ("V1", "V2")])


def _r_q_inferior(f):
    q = {ld: _path_q(f, ld) for ld in ("II", "III", "aVF")}
    return _all([_at_least(2, q.values()), _any([q["II"], q["aVF"]])])


def _r_q_anterior(f):
    # a QS complex (reported with its full width as q_duration) counts only in both V2 and V3
    return _any([_all([_gt(f.lead("q_duration", ld), ANT_Q_MS), _not(_qs(f, ld))])
                 for ld in ("V2", "V3")]
                + [_all([_qs(f, "V2"), _qs(f, "V3")]),
                 _all([_path_q(f, "V4"), _path_q(f, "V5")])])


def _r_q_lateral(f):
    return _pairs(lambda ld: _path_q(f, ld), (("I", "aVL"), ("V5", "V6"), ("V4", "V5")))


def _r_ste_inferior(f):
    return _at_least(2, (_ge(f.lead("st_j", ld), 0.1) for ld in ("II", "III", "aVF")))


def _r_ste_anterior(f):
    age, sex = f("age"), f("sex")

    def test(ld):
        v = f.lead("st_j", ld)
        return _ste_v23(v, age, sex) if ld in ("V2", "V3") else _ge(v, 0.1)

    return _pairs(test, (("V1", "V2"), ("V2", "V3"), ("V3", "V4")))


def _r_ste_lateral(f):
    return _pairs(lambda ld: _ge(f.lead("st_j", ld), 0.1), (("I", "aVL"), ("V5", "V6")))


def _r_st_depression(f):
    def test(ld):
        return _all([_le(f.lead("st_j", ld), ST_DEP_MV), _le(f.lead("st_j60", ld), ST_DEP_MV)])
    return _pairs(test, CONTIGUOUS_PAIRS)


_TINV_PAIRS = tuple(p for p in CONTIGUOUS_PAIRS if "V1" not in p)
_TINV_LEADS = tuple(sorted({ld for p in _TINV_PAIRS for ld in p}, key=LEADS.index))


def _r_t_inversion(f):
    def test(ld):
        prominent = _any([_r_dominant(f, ld), _ge(f.lead("r_amplitude", ld), PROMINENT_R_MV)])
        return _all([_le(f.lead("t_amplitude", ld), T_INV_MV), prominent])
    return _pairs(test, _TINV_PAIRS)


_LOWT_TERRITORIES = (("II", "aVF"), ("I", "aVL", "V5", "V6"), ("V3", "V4"))
_LOWT_LEADS = ("I", "II", "aVL", "aVF", "V3", "V4", "V5", "V6")


def _r_low_t(f):
    def test(ld):
        r, t = f.lead("r_amplitude", ld), f.lead("t_amplitude", ld)
        if r is not None and r <= PROMINENT_R_MV:
            return False
        if r is None or t is None:
            return None
        return -0.1 < t < max(0.1, 0.1 * r)
    res = {ld: test(ld) for ld in _LOWT_LEADS}
    return _any(_at_least(2, (res[ld] for ld in terr)) for terr in _LOWT_TERRITORIES)


def _r_prwp(f):
    return _all([_le(f.lead("r_amplitude", "V3"), 0.3),
                 _le(f.lead("q_duration", "V2"), ANT_Q_MS), _le(f.lead("q_duration", "V3"), ANT_Q_MS)])


def _r_lad(f):
    return _between(_axis(f("qrs_axis")), -90.0, -30.0, hi_open=True)


def _r_rad(f):
    return _between(_axis(f("qrs_axis")), 90.0, 180.0, lo_open=True)


def _r_low_voltage(f):
    return _any([_all(_lt(f.lead("qrs_amplitude", ld), 0.5) for ld in LIMB),
                 _all(_lt(f.lead("qrs_amplitude", ld), 1.0) for ld in PRECORDIAL)])


def _r_high_voltage(f):
    limb = [_ge(f.lead("r_amplitude", ld), 2.0) for ld in LIMB] + [
        _ge(f.depth("s_amplitude", ld), 2.0) for ld in LIMB]
    return _any(limb + [_ge(f.depth("s_amplitude", "V1"), 3.0), _ge(f.depth("s_amplitude", "V2"), 3.0),
                        _ge(f.lead("r_amplitude", "V5"), 3.0), _ge(f.lead("r_amplitude", "V6"), 3.0),
                        _sokolow(f), _gt(f.lead("r_amplitude", "aVL"), 1.1)])


def _r_noisy(f):
    return _any(_gt(f.lead("noise_level", ld), NOISE_MV) for ld in LEADS)


def _r_wander(f):
    return _any(_gt(f.lead("baseline_drift", ld), DRIFT_MV) for ld in LEADS)


def _r_reversal(f):
    la_ra = _all([_lt(f.lead("p_amplitude", "I"), 0.0), _lt(f.lead("qrs_area", "I"), 0.0),
                  _gt(f.lead("p_amplitude", "aVR"), 0.0), _gt(f.lead("qrs_area", "aVR"), 0.0)])
    ra_ll = _all([_lt(f.lead("p_amplitude", "II"), 0.0), _lt(f.lead("qrs_area", "II"), 0.0),
                  _lt(f.lead("p_amplitude", "aVF"), 0.0), _lt(f.lead("qrs_area", "aVF"), 0.0),
                  _gt(f.lead("p_amplitude", "aVR"), 0.0), _gt(f.lead("qrs_area", "aVR"), 0.0)])
    return _any([la_ra, ra_ll])


def _r_flat(f):
    amps = [f.lead("qrs_amplitude", ld) for ld in LEADS]
    return _all([_any(_lt(a, FLAT_QRS_MV) for a in amps),
                 _at_least(6, (_ge(a, NORMAL_QRS_MV) for a in amps))])


# ---- registry ----------------------------------------------------------------------------
def _u(*groups) -> tuple[str, ...]:
    out: list[str] = []
    for g in groups:
        for k in ([g] if isinstance(g, str) else g):
            if k not in out:
                out.append(k)
    return tuple(out)


_RR = ["heart_rate", "rr_sd", "rr_irregularity"]
_DELTA = _lf("delta_wave", LEADS)

RULES: tuple[Rule, ...] = (
    Rule("sinus_rhythm",
         "Sinus rhythm: beats with a P wave ≥ 0.9, P axis 0° to +75° and heart rate 60–100 bpm.",
         _u(_SINUS_P_NEEDS, "heart_rate"), _r_sinus_rhythm),
    Rule("sinus_bradycardia",
         "Sinus bradycardia: heart rate < 60 bpm in a sinus rhythm (beats with a P wave ≥ 0.8, "
         "P axis −15° to +90°; both fitted on PTB-XL folds 1–9 so that the rule fires whenever "
         "the rate qualifies and the rhythm is sinus).", _u(_SINUS_P_NEEDS, "heart_rate"), _r_sinus_brady),
    Rule("sinus_tachycardia",
         "Sinus tachycardia: heart rate > 100 bpm in a sinus rhythm (beats with a P wave ≥ 0.8, "
         "P axis −15° to +90°; both fitted on PTB-XL folds 1–9 so that the rule fires whenever "
         "the rate qualifies and the rhythm is sinus).", _u(_SINUS_P_NEEDS, "heart_rate"), _r_sinus_tachy),
    Rule("sinus_arrhythmia",
         "Sinus arrhythmia (heuristic): sinus P waves (beats with a P wave ≥ 0.9, P axis 0° to "
         "+75°), RR SDNN ≥ 53 ms (a cyclic variation whose longest-shortest RR difference is about "
         "160 ms, the stricter of the published 120/160 ms criteria; it kept the sensitivity and "
         "raised the specificity on PTB-XL folds 1–9) and gradual change: RMSSD/SDNN < 1.5 (RMSSD = "
         "RR irregularity × mean RR).",
         _u(_SINUS_P_NEEDS, _RR), _r_sinus_arrhythmia, True),
    Rule("atrial_fibrillation",
         "Atrial fibrillation (heuristic): RR irregularity (RMSSD/mean RR) ≥ 0.10 (normalised "
         "RMSSD above 0.1, Dash et al. 2009) and no P waves: beats with a P wave at a constant PR "
         "< 0.8 (fibrillatory waves taken for P waves line up with a QRS in some beats by chance; "
         "the 0.8 cut-off was chosen on PTB-XL folds 1–9); where P waves precede half the beats or "
         "more, only without the abrupt short-long cycles of premature beats (RMSSD/SDNN < 1.75, "
         "chosen on folds 1–9: sinus rhythm with frequent premature complexes is not AF).",
         ("p_wave_ratio", "rr_irregularity", "rr_sd", "heart_rate"), _r_af, True),
    Rule("atrial_flutter",
         "Atrial flutter with 2:1 conduction (heuristic; F waves are not measured): heart rate "
         "135–165 bpm, beats with a P wave < 0.5, RR irregularity < 0.10, QRS duration < 120 ms. "
         "3:1/4:1 and variable block are not detected.",
         ("heart_rate", "p_wave_ratio", "rr_irregularity", "qrs_duration"), _r_flutter, True),
    Rule("irregular_rhythm",
         "Irregular supraventricular rhythm (heuristic): RR irregularity (RMSSD/mean RR) ≥ 0.08, "
         "above the sinus range, with P waves before most beats (beats with a P wave ≥ 0.5) and "
         "QRS duration < 120 ms, when neither the sinus arrhythmia nor the atrial fibrillation "
         "criteria hold (the more specific labels).",
         _u("rr_irregularity", "p_wave_ratio", "qrs_duration", _SINUS_P_NEEDS, _RR),
         _r_irregular, True),
    Rule("supraventricular_tachycardia",
         "Supraventricular tachycardia (heuristic): heart rate > 100 bpm, very regular RR "
         "(RR irregularity < 0.05), no sinus P waves (beats with a P wave < 0.5), QRS duration "
         "< 120 ms.",
         ("heart_rate", "rr_irregularity", "p_wave_ratio", "qrs_duration"), _r_svt, True),
    Rule("premature_complexes",
         "Premature complexes (heuristic; single beats are not classified): RR irregularity "
         "(RMSSD/mean RR) ≥ 0.08 from abrupt short-long cycles, RMSSD/SDNN ≥ 1.5, with an "
         "organised underlying rhythm (beats with a P wave ≥ 0.5).",
         _u(_RR, "p_wave_ratio"), _r_premature, True),
    Rule("paced_rhythm",
         "Ventricular paced rhythm (heuristic; pacing spikes are not measured): QRS duration ≥ "
         "140 ms, QRS axis −30° to −90°, LBBB-like V1 (R not taller than S is deep) and a fixed "
         "rate (RR irregularity < 0.05). Cannot be told from LBBB with left axis deviation.",
         ("qrs_duration", "qrs_axis", "r_amplitude_V1", "s_amplitude_V1", "rr_irregularity"),
         _r_paced, True),
    Rule("first_degree_av_block",
         "First-degree AV block: PR interval > 200 ms with every QRS preceded by a P wave "
         "(beats with a P wave ≥ 0.9).", ("pr_interval", "p_wave_ratio"), _r_1avb),
    Rule("short_pr",
         "Short PR: PR interval < 120 ms, QRS duration < 110 ms and no delta wave (delta wave "
         "≥ 20 ms in fewer than 2 leads).",
         _u("pr_interval", "qrs_duration", _DELTA), _r_short_pr),
    Rule("wpw_pattern",
         "WPW pattern: PR interval < 120 ms, delta wave ≥ 20 ms in at least 2 leads and QRS "
         "duration ≥ 110 ms.", _u("pr_interval", "qrs_duration", _DELTA), _r_wpw),
    Rule("complete_lbbb",
         "Complete LBBB: QRS duration ≥ 120 ms, R-peak time > 60 ms in V5 and V6 (broad, notched "
         "or slurred lateral R), no septal q in I, V5, V6 (Q depth < 0.05 mV) and QS or rS in V1 "
         "(R not taller than S is deep).", _u(_CLBBB_NEEDS), _complete_lbbb),
    Rule("complete_rbbb",
         "Complete RBBB: QRS duration ≥ 120 ms; rsR' in V1 or V2 (R' ≥ 0.05 mV and taller than R) "
         "or a broad R in V1 (R-peak time > 50 ms); wide S in I and V6 (S longer than R or > 40 ms).",
         _u(_CRBBB_NEEDS), _complete_rbbb),
    Rule("incomplete_lbbb",
         "Incomplete LBBB: QRS duration 110–119 ms, R-peak time > 60 ms in V4, V5 and V6 and no "
         "septal q in I, V5, V6 (Q depth < 0.05 mV).", _u(_ILBBB_NEEDS), _incomplete_lbbb),
    Rule("incomplete_rbbb",
         "Incomplete RBBB: QRS duration 110–119 ms, R' ≥ 0.05 mV in V1 or V2 (rsr'/rsR') and wide "
         "S in I and V6 (S longer than R or > 40 ms).", _u(_IRBBB_NEEDS), _incomplete_rbbb),
    Rule("left_anterior_fascicular_block",
         "LAFB: QRS axis −45° to −90°, QRS duration < 120 ms, qR in aVL (q ≥ 0.025 mV deep, R "
         "taller than S) with R-peak time in aVL ≥ 45 ms (rS in II, III, aVF follows from the axis).",
         ("qrs_axis", "qrs_duration", "q_amplitude_aVL", "r_amplitude_aVL", "s_amplitude_aVL",
          "r_peak_time_aVL"), _r_lafb),
    Rule("left_posterior_fascicular_block",
         "LPFB: QRS axis > +90° to +180°, QRS duration < 120 ms, rS in I (R smaller than S) and "
         "qR in III (q ≥ 0.025 mV, R taller than S). Clinical exclusions (RVH, lateral MI, "
         "emphysema, vertical heart) are not checked.",
         ("qrs_axis", "qrs_duration", "r_amplitude_I", "s_amplitude_I", "q_amplitude_III",
          "r_amplitude_III", "s_amplitude_III"), _r_lpfb),
    Rule("nonspecific_ivcd",
         "Non-specific IVCD: QRS duration ≥ 110 ms without the complete/incomplete LBBB or RBBB "
         "criteria above and without delta waves (≥ 20 ms in 2 leads). Pacing is not excluded.",
         _u("qrs_duration", _CLBBB_NEEDS, _CRBBB_NEEDS, _ILBBB_NEEDS, _IRBBB_NEEDS, _DELTA),
         _r_ivcd),
    Rule("long_qt",
         "Long QT: QTc ≥ 450 ms in men, ≥ 460 ms in women; QTc by Bazett at 60–90 bpm and by "
         "Fridericia outside that range (without heart rate, both must agree).",
         ("qtc_bazett", "qtc_fridericia", "heart_rate", "sex"), _r_long_qt),
    Rule("short_qt",
         "Short QT: QTc ≤ 390 ms (AHA/ACCF/HRS; short QT syndrome ≤ 330 ms); QTc by Bazett at "
         "60–90 bpm and by Fridericia outside that range (without heart rate, both must agree).",
         ("qtc_bazett", "qtc_fridericia", "heart_rate"), _r_short_qt),
    Rule("lvh_sokolow_lyon",
         "LVH (Sokolow-Lyon): S depth in V1 + max(R in V5, R in V6) ≥ 3.5 mV, valid with QRS "
         "duration < 120 ms.", _u(_SOKOLOW_NEEDS, "qrs_duration"), _r_sokolow),
    Rule("lvh_cornell",
         "LVH (Cornell voltage): R in aVL + S depth in V3 > 2.8 mV in men, > 2.0 mV in women, "
         "valid with QRS duration < 120 ms.",
         ("r_amplitude_aVL", "s_amplitude_V3", "sex", "qrs_duration"), _r_cornell),
    Rule("rvh",
         "RVH: R in V1 ≥ 0.7 mV or R/S in V1 > 1, with right axis deviation (QRS axis > +110° to "
         "+180°) and QRS duration < 120 ms (RBBB excluded).",
         ("qrs_duration", "r_amplitude_V1", "s_amplitude_V1", "qrs_axis"), _r_rvh),
    Rule("left_atrial_enlargement",
         "Left atrial enlargement: P-wave duration in II ≥ 120 ms, or P terminal force in V1 ≥ "
         "4 mV·ms (0.1 mV × 40 ms = Morris index 0.04 mm·s).",
         ("p_duration_II", "p_terminal_negative_V1"), _r_lae),
    Rule("right_atrial_enlargement",
         "Right atrial enlargement: P amplitude > 0.25 mV in II, III or aVF (P pulmonale), or "
         "positive P > 0.15 mV in V1 or V2.",
         tuple(_lf("p_amplitude", ("II", "III", "aVF", "V1", "V2"))), _r_rae),
    Rule("q_waves_inferior",
         "Inferior Q waves (Fourth Universal Definition): Q ≥ 30 ms and ≥ 0.1 mV deep, or QS (R < "
         "0.05 mV, Q/S ≥ 0.1 mV), in at least two of II, III, aVF, one of them II or aVF (a Q "
         "confined to III is not enough).",
         _u(_path_q_needs(("II", "III", "aVF"))), _r_q_inferior),
    Rule("q_waves_anterior",
         "Anterior Q waves (Fourth Universal Definition): any Q wave (with an R after it) > 20 ms "
         "in V2 or V3, or QS in both V2 and V3 (R < 0.05 mV, Q/S ≥ 0.1 mV), or Q ≥ 30 ms and ≥ 0.1 mV deep (or QS) in V4 with the contiguous V5.",
         _u(_lf("q_duration", ("V2", "V3")), _path_q_needs(("V2", "V3", "V4", "V5"))),
         _r_q_anterior),
    Rule("q_waves_lateral",
         "Lateral Q waves (Fourth Universal Definition): Q ≥ 30 ms and ≥ 0.1 mV deep, or QS, in "
         "two contiguous lateral leads (I and aVL, V5 and V6, or V4 and V5).",
         _u(_path_q_needs(("I", "aVL", "V4", "V5", "V6"))), _r_q_lateral),
    Rule("st_elevation_inferior",
         "Inferior ST elevation: J-point ST level ≥ 0.1 mV in at least two of II, III, aVF.",
         tuple(_lf("st_j", ("II", "III", "aVF"))), _r_ste_inferior),
    Rule("st_elevation_anterior",
         "Anterior ST elevation (Fourth Universal Definition): J-point ST elevation in two "
         "contiguous leads of V1–V4; in V2–V3 ≥ 0.2 mV in men ≥ 40 years, ≥ 0.25 mV in men < 40 "
         "years, ≥ 0.15 mV in women; ≥ 0.1 mV in V1 and V4.",
         _u(_lf("st_j", ("V1", "V2", "V3", "V4")), "age", "sex"), _r_ste_anterior),
    Rule("st_elevation_lateral",
         "Lateral ST elevation: J-point ST level ≥ 0.1 mV in I and aVL, or in V5 and V6.",
         tuple(_lf("st_j", ("I", "aVL", "V5", "V6"))), _r_ste_lateral),
    Rule("st_depression",
         "ST depression: J-point ST level ≤ −0.05 mV that is still ≤ −0.05 mV at J+60 ms "
         "(horizontal or downsloping, not a recovering upsloping depression) in two contiguous "
         "leads (II/III/aVF, I/aVL, neighbouring precordial leads).",
         _u(_lf("st_j", LEADS[:3] + LEADS[4:]), _lf("st_j60", LEADS[:3] + LEADS[4:])),
         _r_st_depression),
    Rule("t_wave_inversion",
         "T-wave inversion: T amplitude ≤ −0.1 mV in two contiguous leads with a prominent R (R "
         "taller than S is deep, or R ≥ 0.5 mV); aVR and V1, where inversion is normal, are not "
         "used, and III counts only together with II or aVF.",
         _u(_lf("t_amplitude", _TINV_LEADS), _lf("r_amplitude", _TINV_LEADS),
            _lf("s_amplitude", _TINV_LEADS)), _r_t_inversion),
    Rule("low_t_waves",
         "Low or flat T waves: in leads with R > 0.5 mV (I, II, aVL, aVF, V3–V6), T amplitude "
         "between −0.1 and +0.1 mV (flat) or upright but < 10% of R (low), in at least two leads "
         "of one territory (II/aVF; I/aVL/V5/V6; V3/V4).",
         _u(_lf("r_amplitude", _LOWT_LEADS), _lf("t_amplitude", _LOWT_LEADS)), _r_low_t),
    Rule("poor_r_wave_progression",
         "Poor R-wave progression: R in V3 ≤ 0.3 mV without anterior Q waves (Q duration ≤ 20 ms "
         "in V2 and V3).", ("r_amplitude_V3", "q_duration_V2", "q_duration_V3"), _r_prwp),
    Rule("left_axis_deviation", "Left axis deviation: QRS axis −30° to −90° (−30° excluded).",
         ("qrs_axis",), _r_lad),
    Rule("right_axis_deviation", "Right axis deviation: QRS axis > +90° to +180°.",
         ("qrs_axis",), _r_rad),
    Rule("low_qrs_voltage",
         "Low QRS voltage: QRS peak-to-peak < 0.5 mV in every limb lead, or < 1.0 mV in every "
         "precordial lead.", tuple(_lf("qrs_amplitude", LEADS)), _r_low_voltage),
    Rule("high_qrs_voltage",
         "High QRS voltage: R or S ≥ 2.0 mV in any limb lead, S ≥ 3.0 mV in V1 or V2, R ≥ 3.0 mV in "
         "V5 or V6, Sokolow-Lyon sum ≥ 3.5 mV, or R in aVL > 1.1 mV.",
         _u(_lf("r_amplitude", LIMB), _lf("s_amplitude", LIMB), "s_amplitude_V2",
            "r_amplitude_V5", "r_amplitude_V6", _SOKOLOW_NEEDS), _r_high_voltage),
    Rule("noisy_signal",
         "Noisy recording: noise level > 0.05 mV in one or more leads (the card's working "
         "threshold; its relative 10%-of-QRS variant is not used).",
         tuple(_lf("noise_level", LEADS)), _r_noisy),
    Rule("baseline_wander",
         "Baseline wander: baseline drift > 0.5 mV in one or more leads (the card's working "
         "threshold).", tuple(_lf("baseline_drift", LEADS)), _r_wander),
    Rule("suspected_lead_reversal",
         "Suspected limb lead reversal: LA/RA (P amplitude < 0 mV and net QRS area < 0 in I, both "
         "> 0 in aVR) or RA/LL (P and net QRS area < 0 in II and aVF, > 0 in aVR). "
         "Dextrocardia gives the same limb-lead picture.",
         _u(_lf("p_amplitude", ("I", "II", "aVF", "aVR")), _lf("qrs_area", ("I", "II", "aVF", "aVR"))),
         _r_reversal),
    Rule("flat_lead",
         "Flat lead (heuristic for 'other leads normal'): QRS peak-to-peak < 0.05 mV in some lead "
         "while at least 6 leads have QRS peak-to-peak ≥ 0.5 mV.",
         tuple(_lf("qrs_amplitude", LEADS)), _r_flat, True),
)

_BY_KEY = {r.key: r for r in RULES}


def rule(key: str) -> Rule:
    return _BY_KEY[key]


# ---- evaluation --------------------------------------------------------------------------
def _unit(name: str) -> str:
    if name == "age":
        return "y"
    if name == "sex":
        return ""
    base, _, lead = name.rpartition("_")
    key = base if lead in LEADS else name
    try:
        u = feature(key).unit
    except KeyError:
        return ""
    return {"degrees": "°", "ratio": "", "count": ""}.get(u, u)


def _evidence(features: Mapping, needs: Iterable[str]) -> str:
    present, missing = [], []
    for n in needs:
        try:
            v = as_number(features[n])
        except (KeyError, IndexError):
            v = None
        if v is None:
            missing.append(n)
        else:
            u = _unit(n)
            present.append(f"{n}={v:.4g}{(' ' + u) if u and u != '°' else u}")
    out = ", ".join(present)
    if missing:
        out += ("; " if out else "") + "missing: " + ", ".join(missing)
    return out


def evaluate_rules(features: Mapping) -> pd.DataFrame:
    """All rules on one feature set: index = condition key; columns name, category, positive
    (True/False/None), criterion, evidence (values used, missing ones listed), superclasses
    (tuple of PTB-XL superclasses)."""
    rows = []
    for r in RULES:
        c = r.condition
        rows.append({"key": r.key, "name": c.name, "category": c.category,
                     "positive": r.evaluate(features), "criterion": r.criterion,
                     "evidence": _evidence(features, r.needs), "superclasses": c.superclasses})
    df = pd.DataFrame(rows).set_index("key")
    df["positive"] = df["positive"].astype(object)
    return df


def positive_conditions(result: pd.DataFrame) -> list[str]:
    """Keys of the conditions whose rule is True (None does not count), in catalog order."""
    return [k for k, v in result["positive"].items() if v is True]


def rules_to_superclasses(result: pd.DataFrame) -> dict[str, bool]:
    """Rules-only baseline: MI/STTC/CD/HYP are positive when any positive condition maps to
    them; NORM is positive when sinus rhythm holds and no condition mapping to another
    superclass is positive. Undetermined (None) conditions count as not positive; rhythm and
    quality conditions map to no superclass."""
    pos = set(positive_conditions(result))
    out = {s: False for s in SUPERCLASSES}
    for k in pos:
        for s in result.loc[k, "superclasses"]:
            if s in out and s != "NORM":
                out[s] = True
    out["NORM"] = ("sinus_rhythm" in pos) and not any(out[s] for s in SUPERCLASSES if s != "NORM")
    return out


def rule_table() -> pd.DataFrame:
    """Every rule documented for the chapter: key, name, category, criterion, superclasses,
    heuristic, needs (count of features)."""
    rows = []
    for r in RULES:
        c = r.condition
        rows.append({"key": r.key, "name": c.name, "category": c.category,
                     "criterion": r.criterion, "superclasses": ", ".join(c.superclasses),
                     "heuristic": r.heuristic, "n_features": len(r.needs)})
    return pd.DataFrame(rows)


def evaluate_rules_many(features: pd.DataFrame) -> pd.DataFrame:
    """Rule results for every row of a features table: records × conditions, True/False/None."""
    return pd.DataFrame({rec: evaluate_rules(row)["positive"] for rec, row in features.iterrows()}).T

"""Plausibility of a diagnosed record (sampling rate, units) and of the LLM's answer.

:func:`check_record` compares a few measurements with the range a human ECG has; one outside
it is a warning that names the setting it suspects. The checks (:data:`CHECKS`, plus
:data:`HALVED_RATE`):

==============  ===========================================  ============  ==========================
check           measured                                     plausible     outside
==============  ===========================================  ============  ==========================
heart rate      median heart rate over the consensus beats   20–250 bpm    below: sampling rate too
                                                                           low; above: too high
QRS width       median global QRS duration                   40–200 ms     above: sampling rate too
                                                                           low; below: too high
halved rate     QRS duration and heart rate together         not both      sampling rate too low
                                                             ≥ 160 ms and  (half the real one)
                                                             < 45 bpm
amplitude       peak-to-peak amplitude of the median lead    0.05–20 mV    above: values in µV;
                                                                           below: values in V
rate factor     heart rate, QRS, QTc and PR together         most in their twice or half the
                (:data:`TIMING_RANGES`) read at this rate,   ranges at     stated rate fits
                at twice and at half of it                   this rate     clearly better
==============  ===========================================  ============  ==========================

**Rate factor.** A record whose header states half (or twice) its real rate stretches (or
squeezes) every duration by the same factor: a 500 Hz ECG read as 250 Hz has twice the QRS, QT and
PR and half the heart rate, and each can still look like disease (a QRS of 180 ms, a long QT, a
slow rate). :func:`rate_factor` counts how many of the four (QT as QTc) fall in their normal range
(:data:`TIMING_RANGES`) as read, and as they would be at twice and at half the rate; when another
factor makes at least :data:`FACTOR_MARGIN` more of them normal (and at least three), the rate is
suspected, with the same warning as the single checks. A record with several real abnormalities
can still look normal at the wrong rate: it is a warning, never a refusal.

:func:`answer_flags` flags an answer that contradicts itself (NORM with another superclass, all
five "yes") or whose explanation is empty or a template placeholder (``<your reasoning>``).
A warning or a flag never stops a report.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .answer import SUPERCLASSES

__all__ = ["Check", "CHECKS", "HALVED_RATE", "TIMING_RANGES", "FACTOR_MARGIN", "measure",
           "rate_factor", "check_record", "answer_flags"]


@dataclass(frozen=True)
class Check:
    """``key`` (in ``unit``) should lie in [``low``, ``high``]; below it suggests ``if_low``,
    above it ``if_high``: ``"rate too low"``, ``"rate too high"``, ``"µV"`` or ``"V"``."""

    name: str
    key: str
    unit: str
    low: float
    high: float
    if_low: str
    if_high: str


CHECKS = (
    Check("rate", "heart_rate", "bpm", 20.0, 250.0, "rate too low", "rate too high"),
    Check("QRS", "qrs_duration", "ms", 40.0, 200.0, "rate too high", "rate too low"),
    Check("peak-to-peak amplitude of the median lead", "amplitude", "mV", 0.05, 20.0, "V", "µV"),
)
#: a QRS at least this wide with a rate below this: the sampling rate is probably half the real one
HALVED_RATE = {"qrs_duration": 160.0, "heart_rate": 45.0}
#: normal ranges of the timings that all scale with the sampling rate (QTc by Bazett: the QT
#: read at another rate is corrected with that rate's RR)
TIMING_RANGES = {"heart_rate": (50.0, 110.0), "qrs_duration": (60.0, 120.0),
                 "qtc": (350.0, 470.0), "pr_interval": (110.0, 210.0)}
#: wide human ranges (disease included) of the same timings, QT uncorrected: a second test
WIDE_RANGES = {"heart_rate": (35.0, 160.0), "qrs_duration": (60.0, 170.0),
               "qt": (260.0, 560.0), "pr_interval": (100.0, 300.0)}
#: another rate factor must put this many more timings in range to be suspected
FACTOR_MARGIN = 2


def measure(signal: np.ndarray, features) -> dict:
    """The values :func:`check_record` checks: the record's measured heart rate (bpm) and global
    QRS duration (ms) from its features (:mod:`ecgkit.alfred.features`), and the peak-to-peak
    amplitude of the median lead (mV; all-NaN leads left out). NaN when not measurable."""
    def number(key):
        v = features.get(key) if features is not None else None
        return math.nan if v is None or pd.isna(v) else float(v)

    leads = [j for j in range(signal.shape[1]) if not np.isnan(signal[:, j]).all()]
    ptp = [float(np.nanmax(signal[:, j]) - np.nanmin(signal[:, j])) for j in leads]
    return {"heart_rate": number("heart_rate"), "qrs_duration": number("qrs_duration"),
            "qt_interval": number("qt_interval"), "pr_interval": number("pr_interval"),
            "amplitude": float(np.median(ptp)) if ptp else math.nan}


def rate_factor(values: dict) -> tuple[float, dict]:
    """The factor (0.5, 1 or 2) by which the real sampling rate most plausibly differs from the
    stated one, and how many timings fit at each factor: first their normal ranges
    (:data:`TIMING_RANGES`), then the wide human ones (:data:`WIDE_RANGES`). 1 unless another
    factor fits at least :data:`FACTOR_MARGIN` more timings and three or more."""
    def number(key):
        v = values.get(key, math.nan)
        return math.nan if v is None else float(v)

    hr, qt = number("heart_rate"), number("qt_interval")
    found, first = 1.0, None
    for ranges in (TIMING_RANGES, WIDE_RANGES):
        fits = {}
        for k in (0.5, 1.0, 2.0):      # read at fs, really k·fs: durations / k, rate · k
            timings = {"heart_rate": hr * k, "qrs_duration": number("qrs_duration") / k,
                       "qtc": (qt / k) / math.sqrt(60.0 / (hr * k)) if hr > 0 else math.nan,
                       "qt": qt / k, "pr_interval": number("pr_interval") / k}
            fits[k] = sum(lo <= timings[key] <= hi for key, (lo, hi) in ranges.items()
                          if not math.isnan(timings[key]))
        first = first or fits
        best = max((0.5, 2.0), key=lambda k: fits[k])
        if fits[best] >= 3 and fits[best] >= fits[1.0] + FACTOR_MARGIN:
            return best, fits
    return found, first


def _value(v: float, unit: str) -> str:
    if v is None or math.isnan(v):
        return "not measurable"
    return f"{v:.0f} {unit}" if abs(v) >= 100 else f"{v:.3g} {unit}"


def check_record(values: dict, fs: float, fix_rate: str = "pass --fs {fs:g}") -> list[str]:
    """Warnings for the ``values`` of :func:`measure` that are implausible for a record read at
    ``fs`` Hz; ``fix_rate`` says how to give another rate (formatted with ``fs``)."""
    suspects: dict[str, list[str]] = {}
    for c in CHECKS:
        v = values.get(c.key, math.nan)
        if v is None or math.isnan(v) or c.low <= v <= c.high:
            continue
        side = c.if_low if v < c.low else c.if_high
        suspects.setdefault(side, []).append(
            f"{c.name} {_value(v, c.unit)} outside {c.low:g}–{c.high:g} {c.unit}")
    qrs, hr = values.get("qrs_duration", math.nan), values.get("heart_rate", math.nan)
    if qrs >= HALVED_RATE["qrs_duration"] and hr < HALVED_RATE["heart_rate"]:
        suspects.setdefault("rate too low", []).append(
            f"QRS ≥ {HALVED_RATE['qrs_duration']:g} ms with a rate < {HALVED_RATE['heart_rate']:g} "
            "bpm suggests a halved sampling rate")
    factor, fits = rate_factor(values)
    if factor != 1.0:
        suspects.setdefault("rate too low" if factor > 1 else "rate too high", []).append(
            f"the heart rate, QRS, QT and PR fit a human ECG better at {fs * factor:g} Hz "
            f"({fits[factor]} of 4 in range) than at {fs:g} Hz ({fits[1.0]})")
    warnings = []
    measured = f"the QRS measures {_value(qrs, 'ms')} and the rate {_value(hr, 'bpm')}"
    low, high = suspects.get("rate too low"), suspects.get("rate too high")
    if low and high:
        warnings.append(f"sampling rate {fs:g} Hz looks wrong: {measured} "
                        f"({'; '.join(low + high)}); check the record's sampling rate")
    elif low or high:
        other = fs * 2 if low else fs / 2
        warnings.append(f"sampling rate {fs:g} Hz looks too {'low' if low else 'high'}: {measured} "
                        f"({'; '.join(low or high)}); if the record is {other:g} Hz, "
                        + fix_rate.format(fs=other))
    for units, how in (("µV", "divide by 1000"), ("V", "multiply by 1000")):
        if units in suspects:
            warnings.append(f"{suspects[units][0]}: values look like {units}: {how}")
    return warnings


_PLACEHOLDER = re.compile(r"<\s*[A-Za-z][A-Za-z _./-]{0,60}>|\byour\s+(?:reasoning|explanation)\b",
                          re.IGNORECASE)


def answer_flags(labels: dict, explanation) -> list[str]:
    """What makes an answer dubious: NORM with another superclass, all five "yes", or an
    explanation that is empty or a template placeholder. Empty list when nothing is wrong."""
    yes = [s for s in SUPERCLASSES if labels.get(s) is True]
    flags = []
    if len(yes) == len(SUPERCLASSES):
        flags.append("all five superclasses answered yes")
    elif labels.get("NORM") is True and len(yes) > 1:
        flags.append(f"NORM together with {', '.join(s for s in yes if s != 'NORM')}: "
                     "a normal ECG cannot also be abnormal")
    text = explanation if isinstance(explanation, str) else ""
    placeholder = _PLACEHOLDER.search(text)
    if not text.strip(" \t\n.…-*_`'\""):
        flags.append("the explanation is empty")
    elif placeholder:
        flags.append(f"the explanation is a template placeholder ({placeholder.group(0)!r})")
    return flags

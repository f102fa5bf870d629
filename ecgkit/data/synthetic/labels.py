"""The labels and the machine-style report of a record, from its plan and its measurements."""
from __future__ import annotations

import numpy as np

from .conditions import CONDITIONS, DIAG_ORDER
from .record import Plan

def _likelihood(sev: float) -> float:
    return 100.0 if sev >= 0.45 else 80.0 if sev >= 0.3 else 50.0 if sev >= 0.18 else \
        35.0 if sev >= 0.08 else 15.0


def label_record(plan: Plan, meas: dict, norm_lik: float = 100.0) -> tuple[dict, str, str, dict]:
    """(scp_codes dict, report text, heart_axis, extra) from the plan and the measurements."""
    diag: dict[str, float] = {}
    for code in DIAG_ORDER:
        if code in plan.conds and code != "LNGQT":
            diag[code] = _likelihood(plan.conds[code])
    qtc = meas["qtc_ms"]
    if np.isfinite(qtc) and qtc > 460.0:
        diag["LNGQT"] = 100.0 if qtc > 490 else 80.0 if qtc > 475 else 50.0
    k = plan.labs.get("potassium", 4.2)
    if k >= 6.0 or k <= 3.0:
        diag["EL"] = 80.0 if (k >= 6.5 or k <= 2.7) else 50.0
    form: dict[str, float] = {}
    if meas["limb_qrs_max_mv"] < 0.5:
        form["LVOLT"] = 0.0
    if plan.rhythm == "AFIB":
        rhythm = "AFIB"
    elif meas["heart_rate"] < 60:
        rhythm = "SBRAD"
    elif meas["heart_rate"] > 100:
        rhythm = "STACH"
    elif plan.rsa >= 0.07 and meas["rr_cv"] > 0.05:
        rhythm = "SARRH"
    else:
        rhythm = "SR"
    if not diag and plan.rhythm != "AFIB":
        diag["NORM"] = norm_lik
    codes = {**dict(sorted(diag.items(), key=lambda kv: -kv[1])), **form, rhythm: 0.0}

    # report, machine style
    def qualify(code: str, text: str) -> str:
        lik = codes[code]
        if lik >= 100:
            return text
        if lik >= 80:
            return "Probable " + text[0].lower() + text[1:]
        if lik >= 50:
            return "Possible " + text[0].lower() + text[1:]
        return "Cannot rule out " + text[0].lower() + text[1:]

    lines = []
    rtxt = CONDITIONS[rhythm].report
    if rhythm == "AFIB":
        if meas["heart_rate"] > 110:
            rtxt += " with rapid ventricular response"
        elif meas["heart_rate"] < 60:
            rtxt += " with slow ventricular response"
    if "1AVB" in codes:
        rtxt += " with " + ("" if codes["1AVB"] >= 100 else "possible ") + "1st degree A-V block"
    lines.append(rtxt)
    strain = "LVH" in plan.conds and plan.conds["LVH"] > 0.45
    for code in DIAG_ORDER:
        if code in ("NORM", "1AVB") or code not in codes:
            continue
        text = CONDITIONS[code].report
        if code in ("IMI", "AMI", "ASMI"):
            text += ", possibly acute" if plan.acute else " - age undetermined"
        if code == "LVH" and strain:
            text += " with repolarization abnormality"
        if code == "EL":
            text = ("Peaked T waves, consider hyperkalemia" if k >= 6.0 else
                    "Prominent U waves, consider hypokalemia")
        lines.append(qualify(code, text))
    if "LVOLT" in codes:
        lines.append(CONDITIONS["LVOLT"].report)
    if "NORM" in codes:
        lines.append("Normal ECG" if rhythm == "SR" and "LVOLT" not in codes
                     else "Otherwise normal ECG")
    elif rhythm == "AFIB" or any(v >= 50 for c, v in codes.items()
                                 if CONDITIONS[c].kind == "diagnostic"):
        lines.append("Abnormal ECG")
    else:
        lines.append("Borderline ECG")
    report = ". ".join(lines) + "."

    ax = meas["axis_deg"]
    axis = ("MID" if -30 <= ax <= 90 else "LAD" if -45 < ax < -30 else "ALAD" if -90 <= ax <= -45
            else "RAD" if 90 < ax <= 120 else "ARAD")
    return codes, report, axis, {"rhythm": rhythm}

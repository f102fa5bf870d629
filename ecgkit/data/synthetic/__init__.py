"""A synthetic PTB-XL: a cohort of 12-lead ECGs from a physiological dipole model.

With no real data at hand the whole book must still run and its numbers must still mean
something, so the synthetic cohort is built from a model of how an ECG arises rather than from
noise:

* **One cardiac dipole.** Every beat is a 3-D vectorcardiogram (Frank X = right→left,
  Y = head→foot, Z = front→back) made of Gaussian-shaped waves (two for P, four or more for QRS,
  an asymmetric T, a U wave, and an ST plateau for injury/ischaemia currents). The eight
  independent leads I, II, V1–V6 are the projection of the dipole through the Dower (1980)
  transformation (:data:`DOWER`); III, aVR, aVL and aVF are derived from I and II (Einthoven,
  Goldberger), so the leads agree as real ones do. :data:`INVERSE_DOWER` (Edenbrandt & Pahlm
  1988) is provided for the way back (:func:`ecg_to_vcg`).
* **Conditions with their defining morphology** (see :data:`CONDITIONS`): sinus rhythm,
  bradycardia, tachycardia and arrhythmia, atrial fibrillation (no P, irregular RR, fibrillatory
  baseline), first-degree AV block, complete LBBB/RBBB, incomplete RBBB, left anterior fascicular
  block, LVH (Sokolow-Lyon > 3.5 mV, strain), left atrial enlargement, inferior / anterior /
  anteroseptal MI (pathological Q, ST-T changes, acute ST elevation), ischaemic ST depression
  and T inversion, non-specific T changes, long QT, electrolyte changes and low voltage.
  Labels are checked against the generated signal: rhythm labels come from the measured heart
  rate, LNGQT from the measured QTc, LVOLT from the measured limb-lead QRS amplitude.
* **Demographics and laboratory values that shape the ECG**: QTc is longer in women, QRS voltage
  falls with age and body-mass index, the axis turns left with age and weight; potassium,
  calcium and magnesium change T, U, QRS and QT; anaemia and hypoxaemia raise the heart rate;
  troponin rises with (acute) infarction, NT-proBNP with LVH, LBBB, AF and age.
* **Patients with several records** that keep their own morphology (identification tasks),
  patient-wise folds 1–10 stratified by diagnostic superclass.
* **Ground-truth fiducials** per beat and lead.

Files written by :func:`make_synthetic_ptbxl`: see :mod:`ecgkit.data.synthetic.cohort`.

The package, by job: :mod:`~.geometry` (lead systems), :mod:`~.conditions` (statements, labs),
:mod:`~.morphology` (patient traits, one record's waves), :mod:`~.render` (beats and waves),
:mod:`~.criteria` (labels kept true to the signal), :mod:`~.noise`, :mod:`~.record` (one record
with its fiducials and measurements), :mod:`~.labels` (codes and report), :mod:`~.planning`
(patients, records, folds), :mod:`~.write` (WFDB, gzip CSV), :mod:`~.cohort` (a cohort on disk,
the ``ecgkit synth`` command) and :mod:`~.simulate` (one record on demand).
"""
from __future__ import annotations

from ...vocabulary import LAB_REFERENCE, LAB_UNITS
from .cohort import GENERATOR_VERSION, main, make_synthetic_ptbxl, synthetic_cohort
from .conditions import CONDITIONS, LAB_MISSING, Condition, scp_statements
from .geometry import DOWER, INVERSE_DOWER, ecg_to_vcg, vcg_to_ecg
from .record import FIDUCIAL_COLUMNS
from .simulate import simulate_ecg
from .write import HEADER_LEADS

__all__ = [
    "GENERATOR_VERSION", "CONDITIONS", "Condition", "LAB_UNITS", "LAB_REFERENCE", "LAB_MISSING",
    "DOWER", "INVERSE_DOWER", "HEADER_LEADS", "FIDUCIAL_COLUMNS",
    "make_synthetic_ptbxl", "synthetic_cohort", "simulate_ecg", "vcg_to_ecg", "ecg_to_vcg",
    "scp_statements", "main",
]

"""Clinical knowledge transfer into ECG representations (chapter 09).

Submodules: ``records`` (the clinical record beside each ECG: labs, vitals, biometrics),
``labs`` (written reference ranges and the abnormality labels that follow them), ``mimic``
(MIMIC-IV labevents joined to MIMIC-IV-ECG records by subject and time window), ``model``
(mask-aware tabular encoder, VICReg joint embedding, ECG-only and multimodal classifiers),
``train`` (the three stages, the three models, ablations, AUROC, gap closed, explanations).
"""
from .labs import FLAG_NAMES, FLAGS, REFERENCE_RANGES, abnormality_flags, lab_status, reference_table
from .records import ClinicalRecords, clinical_records

__all__ = ["REFERENCE_RANGES", "FLAGS", "FLAG_NAMES", "reference_table", "lab_status",
           "abnormality_flags", "ClinicalRecords", "clinical_records"]

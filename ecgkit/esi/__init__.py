"""ESI (ECG Semantic Integrator): RAG-generated ECG descriptions and contrastive + captioning pretraining.

Submodules (imported on demand, none eagerly): ``encoder`` (1D ConvNeXt-V2 ECG encoder),
``model`` (text tower, captioning decoder, losses), ``train`` (one accelerate loop),
``downstream`` (zero-shot, linear probe, fine-tune, baselines, identification, ablations),
``cqa`` (retrieval-augmented condition descriptions).
"""

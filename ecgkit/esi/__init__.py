"""ESI (ECG Semantic Integrator): RAG-generated ECG descriptions and contrastive + captioning pretraining.

Submodules (imported on demand, none eagerly): ``model`` (text tower, captioning decoder,
losses), ``train`` (one accelerate loop), ``downstream`` (zero-shot, linear probe, fine-tune,
identification, ablation helpers), ``experiments`` (ESI against its baselines, ablations and
curves, per seed), ``cqa`` (retrieval-augmented condition descriptions). The ECG encoder is
:class:`ecgkit.nn.ConvNeXt1D`.
"""

"""One table of artefact versions: each is part of its artefact's cache key.

Bump an entry when what that artefact holds changes (the generator's output, a model's training
loop, a prompt's assembly, a file layout); the old cache entries are then never read again. This
module imports nothing, so that a key can be computed without loading the code that builds it.
"""

VERSIONS = {
    "synthetic": "1",      # ecgkit.data.synthetic: what the generator writes
    "delineator": "2",     # ecgkit.alfred.delineation: U-Net, labels ([onset, offset)), training on annotated ECGs
    "neurokit_delineation": 1,
    "delineator_predictions": 1,  # ecgkit.alfred.delineation.crossval: out-of-fold delineations
    "delineator_comparison": 1,   # ecgkit.alfred.delineation.compare_with_neurokit: scores and seconds
    "reference_peaks": 1,  # ecgkit.alfred.beats.reference_peaks_many: R peaks of a reference detector
    "signal_cache": 1,     # ecgkit.data.cache: memmap layout
    "knowledge_index": 1,  # ecgkit.knowledge.index: chunking and persisted layout
    "cqa": 3,              # ecgkit.esi.cqa: prompt assembly, answer cleaning, repetition control
    "esi_train": 1,        # ecgkit.esi.train: checkpoints
    "ecgllm_dataset": 1,   # ecgkit.ecgllm.dataset: instruction and MCQ items
    "ecgllm_adapter": 1,   # ecgkit.ecgllm.finetune: LoRA adapters
    "llm_generation": 1,   # ecgkit.llm: a generation or option scores for one request
    "text_embeddings": 1,  # ecgkit.models.embed_texts(cache=True): sentence embeddings of a list of texts
    "esi_text_features": 1,  # ecgkit.esi.model: frozen text-tower features
    "clinical": 1,         # ecgkit.clinical.train: stage weights (training loop, models)
    # ecgkit.alfred.pipeline.measure_ecgs / validation.measure_with_neurokit: cached measurements.
    # Bump when the delineation's inference (delineation.inference, beats), neurokit_delineate,
    # the features or the rules change what they return (new weights change the key by themselves)
    "alfred_measured": 2,
    "esi_embeddings": 1,   # ecgkit.esi.downstream: cached encoder outputs (bump when embed changes)
    "esi_frozen_eval": 1,  # ecgkit.esi.experiments: linear-probe and identification results of a frozen encoder
}

"""The knowledge base: a curated corpus, sentence-safe chunks and a FAISS index through llama-index.

Names are imported on first use (PEP 562): llama-index and FAISS load only when an index is built.
"""
from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "CONDITIONS": "catalog", "FEATURES": "catalog", "GLOBAL_FEATURES": "catalog",
    "LEAD_FEATURES": "catalog", "condition": "catalog", "feature": "catalog",
    "chunk_corpus": "chunking", "chunk_text": "chunking", "corpus_stats": "corpus",
    "load_corpus": "corpus", "Hit": "index", "KnowledgeIndex": "index", "card_hit_rate": "index",
    "recall_at_k": "index",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

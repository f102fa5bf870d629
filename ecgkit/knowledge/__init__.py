"""The knowledge base: a curated corpus, sentence-safe chunks and a FAISS index through llama-index."""
from .catalog import CONDITIONS, FEATURES, GLOBAL_FEATURES, LEAD_FEATURES, condition, feature
from .chunking import chunk_corpus, chunk_text
from .corpus import corpus_stats, load_corpus
from .index import Hit, KnowledgeIndex, card_hit_rate, recall_at_k

__all__ = ["CONDITIONS", "FEATURES", "GLOBAL_FEATURES", "LEAD_FEATURES", "condition", "feature",
           "chunk_corpus", "chunk_text", "corpus_stats", "load_corpus", "Hit", "KnowledgeIndex",
           "card_hit_rate", "recall_at_k"]

"""Retrieval: index build time, HNSW vs exact search (recall@10, queries/s), MiniLM throughput.

Three parts, all on CPU (``faiss.omp_get_max_threads()`` threads):

1. **Corpus** (the packaged knowledge corpus): model load, sentence-embedding throughput of
   all-MiniLM-L6-v2 on the corpus's own sentences, the time to build the HNSW
   :class:`~ecgkit.knowledge.index.KnowledgeIndex` (load, chunk, embed, index, persist) and to
   load it back from the cache; the exact index is the same vectors in ``IndexFlatIP``
   (:meth:`KnowledgeIndex.as_kind`, nothing re-embedded). Queries: every catalog card's
   ``"{name} is defined as"`` and ``"ECG criteria of {name}"``. Recall@10 of HNSW against exact
   search through the llama-index retrievers (documents + expert, merged), card hit rate@2,
   and queries/s: raw FAISS single-query search (both collections per query, as a retrieval
   does), the llama-index retrieval with precomputed query vectors, and end to end (query
   embedding included).
2. **100,000 random vectors** (dimension 384, L2-normalised), raw FAISS, HNSW M=10,
   efConstruction=100 against ``IndexFlatIP``; efSearch is raised (16, 32, ...) until
   recall@10 ≥ 0.99 and the smallest such efSearch is reported with its queries/s, single-query
   (one ``search`` call per query, as a retriever does) and batched (all queries in one call).
   Two random sets:

   - ``structured`` (the goal's set): Gaussian vectors of intrinsic dimension 16 in 384
     dimensions (``z @ W`` with ``z ~ N(0, I_16)``, ``W`` random 16×384) plus isotropic noise
     (σ = 0.05), normalised. Sentence embeddings are like this: the local intrinsic dimension
     of the corpus's own MiniLM vectors (Levina-Bickel MLE, k = 10), also reported, is about 11.
   - ``isotropic``: uniform on the 383-sphere. No index structure helps there: all points are
     nearly equidistant from a random query (the curse of dimensionality), so graph search
     needs to visit a large part of the data; reported as the worst case (goal not expected).
"""
from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from ..knowledge.ann import (EF_SWEEP, GOAL_RECALL, GOAL_SPEEDUP, hnsw_vs_exact,  # noqa: F401
                             intrinsic_dimension, random_vectors)


def corpus_part(k: int = 10) -> dict:
    from ..knowledge.catalog import CONDITIONS, FEATURES
    from ..knowledge.chunking import split_sentences
    from ..knowledge.corpus import load_corpus
    from ..knowledge.index import KnowledgeIndex, card_hit_rate, recall_at_k
    from ..models import embed_texts

    out: dict = {}
    start = time.perf_counter()
    embed_texts(["warm-up"])
    out["model_load_s"] = round(time.perf_counter() - start, 2)

    docs = load_corpus(use_env=False)
    sentences = list(dict.fromkeys(s for d in docs for s in split_sentences(d.text)
                                   if len(s) > 20 and not s.startswith(("#", "|"))))[:512]
    start = time.perf_counter()
    embed_texts(sentences)
    seconds = time.perf_counter() - start
    out["embed_sentences"] = len(sentences)
    out["embed_sentences_per_s"] = round(len(sentences) / seconds, 1)
    out["embed_mean_chars"] = round(float(np.mean([len(s) for s in sentences])), 1)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        hnsw = KnowledgeIndex.build(kind="hnsw", use_env=False, cache_root=tmp)
        out["corpus_build_s"] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        again = KnowledgeIndex.build(kind="hnsw", use_env=False, cache_root=tmp)
        out["corpus_load_s"] = round(time.perf_counter() - start, 2)
        assert not again.built
    out["corpus_files"] = hnsw.report.get("loaded")
    out["corpus_skipped"] = len(hnsw.report.get("skipped", {}))
    out["corpus_chunks"] = len(hnsw)
    out["corpus_chunks_by_collection"] = hnsw.collections
    out["corpus_chunks_per_s"] = round(len(hnsw) / out["corpus_build_s"], 1)
    flat = hnsw.as_kind("flat")

    names = [c.name for c in CONDITIONS] + [f.name for f in FEATURES]
    queries = [f"{n} is defined as" for n in names] + [f"ECG criteria of {n}" for n in names]
    start = time.perf_counter()
    qvec = hnsw.embed_queries(queries)
    out["query_embed_per_s"] = round(len(queries) / (time.perf_counter() - start), 1)
    out["corpus_queries"] = len(queries)
    out["corpus_ef_search"] = hnsw.ef_search
    out["corpus_recall_at_10"] = round(recall_at_k(hnsw, flat, queries, k=k), 4)
    vectors = np.vstack([hnsw.vectors(c) for c in hnsw.indexes])
    out["corpus_intrinsic_dim"] = round(intrinsic_dimension(vectors), 1)

    for name, index in (("hnsw", hnsw), ("flat", flat)):
        raw = [index.faiss_index(c) for c in index.indexes]
        start = time.perf_counter()
        for i in range(len(qvec)):
            for r in raw:
                r.search(qvec[i:i + 1], k)
        out[f"corpus_{name}_faiss_qps"] = round(len(qvec) / (time.perf_counter() - start))
        start = time.perf_counter()
        index.retrieve_many(queries, top_k=k, query_embeddings=qvec)
        out[f"corpus_{name}_llamaindex_qps"] = round(len(qvec) / (time.perf_counter() - start))
    start = time.perf_counter()
    hnsw.retrieve_many(queries, top_k=k)
    out["corpus_end_to_end_qps"] = round(len(queries) / (time.perf_counter() - start), 1)
    df = card_hit_rate(hnsw, k=2)
    out["card_hit_rate_at_2"] = round(df.attrs["hit_rate"], 4)
    out["cards_present"] = df.attrs["n_present"]
    out["cards_missed"] = df.loc[df["present"] & ~df["hit"], "key"].tolist()
    return out


def run(n: int = 100_000, dim: int = 384, isotropic: bool = True, corpus: bool = True) -> dict:
    """All measurements as one flat-ish dict (see the module docstring)."""
    import faiss

    result: dict = {"benchmark": "retrieval: HNSW (M=10, efC=100) vs exact FAISS, MiniLM",
                    "threads": faiss.omp_get_max_threads(), "cpus": os.cpu_count(), "random_vectors": n}
    start = time.perf_counter()
    if corpus:
        result.update(corpus_part())
    data, queries = random_vectors(n, dim, latent_dim=16, seed=0)
    structured = hnsw_vs_exact(data, queries)
    result["random_structured"] = structured
    result.update({f"random_{key}": structured[key] for key in
                   ("ef_search", "recall", "hnsw_single_qps", "flat_single_qps", "speedup_single",
                    "hnsw_batch_qps", "flat_batch_qps", "speedup_batch", "hnsw_build_s", "goal_met")})
    del data
    if isotropic:
        data, queries = random_vectors(n, dim, latent_dim=None, seed=1, n_queries=200)
        iso = hnsw_vs_exact(data, queries)
        result["random_isotropic"] = iso
        result.update({"isotropic_ef_search": iso["ef_search"], "isotropic_recall": iso["recall"],
                       "isotropic_speedup_single": iso["speedup_single"]})
        del data
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1, default=str))

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

import math
import os
import tempfile
import time

import numpy as np

GOAL_RECALL = 0.99
GOAL_SPEEDUP = 10.0
EF_SWEEP = (16, 32, 64, 128, 256, 512, 1024)


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def random_vectors(n: int, dim: int = 384, latent_dim: int | None = 16, noise: float = 0.05,
                   seed: int = 0, n_queries: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """``(data, queries)``: normalised random vectors, of intrinsic dimension ``latent_dim``
    (plus isotropic ``noise``) or uniform on the sphere when ``latent_dim`` is None."""
    rng = np.random.default_rng(seed)
    if latent_dim is None:
        def draw(m):
            return rng.standard_normal((m, dim), dtype=np.float32)
    else:
        w = rng.standard_normal((latent_dim, dim), dtype=np.float32) / math.sqrt(latent_dim)

        def draw(m):
            z = rng.standard_normal((m, latent_dim), dtype=np.float32)
            return z @ w + noise * rng.standard_normal((m, dim), dtype=np.float32)
    return _normalise(draw(n)), _normalise(draw(n_queries))


def intrinsic_dimension(x: np.ndarray, k: int = 10) -> float:
    """Levina-Bickel MLE of the local intrinsic dimension (median over points), cosine geometry."""
    import faiss

    index = faiss.IndexFlatIP(x.shape[1])
    index.add(np.ascontiguousarray(x, dtype=np.float32))
    sims, _ = index.search(np.ascontiguousarray(x, dtype=np.float32), k + 1)
    dist = np.sqrt(np.maximum(2 - 2 * sims[:, 1:], 1e-12))
    ratios = np.log(dist[:, -1:] / dist[:, :-1])
    est = 1.0 / np.maximum(ratios.mean(axis=1), 1e-12)
    return float(np.median(est))


def _single_qps(index, queries: np.ndarray, k: int, budget_s: float = 1.5, limit: int | None = None) -> float:
    """Queries/s with one search call per query (as a retriever does), within a time budget."""
    n, start = 0, time.perf_counter()
    for i in range(len(queries) if limit is None else min(limit, len(queries))):
        index.search(queries[i:i + 1], k)
        n += 1
        if time.perf_counter() - start > budget_s and n >= 20:
            break
    return n / (time.perf_counter() - start)


def _batch_qps(index, queries: np.ndarray, k: int):
    start = time.perf_counter()
    _, ids = index.search(queries, k)
    return len(queries) / (time.perf_counter() - start), ids


def hnsw_vs_exact(data: np.ndarray, queries: np.ndarray, k: int = 10, m: int = 10,
                  ef_construction: int = 100, ef_sweep=EF_SWEEP, goal_recall: float = GOAL_RECALL) -> dict:
    """Build HNSW and flat indexes on ``data`` and sweep efSearch until ``goal_recall``."""
    import faiss

    from ..knowledge.index import _id_recall, new_faiss_index

    dim = data.shape[1]
    start = time.perf_counter()
    hnsw = new_faiss_index(dim, "hnsw", m, ef_construction)
    hnsw.add(data)
    build_s = time.perf_counter() - start
    flat = faiss.IndexFlatIP(dim)
    flat.add(data)
    flat_batch_qps, exact = _batch_qps(flat, queries, k)
    flat_single_qps = _single_qps(flat, queries, k, budget_s=2.0)
    sweep = []
    for ef in ef_sweep:
        hnsw.hnsw.efSearch = ef
        batch_qps, ids = _batch_qps(hnsw, queries, k)
        row = {"ef_search": ef, "recall": round(_id_recall(ids, exact), 4),
               "single_qps": round(_single_qps(hnsw, queries, k)), "batch_qps": round(batch_qps)}
        row["speedup_single"] = round(row["single_qps"] / flat_single_qps, 1)
        row["speedup_batch"] = round(row["batch_qps"] / flat_batch_qps, 1)
        sweep.append(row)
        if row["recall"] >= goal_recall:
            break
    best = next((r for r in sweep if r["recall"] >= goal_recall), max(sweep, key=lambda r: r["recall"]))
    return {
        "n": len(data), "dim": dim, "queries": len(queries), "k": k, "M": m,
        "efConstruction": ef_construction, "hnsw_build_s": round(build_s, 1),
        "flat_single_qps": round(flat_single_qps, 1), "flat_batch_qps": round(flat_batch_qps, 1),
        "ef_search": best["ef_search"], "recall": best["recall"], "hnsw_single_qps": best["single_qps"],
        "hnsw_batch_qps": best["batch_qps"], "speedup_single": best["speedup_single"],
        "speedup_batch": best["speedup_batch"],
        "goal_met": bool(best["recall"] >= goal_recall and best["speedup_single"] >= GOAL_SPEEDUP),
        "sweep": sweep,
    }


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
                    "threads": faiss.omp_get_max_threads(), "cpus": os.cpu_count()}
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

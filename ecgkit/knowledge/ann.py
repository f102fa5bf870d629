"""Approximate nearest neighbours: HNSW against exact search on random vectors (chapter 01).

:func:`random_vectors` draws normalised vectors of a chosen intrinsic dimension (sentence
embeddings are low-dimensional in this sense: :func:`intrinsic_dimension` of the corpus's MiniLM
vectors is about 11) or uniform on the sphere; :func:`hnsw_vs_exact` builds a FAISS HNSW index
and an exact ``IndexFlatIP`` on them and raises efSearch until recall@k reaches the goal,
reporting the recall, the queries/s of both (one query per call, as a retriever does, and
batched) and the speed-up. ``ecgkit.benchmarks.retrieval`` times the same functions.
"""
from __future__ import annotations

import math
import time

import numpy as np

__all__ = ["GOAL_RECALL", "GOAL_SPEEDUP", "EF_SWEEP", "random_vectors", "intrinsic_dimension",
           "hnsw_vs_exact"]

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

    from .index import _id_recall, new_faiss_index

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

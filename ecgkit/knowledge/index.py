"""Vector index over the knowledge corpus: FAISS (HNSW or exact) through llama-index.

- **Embeddings**: the local all-MiniLM-L6-v2 (:func:`ecgkit.models.embed_texts`) by default, or
  any sentence-embedding model folder / hub id in the local cache (``embed_model="..."``), or
  any llama-index ``BaseEmbedding`` instance. ecgkit's encoder is wrapped as
  :class:`SentenceEmbedding`, a llama-index ``BaseEmbedding``; other embeddings are wrapped so
  their vectors are L2-normalised.
- **Similarity**: cosine = inner product of L2-normalised vectors. ``kind="hnsw"``:
  ``faiss.IndexHNSWFlat`` (inner product) with M=10 and efConstruction=100 (ALFRED's Milvus
  settings), efSearch set at query time (default 64); ``kind="flat"``: exact
  ``faiss.IndexFlatIP``. With GPU FAISS (``faiss.get_num_gpus() > 0``) a flat index is moved to
  the GPUs for searching (``index_cpu_to_all_gpus``); HNSW stays on the CPU.
- **llama-index**: each FAISS index sits in a ``FaissVectorStore`` inside a ``VectorStoreIndex``
  (``StorageContext``: docstore + index store + vector store); queries go through the index's
  retriever (``as_retriever().retrieve(QueryBundle)``), so another vector store can be swapped in.
- **Collections**: ``FaissVectorStore`` has no metadata filters, so there is one FAISS index
  (one ``VectorStoreIndex``) per collection (``documents``, ``expert``). A query restricted to
  some collections searches each of them for ``top_k`` and merges the hits by cosine score. The
  merge is exact: the global top-k is contained in the union of the per-collection top-k
  lists, and scores are comparable (same embedding, same metric). A query restricted to
  ``documents`` never sees an expert chunk.
- **Persistence**: :meth:`KnowledgeIndex.build` persists under
  ``cache_dir("knowledge", <key>)``, where the key hashes every corpus file (collection,
  source, bytes; unreadable ones too), the chunking parameters, the version of reading and
  chunking (``VERSIONS["knowledge_index"]``, bumped by hand), the index kind and its build
  parameters (M, efConstruction) and the embedding model's identity (folder + sha256 of its
  weights, config and tokenizer files). Rebuilt only when one of those changes; otherwise
  loaded with ``FaissVectorStore.from_persist_dir`` + ``load_index_from_storage``. Written in a
  temporary folder and renamed into place (a ``manifest.json`` written last marks it complete).
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..cache import key as cache_key
from ..config import cache_dir
from ..hashing import file_sha256
from ..models import embed_texts, text_encoder_path
from .chunking import MAX_CHARS, ChunkStats, chunk_corpus
from .corpus import COLLECTIONS, MetadataFields, discover_files, load_corpus
from ..versions import VERSIONS

__all__ = [
    "FORMAT_VERSION",
    "HNSW_M",
    "HNSW_EF_CONSTRUCTION",
    "DEFAULT_EF_SEARCH",
    "QUERY_TEMPLATE",
    "Hit",
    "SentenceEmbedding",
    "NormalizedEmbedding",
    "KnowledgeIndex",
    "make_embedding",
    "embedding_identity",
    "new_faiss_index",
    "card_hit_rate",
    "recall_at_k",
]

log = logging.getLogger(__name__)

#: Bumped whenever chunking or the persisted layout changes (part of the cache key).
FORMAT_VERSION = VERSIONS["knowledge_index"]
HNSW_M = 10
HNSW_EF_CONSTRUCTION = 100
DEFAULT_EF_SEARCH = 64
ALL = tuple(COLLECTIONS)
#: Query used for a catalog condition/feature (ALFRED's "... is defined as" probes).
QUERY_TEMPLATE = "{name} is defined as"
MANIFEST = "manifest.json"

try:  # llama-index is a hard dependency; imported lazily-ish only for clearer errors
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from llama_index.core.bridge.pydantic import PrivateAttr
except ImportError as exc:  # pragma: no cover
    raise ImportError("ecgkit.knowledge.index needs llama-index-core (pip install llama-index-core)") from exc


# ----------------------------------------------------------------------------- embeddings



_IDENTITY_FILES = ("config.json", "tokenizer.json", "vocab.txt", "tokenizer_config.json",
                   "sentence_bert_config.json", "1_Pooling/config.json", "modules.json")


def _folder_identity(folder: Path) -> dict:
    weights = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    files = [folder / f for f in _IDENTITY_FILES if (folder / f).is_file()] + list(weights)
    return {"path": str(folder), "files": {p.relative_to(folder).as_posix(): file_sha256(p) for p in files}}


class SentenceEmbedding(BaseEmbedding):
    """ecgkit's local sentence encoder (:func:`ecgkit.models.embed_texts`) as a llama-index embedding.

    ``name``: None (all-MiniLM-L6-v2 / ``$ECGKIT_TEXT_ENCODER``), an alias, a local folder or a
    hub id in the local cache (see :func:`ecgkit.models.text_encoder_path`). Vectors are
    mean-pooled (or as the folder prescribes) and L2-normalised. ``texts_embedded`` counts the
    texts this instance embedded.
    """

    _folder: str = PrivateAttr(default="")
    _count: int = PrivateAttr(default=0)
    _batch: int = PrivateAttr(default=32)

    def __init__(self, name: str | os.PathLike | None = None, embed_batch_size: int = 2048,
                 batch_size: int = 32, **kwargs: Any) -> None:
        folder = text_encoder_path(name)
        super().__init__(model_name=str(folder), embed_batch_size=embed_batch_size, **kwargs)
        self._folder = str(folder)
        self._batch = batch_size

    @classmethod
    def class_name(cls) -> str:
        return "EcgkitSentenceEmbedding"

    @property
    def folder(self) -> Path:
        return Path(self._folder)

    @property
    def texts_embedded(self) -> int:
        return self._count

    def identity(self) -> dict:
        return {"class": "SentenceEmbedding", **_folder_identity(self.folder)}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32 normalised vectors (texts sorted by length to pad less)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        vectors = embed_texts([texts[i] for i in order], name=self._folder,
                              batch_size=self._batch, normalize=True)
        out = np.empty_like(vectors)
        out[order] = vectors
        self._count += len(texts)
        return out

    def _get_query_embedding(self, query: str) -> list[float]:
        return self.embed([query])[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self.embed([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self.embed(texts).tolist()


def _normalise(vectors) -> np.ndarray:
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    return arr / np.maximum(norms, 1e-12)


class NormalizedEmbedding(BaseEmbedding):
    """Any llama-index embedding with L2-normalised outputs (so inner product = cosine)."""

    _inner: Any = PrivateAttr(default=None)

    def __init__(self, inner: BaseEmbedding, **kwargs: Any) -> None:
        super().__init__(model_name=getattr(inner, "model_name", "unknown"),
                         embed_batch_size=getattr(inner, "embed_batch_size", 10), **kwargs)
        self._inner = inner

    @classmethod
    def class_name(cls) -> str:
        return "EcgkitNormalizedEmbedding"

    @property
    def inner(self) -> BaseEmbedding:
        return self._inner

    def identity(self) -> dict:
        inner = self._inner
        if hasattr(inner, "identity"):
            return inner.identity()
        return {"class": f"{type(inner).__module__}.{type(inner).__qualname__}",
                "model_name": getattr(inner, "model_name", "unknown")}

    def _get_query_embedding(self, query: str) -> list[float]:
        return _normalise(self._inner.get_query_embedding(query))[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return _normalise(await self._inner.aget_query_embedding(query))[0].tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return _normalise(self._inner.get_text_embedding(text))[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return _normalise(self._inner.get_text_embedding_batch(texts)).tolist()


def make_embedding(embed_model=None) -> BaseEmbedding:
    """None / a name / a folder -> :class:`SentenceEmbedding`; a ``BaseEmbedding`` -> normalised wrapper."""
    if isinstance(embed_model, (SentenceEmbedding, NormalizedEmbedding)):
        return embed_model
    if isinstance(embed_model, BaseEmbedding):
        return NormalizedEmbedding(embed_model)
    if embed_model is None or isinstance(embed_model, (str, os.PathLike)):
        return SentenceEmbedding(embed_model)
    raise TypeError(f"embed_model must be None, a model name/folder or a llama-index BaseEmbedding, "
                    f"not {type(embed_model).__name__}")


def embedding_identity(embed_model) -> dict:
    """What identifies an embedding model in the cache key."""
    return make_embedding(embed_model).identity()


def _embed_queries(model: BaseEmbedding, queries: Sequence[str]) -> np.ndarray:
    if isinstance(model, SentenceEmbedding):
        return model.embed(queries)
    return _normalise([model.get_query_embedding(q) for q in queries])


# ----------------------------------------------------------------------------- faiss


def new_faiss_index(dim: int, kind: str = "hnsw", m: int = HNSW_M,
                    ef_construction: int = HNSW_EF_CONSTRUCTION, ef_search: int = DEFAULT_EF_SEARCH):
    """An empty inner-product FAISS index: ``hnsw`` (IndexHNSWFlat) or ``flat`` (IndexFlatIP)."""
    import faiss

    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
        return index
    raise ValueError(f"unknown index kind {kind!r}; choose 'hnsw' or 'flat'")


def _gpu_available() -> bool:
    try:
        import faiss

        return hasattr(faiss, "index_cpu_to_all_gpus") and faiss.get_num_gpus() > 0
    except Exception:  # pragma: no cover
        return False


def _to_gpu(index):  # pragma: no cover - needs GPU FAISS
    import faiss

    return faiss.index_cpu_to_all_gpus(index)


# ----------------------------------------------------------------------------- hits


@dataclass
class Hit(MetadataFields):
    """One retrieved chunk: text (with its ``Title — Section:`` prefix), cosine score, metadata."""

    text: str
    score: float
    metadata: dict = field(default_factory=dict)
    id: str = ""


def _collections(value) -> tuple[str, ...]:
    if value is None:
        return ALL
    if isinstance(value, str):
        value = (value,)
    value = tuple(value)
    unknown = [c for c in value if c not in COLLECTIONS]
    if unknown or not value:
        raise ValueError(f"unknown collection(s) {unknown or value!r}; choose among {COLLECTIONS}")
    return value


# ----------------------------------------------------------------------------- the index


def _cache_key(files, max_chars: int, kind: str, params: dict, identity: dict) -> tuple[str, dict]:
    spec = {
        # reading and chunking are versioned by VERSIONS["knowledge_index"] (part of the key)
        "chunking": {"max_chars": max_chars},
        "index": {"kind": kind, **params},
        "embedding": identity,
        "files": [[f.collection, f.source, f.sha256()] for f in files],
    }
    return cache_key("knowledge_index", spec), spec


class KnowledgeIndex:
    """The corpus in one llama-index ``VectorStoreIndex`` (FAISS store) per collection.

    Build with :meth:`build`; query with :meth:`retrieve`, :meth:`retrieve_many`,
    :meth:`retrieve_condition`, :meth:`retrieve_feature`. Attributes: ``kind``, ``key`` (cache
    key), ``path`` (persist folder, None when not cached), ``built`` (True when this call built
    it, False when it was loaded), ``embedded`` (chunks embedded by this call),
    ``build_seconds``, ``manifest`` (corpus report, chunk stats, parameters), ``indexes``
    (collection -> llama-index ``VectorStoreIndex``).
    """

    def __init__(self, indexes: dict, embed_model: BaseEmbedding, kind: str, manifest: dict,
                 path: Path | None = None, built: bool = False, embedded: int = 0,
                 ef_search: int = DEFAULT_EF_SEARCH):
        self.indexes = indexes
        self.embed_model = embed_model
        self.kind = kind
        self.manifest = manifest
        self.key = manifest.get("key", "")
        self.path = path
        self.built = built
        self.embedded = embedded
        self.build_seconds = manifest.get("build_seconds", float("nan"))
        self.ef_search = ef_search
        self.set_ef_search(ef_search)

    # -- construction ---------------------------------------------------------------

    @classmethod
    def build(cls, corpus_root=None, kind: str = "hnsw", embed_model=None, cache: bool = True,
              extra: Mapping | None = None, use_env: bool = True, max_chars: int = MAX_CHARS,
              ef_search: int = DEFAULT_EF_SEARCH, m: int = HNSW_M,
              ef_construction: int = HNSW_EF_CONSTRUCTION, gpu: bool | None = None,
              show_progress: bool = False, cache_root=None) -> "KnowledgeIndex":
        """Build the index of a corpus, or load it from the cache when nothing changed.

        ``corpus_root``: corpus folder (default: the packaged one); ``extra`` /
        ``$ECGKIT_KNOWLEDGE_EXTRA``: the user's folders (see :func:`load_corpus`). ``kind``:
        ``"hnsw"`` or ``"flat"``. ``embed_model``: None (MiniLM), a model name/folder or a
        llama-index ``BaseEmbedding``. ``cache=False`` builds in memory only. ``gpu``: move a
        flat index to the GPUs (default: when GPU FAISS sees a GPU). ``cache_root``: the cache
        folder (default ``$ECGKIT_CACHE``).
        """
        if kind not in ("hnsw", "flat"):
            raise ValueError(f"unknown index kind {kind!r}; choose 'hnsw' or 'flat'")
        model = make_embedding(embed_model)
        params = {"M": m, "efConstruction": ef_construction} if kind == "hnsw" else {}
        files = discover_files(corpus_root, extra, use_env=use_env)
        key, spec = _cache_key(files, max_chars, kind, params, model.identity())
        gpu = (_gpu_available() and kind == "flat") if gpu is None else bool(gpu and kind == "flat")
        target = None
        if cache:
            root = cache_dir("knowledge", root=cache_root)
            target = root / key
            if (target / MANIFEST).is_file():
                try:
                    return cls._load(target, model, ef_search=ef_search, gpu=gpu)
                except Exception as exc:  # a damaged cache folder: rebuild it
                    log.warning("knowledge index cache %s unreadable (%s); rebuilding", target, exc)
                    shutil.rmtree(target, ignore_errors=True)
        start = time.perf_counter()
        docs = load_corpus(corpus_root, extra, use_env=use_env, files=files)
        stats = ChunkStats()
        chunks = chunk_corpus(docs, max_chars=max_chars, stats=stats)
        if not chunks:
            raise ValueError("the knowledge corpus has documents but no text to index")
        vectors = _normalise(model.get_text_embedding_batch([c.text for c in chunks],
                                                            show_progress=show_progress))
        dim = int(vectors.shape[1])
        storages, indexes = {}, {}
        for collection in COLLECTIONS:
            members = [i for i, c in enumerate(chunks) if c.metadata["collection"] == collection]
            if not members:
                continue
            storages[collection], indexes[collection] = _build_collection(
                [chunks[i] for i in members], vectors[members], model,
                new_faiss_index(dim, kind, m, ef_construction, ef_search))
        seconds = time.perf_counter() - start
        manifest = {
            "key": key,
            "kind": kind,
            "params": params,
            "dim": dim,
            "max_chars": max_chars,
            "embedding": spec["embedding"],
            "collections": {c: sum(ch.metadata["collection"] == c for ch in chunks) for c in indexes},
            "cards": sorted({(ch.metadata["kind"], ch.metadata["key"]) for ch in chunks
                             if ch.metadata["collection"] == "expert" and ch.metadata["key"]}),
            "corpus": {"loaded": docs.report.loaded, "by_collection": docs.report.by_collection,
                       "skipped": docs.report.skipped, "files": len(files)},
            "chunks": stats.as_dict(),
            "build_seconds": round(seconds, 3),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        path = None
        if cache and target is not None:
            path = _persist(target, storages, manifest)
        if gpu:  # pragma: no cover - needs GPU FAISS
            for index in indexes.values():
                store = index.vector_store
                store._faiss_index = _to_gpu(store.client)
        return cls(indexes, model, kind, manifest, path=path, built=True, embedded=len(chunks),
                   ef_search=ef_search)

    @classmethod
    def _load(cls, folder: Path, model: BaseEmbedding, ef_search: int = DEFAULT_EF_SEARCH,
              gpu: bool = False) -> "KnowledgeIndex":
        from llama_index.core import StorageContext, load_index_from_storage
        from llama_index.vector_stores.faiss import FaissVectorStore

        manifest = json.loads((folder / MANIFEST).read_text())
        indexes = {}
        for collection in manifest["collections"]:
            sub = str(folder / collection)
            store = FaissVectorStore.from_persist_dir(sub)
            if gpu:  # pragma: no cover
                store._faiss_index = _to_gpu(store.client)
            storage = StorageContext.from_defaults(vector_store=store, persist_dir=sub)
            indexes[collection] = load_index_from_storage(storage, embed_model=model)
        return cls(indexes, model, manifest["kind"], manifest, path=folder, built=False,
                   embedded=0, ef_search=ef_search)

    # -- properties --------------------------------------------------------------------

    @property
    def collections(self) -> dict[str, int]:
        """Collection -> number of chunks."""
        return dict(self.manifest.get("collections", {}))

    @property
    def cards(self) -> set[tuple[str, str]]:
        """``{(kind, key)}`` of the expert cards in the index."""
        return {tuple(c) for c in self.manifest.get("cards", [])}

    @property
    def report(self) -> dict:
        """Corpus load report: files loaded per collection and skipped files with reasons."""
        return dict(self.manifest.get("corpus", {}))

    def faiss_index(self, collection: str):
        """The raw FAISS index of a collection."""
        return self.indexes[collection].vector_store.client

    def set_ef_search(self, ef_search: int) -> None:
        """HNSW's efSearch (search breadth; higher: better recall, slower)."""
        self.ef_search = int(ef_search)
        for collection in self.indexes:
            index = self.faiss_index(collection)
            hnsw = getattr(index, "hnsw", None)
            if hnsw is not None:
                hnsw.efSearch = self.ef_search

    def chunks(self, collection: str | None = None) -> list[Hit]:
        """Every stored chunk (score NaN), in insertion order."""
        out = []
        for name in _collections(collection):
            if name not in self.indexes:
                continue
            index = self.indexes[name]
            ids = index.index_struct.nodes_dict
            for pos in sorted(ids, key=int):
                node = index.docstore.get_node(ids[pos])
                out.append(Hit(node.get_content(), float("nan"), dict(node.metadata), node.node_id))
        return out

    def __len__(self) -> int:
        return sum(self.collections.values())

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path else ""
        return f"KnowledgeIndex(kind={self.kind!r}, collections={self.collections}{where})"

    # -- retrieval ------------------------------------------------------------------------

    def retrieve(self, query: str, top_k: int = 5, collections=ALL) -> list[Hit]:
        """The ``top_k`` chunks most similar to ``query`` (cosine), from the given collections.

        ``collections``: ``("documents",)`` or ``("documents", "expert")`` (default: both) or a
        single name. Empty list when the collections hold nothing. Empty query: ValueError.
        """
        return self.retrieve_many([query], top_k=top_k, collections=collections)[0]

    def retrieve_many(self, queries: Sequence[str], top_k: int = 5, collections=ALL,
                      query_embeddings=None) -> list[list[Hit]]:
        """:meth:`retrieve` for many queries (embedded in one batch).

        ``query_embeddings``: the queries' vectors when already computed (``(n, dim)``, from
        :meth:`embed_queries`); they are not embedded again.
        """
        from llama_index.core.schema import QueryBundle

        if isinstance(queries, str):
            raise TypeError("retrieve_many takes a list of queries; use retrieve() for one")
        queries = list(queries)
        for q in queries:
            if not isinstance(q, str) or not q.strip():
                raise ValueError(f"empty query {q!r}: a query must be a non-empty string")
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        names = [c for c in _collections(collections) if c in self.indexes]
        if not queries:
            return []
        if not names:
            return [[] for _ in queries]
        if query_embeddings is None:
            vectors = self.embed_queries(queries)
        else:
            vectors = _normalise(query_embeddings)
            if len(vectors) != len(queries):
                raise ValueError(f"{len(vectors)} query embeddings for {len(queries)} queries")
        retrievers = {c: self.indexes[c].as_retriever(similarity_top_k=top_k) for c in names}
        results = []
        for query, vector in zip(queries, vectors):
            bundle = QueryBundle(query_str=query, embedding=vector.tolist())
            hits = []
            for name in names:
                for scored in retrievers[name].retrieve(bundle):
                    node = scored.node
                    hits.append(Hit(node.get_content(), float(scored.score), dict(node.metadata),
                                    node.node_id))
            hits.sort(key=lambda h: (-h.score, h.id))
            results.append(hits[:top_k])
        return results

    def embed_queries(self, queries: Sequence[str]) -> np.ndarray:
        """``(n, dim)`` normalised query vectors from the index's embedding model."""
        return _embed_queries(self.embed_model, list(queries))

    def vectors(self, collection: str) -> np.ndarray:
        """The stored vectors of a collection, in insertion order (read back from FAISS)."""
        index = self.faiss_index(collection)
        if hasattr(index, "storage"):  # HNSW: the flat storage holds the vectors
            index = faiss_downcast(index.storage)
        elif not hasattr(index, "reconstruct_n") or type(index).__name__.startswith("Gpu"):
            import faiss  # pragma: no cover - GPU index

            index = faiss.index_gpu_to_cpu(index)
        return index.reconstruct_n(0, index.ntotal)

    def as_kind(self, kind: str, ef_search: int | None = None, m: int = HNSW_M,
                ef_construction: int = HNSW_EF_CONSTRUCTION) -> "KnowledgeIndex":
        """The same chunks and vectors in another FAISS index kind (in memory, nothing re-embedded)."""
        ef_search = self.ef_search if ef_search is None else ef_search
        start = time.perf_counter()
        indexes = {}
        for collection, index in self.indexes.items():
            vectors = self.vectors(collection)
            chunks = [_HitChunk(h.text, h.metadata, h.id) for h in self.chunks(collection)]
            faiss_index = new_faiss_index(vectors.shape[1], kind, m, ef_construction, ef_search)
            indexes[collection] = _build_collection(chunks, vectors, self.embed_model, faiss_index)[1]
        manifest = dict(self.manifest, kind=kind, key="",
                        params={"M": m, "efConstruction": ef_construction} if kind == "hnsw" else {},
                        build_seconds=round(time.perf_counter() - start, 3))
        return type(self)(indexes, self.embed_model, kind, manifest, path=None, built=True,
                          embedded=0, ef_search=ef_search)

    def retrieve_condition(self, key: str, top_k: int = 5, collections=ALL,
                           template: str = QUERY_TEMPLATE) -> list[Hit]:
        """Retrieve for a catalog condition, queried by its name (``"{name} is defined as"``)."""
        from .catalog import condition

        return self.retrieve(template.format(name=condition(key).name), top_k, collections)

    def retrieve_feature(self, key: str, top_k: int = 5, collections=ALL,
                         template: str = QUERY_TEMPLATE) -> list[Hit]:
        """Retrieve for a catalog feature, queried by its name (``"{name} is defined as"``)."""
        from .catalog import feature

        return self.retrieve(template.format(name=feature(key).name), top_k, collections)


@dataclass
class _HitChunk:
    text: str
    metadata: dict
    id: str


def faiss_downcast(index):
    import faiss

    return faiss.downcast_index(index)


def _build_collection(chunks, vectors: np.ndarray, model: BaseEmbedding, faiss_index):
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.schema import TextNode
    from llama_index.vector_stores.faiss import FaissVectorStore

    nodes = []
    for chunk, vector in zip(chunks, vectors):
        meta = dict(chunk.metadata)
        nodes.append(TextNode(
            id_=chunk.id, text=chunk.text, metadata=meta, embedding=vector.tolist(),
            excluded_embed_metadata_keys=list(meta), excluded_llm_metadata_keys=list(meta),
        ))
    store = FaissVectorStore(faiss_index=faiss_index)
    storage = StorageContext.from_defaults(vector_store=store)
    index = VectorStoreIndex(nodes, storage_context=storage, embed_model=model)
    return storage, index


def _persist(target: Path, storages: dict, manifest: dict) -> Path:
    """Write every collection + the manifest into a temp folder, then rename it to ``target``."""
    root = target.parent
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=root))
    try:
        for collection, storage in storages.items():
            storage.persist(persist_dir=str(tmp / collection))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str) + "\n")
        umask = os.umask(0)
        os.umask(umask)
        for path in [tmp, *tmp.rglob("*")]:
            try:
                path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
            except OSError:  # pragma: no cover
                pass
        if target.exists():  # an incomplete leftover (no manifest) or a concurrent build
            if (target / MANIFEST).is_file():
                return target
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / MANIFEST).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# ----------------------------------------------------------------------------- measurements


def card_hit_rate(index: KnowledgeIndex, k: int = 2, collections=ALL,
                  template: str = QUERY_TEMPLATE):
    """Does ``"{name} is defined as"`` retrieve a chunk of that catalog card within the top ``k``?

    One row per catalog condition and feature: ``kind``, ``key``, ``name``, ``query``,
    ``present`` (the index holds that expert card), ``hit``, ``rank`` (1-based rank of the
    card's first chunk, NaN if not in the top k), ``top`` (sources of the top-k hits).
    ``df.attrs``: ``hit_rate`` (over the cards present; NaN if none), ``hit_rate_all`` (missing
    cards count as misses), ``n_cards``, ``n_present``, ``missing`` (keys).
    """
    import pandas as pd

    from .catalog import CONDITIONS, FEATURES

    items = [("condition", c.key, c.name) for c in CONDITIONS] + [("feature", f.key, f.name) for f in FEATURES]
    queries = [template.format(name=name) for _, _, name in items]
    results = index.retrieve_many(queries, top_k=k, collections=collections)
    cards = index.cards
    rows = []
    for (kind, key, name), query, hits in zip(items, queries, results):
        rank = next((i + 1 for i, h in enumerate(hits)
                     if h.collection == "expert" and h.kind == kind and h.key == key), None)
        rows.append({"kind": kind, "key": key, "name": name, "query": query,
                     "present": (kind, key) in cards, "hit": rank is not None,
                     "rank": float(rank) if rank else math.nan,
                     "top": [h.id for h in hits]})
    df = pd.DataFrame(rows)
    present = df[df["present"]]
    df.attrs.update(
        hit_rate=float(present["hit"].mean()) if len(present) else math.nan,
        hit_rate_all=float(df["hit"].mean()),
        n_cards=len(df), n_present=int(df["present"].sum()), k=k,
        missing=df.loc[~df["present"], "key"].tolist(),
    )
    return df


def recall_at_k(hnsw_index, flat_index, queries, k: int = 10, collections=ALL) -> float:
    """Mean recall@k of an approximate index against exact search.

    Either two :class:`KnowledgeIndex` objects and a list of query strings (ids of the chunks
    retrieved are compared), or two raw FAISS indexes and a ``(n, dim)`` float32 array.
    """
    if isinstance(hnsw_index, KnowledgeIndex) and isinstance(flat_index, KnowledgeIndex):
        approx = hnsw_index.retrieve_many(list(queries), top_k=k, collections=collections)
        exact = flat_index.retrieve_many(list(queries), top_k=k, collections=collections)
        scores = [len({h.id for h in a} & {h.id for h in e}) / len(e) for a, e in zip(approx, exact) if e]
        return float(np.mean(scores)) if scores else math.nan
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    _, approx = hnsw_index.search(queries, k)
    _, exact = flat_index.search(queries, k)
    return _id_recall(approx, exact)


def _id_recall(approx: np.ndarray, exact: np.ndarray) -> float:
    scores = []
    for a, e in zip(approx, exact):
        e = set(e[e >= 0].tolist())
        if e:
            scores.append(len(set(a[a >= 0].tolist()) & e) / len(e))
    return float(np.mean(scores)) if scores else math.nan

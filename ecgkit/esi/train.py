"""One training loop on ``accelerate`` for ESI, SimCLR and supervised models.

The same code runs on CPU, on one GPU and on several GPUs (``accelerate launch``): the loop asks
the model for ``model(batch)["loss"]`` and does the rest.

- **Schedule** (the paper): AdamW, lr 5e-5, linear warm-up over the first 5 of 30 epochs, then
  ×0.1 every 10 epochs (:func:`learning_rate`). The quick profile scales the epochs down (and
  raises the learning rate, since its small encoder starts from scratch on a few hundred records).
- **Mixed precision** on GPU (bf16 where supported, else fp16), full precision on CPU.
- **Checkpoints** (weights as safetensors, AdamW state with ``torch.load(weights_only=True)``) every
  ``checkpoint_every`` steps and at each epoch's end, in the run's folder; a rerun resumes from the
  last one and ends with the same weights as an uninterrupted run: the data order is a function of
  (seed, epoch) and the random state of each step a function of (seed, step, rank).
- **Cache**: a run's folder is named by a hash of the model's settings, the training settings and the
  data; when it holds ``final.safetensors`` the weights are loaded and nothing is trained.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..cache import key as cache_key
from ..config import ProfileSettings, cache_dir
from ..nn import ConvNeXt1D, ecg_encoder
from ..hashing import content_sha256
from ..versions import VERSIONS

FORMAT_VERSION = VERSIONS["esi_train"]


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class TrainConfig(ProfileSettings):
    """Optimisation settings. The defaults are the paper's (full profile); the quick profile's
    pretraining: 6 epochs, 1 of warm-up, x0.1 after 4 (the paper: 30, 5, every 10), a higher
    learning rate (a small encoder from scratch), batches of 32."""

    PROFILES = {"quick": dict(epochs=6, warmup_epochs=1, decay_every=4, lr=1e-3, batch_size=32)}

    epochs: int = 30
    warmup_epochs: int = 5
    decay_every: int = 10
    decay: float = 0.1
    lr: float = 5e-5
    weight_decay: float = 0.01
    batch_size: int = 128
    grad_clip: float | None = 1.0
    mixed_precision: str = "auto"   # "auto": bf16 (fp16 without bf16) on GPU, "no" on CPU
    seed: int = 0
    max_steps: int | None = None    # a fixed budget of optimizer steps (epochs then only shape the schedule)


#: the quick profile's pretraining settings
QUICK_PRETRAIN = TrainConfig.for_profile("quick")


def total_steps(steps_per_epoch: int, config: TrainConfig) -> int:
    """The run's optimizer steps: ``max_steps`` when set, else ``epochs`` × ``steps_per_epoch``."""
    return int(config.max_steps) if config.max_steps else config.epochs * steps_per_epoch


def learning_rate(step: int, steps_per_epoch: int, config: TrainConfig) -> float:
    """Linear warm-up over ``warmup_epochs``, then ×``decay`` every ``decay_every`` epochs.

    With ``max_steps`` the same shape is laid over the step budget: warm-up over the share
    ``warmup_epochs / epochs`` of it, ×``decay`` after every share ``decay_every / epochs``."""
    if config.max_steps:
        total = config.max_steps
        warmup = max(1, round(total * config.warmup_epochs / config.epochs))
        period = max(1, round(total * config.decay_every / config.epochs))
        if step < warmup:
            return config.lr * (step + 1) / warmup
        return config.lr * config.decay ** (step // period)
    warmup = config.warmup_epochs * steps_per_epoch
    if step < warmup:
        return config.lr * (step + 1) / warmup
    return config.lr * config.decay ** ((step // steps_per_epoch) // config.decay_every)


def resolve_precision(value: str = "auto") -> str:
    if value != "auto":
        return value
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


# ----------------------------------------------------------------------------- data


class RecordData(Dataset):
    """Records as dicts: ``ecg`` (12, T) float32 from a (N, T, 12) array, plus per-record tensors."""

    def __init__(self, signals, **fields: torch.Tensor):
        self.signals = signals
        for name, value in fields.items():
            if len(value) != len(signals):
                raise ValueError(f"{name} has {len(value)} rows for {len(signals)} records")
        self.fields = fields

    def __len__(self) -> int:
        return len(self.signals)

    def __getitem__(self, i: int) -> dict:
        ecg = torch.from_numpy(np.ascontiguousarray(np.asarray(self.signals[i], dtype=np.float32).T))
        return {"ecg": ecg, **{k: v[i] for k, v in self.fields.items()}}


class EpochSampler(Sampler):
    """A permutation that depends only on (seed, epoch): resumable, the same on every process."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())


#: sha256 over arrays and JSON-able values (the content part of a run's key)
fingerprint = content_sha256


def run_folder(kind: str, spec: dict, data: str, config: TrainConfig) -> Path:
    """The cache folder of a training run, named by a hash of everything that shapes its weights."""
    train = {**asdict(config), "mixed_precision": resolve_precision(config.mixed_precision)}
    if train["max_steps"] is None:   # runs without a step budget keep their earlier keys
        del train["max_steps"]
    key = cache_key("esi_train", {"kind": kind, "spec": spec, "data": data, "train": train})
    return cache_dir("esi", "runs") / f"{kind}-{key}"


# ----------------------------------------------------------------------------- checkpoints


def _state(model) -> dict[str, torch.Tensor]:
    state = model.trainable_state_dict() if hasattr(model, "trainable_state_dict") else model.state_dict()
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def save_weights(model, path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(_state(model), str(tmp))
    tmp.replace(path)


def load_weights(model, path: Path) -> None:
    """Load safetensors weights; only a frozen BERT (reloaded from its folder) may be missing."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("text.bert.")]
    if missing or unexpected:
        raise ValueError(f"{path} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")


def _save_checkpoint(folder: Path, model, optimizer, scaler, info: dict) -> None:
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_weights(model, tmp / "model.safetensors")
    torch.save({"optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None}, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(info, indent=1))
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(folder: Path, model, optimizer) -> tuple[dict, dict | None]:
    """(state.json, scaler state) after loading weights and optimizer state; ({}, None) when none."""
    if not (folder / "state.json").is_file():
        return {}, None
    load_weights(model, folder / "model.safetensors")
    saved = torch.load(folder / "optimizer.pt", weights_only=True, map_location="cpu")
    optimizer.load_state_dict(saved["optimizer"])
    return json.loads((folder / "state.json").read_text()), saved.get("scaler")


# ----------------------------------------------------------------------------- the loop


@dataclass
class FitResult:
    model: torch.nn.Module
    history: list = field(default_factory=list)   # one dict per epoch: epoch, lr, mean losses
    cached: bool = False
    run_dir: Path | None = None
    seconds: float = 0.0
    steps: int = 0
    resumed_from: int = 0


def fit(model: torch.nn.Module, data: Dataset, config: TrainConfig, run_dir: str | Path,
        progress: bool = True, checkpoint_every: int | None = None,
        on_step: Callable[[int, dict], None] | None = None, describe: dict | None = None) -> FitResult:
    """Train ``model`` (whose ``forward(batch)`` returns a dict with ``loss``) on ``data``.

    Returns at once with the cached weights when ``run_dir`` holds ``final.safetensors``; resumes
    from ``run_dir/checkpoint`` when an earlier run was interrupted. ``on_step(step, losses)`` is
    called after every optimizer step (on every process). ``describe`` is stored in ``run.json``.
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    final = run_dir / "final.safetensors"
    if final.is_file():
        load_weights(model, final)
        info = json.loads((run_dir / "run.json").read_text())
        return FitResult(model.eval(), info.get("history", []), True, run_dir, info.get("seconds", 0.0),
                         info.get("steps", 0))
    run_dir.mkdir(parents=True, exist_ok=True)
    # cpu=True without CUDA: several CPU processes (torchrun, accelerate launch) then use gloo
    # find_unused_parameters: an ablation may leave a part unused (w/o L_con: the pooled head)
    accelerator = Accelerator(mixed_precision=resolve_precision(config.mixed_precision),
                              cpu=not torch.cuda.is_available(),
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    sampler = EpochSampler(len(data), config.seed)
    loader = DataLoader(data, batch_size=config.batch_size, sampler=sampler, drop_last=True)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    state, scaler_state = _load_checkpoint(run_dir / "checkpoint", model, optimizer)
    step = int(state.get("step", 0))
    history = list(state.get("history", []))
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    if scaler_state and accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(scaler_state)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError(f"{len(data)} records make no full batch of {config.batch_size} "
                         f"on {accelerator.num_processes} process(es); lower batch_size")
    total = total_steps(steps_per_epoch, config)
    rank = accelerator.process_index
    resumed_from = step
    start = time.perf_counter()
    bar = tqdm(total=total, initial=step, desc=f"train {run_dir.name}", leave=False, mininterval=5,
               miniters=steps_per_epoch, disable=not (progress and accelerator.is_main_process))
    sums: dict[str, float] = dict(state.get("sums", {}))

    def checkpoint():
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            _save_checkpoint(run_dir / "checkpoint", accelerator.unwrap_model(model), optimizer,
                             accelerator.scaler, {"step": step, "history": history, "sums": sums})
        accelerator.wait_for_everyone()

    model.train()
    for epoch in range(step // steps_per_epoch, -(-total // steps_per_epoch)):
        loader.set_epoch(epoch)
        done_in_epoch = step - epoch * steps_per_epoch
        batches = accelerator.skip_first_batches(loader, done_in_epoch) if done_in_epoch else loader
        if not done_in_epoch:
            sums = {}
        for batch in batches:
            if step >= total:
                break
            torch.manual_seed(config.seed * 1_000_003 + step * 997 + rank)
            lr = learning_rate(step, steps_per_epoch, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            out = model(batch)
            accelerator.backward(out["loss"])
            if config.grad_clip:
                accelerator.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            losses = {k: float(v.detach()) for k, v in out.items() if torch.is_tensor(v) and v.ndim == 0}
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{losses['loss']:.3f}", refresh=False)
            bar.update(1)
            if on_step is not None:
                on_step(step, losses)
            if step % steps_per_epoch == 0 or step == total:
                done = steps_per_epoch if step % steps_per_epoch == 0 else step % steps_per_epoch
                mean = {k: v / done for k, v in sums.items()}
                reduced = accelerator.reduce(torch.tensor(list(mean.values()), device=accelerator.device), "mean")
                history.append({"epoch": epoch + 1, "lr": lr, **dict(zip(mean, reduced.tolist()))})
                sums = {}
                if step < total:
                    checkpoint()
            elif checkpoint_every and step % checkpoint_every == 0:
                checkpoint()
    bar.close()
    seconds = time.perf_counter() - start
    accelerator.wait_for_everyone()
    trained = accelerator.unwrap_model(model)
    if accelerator.is_main_process:
        save_weights(trained, final)
        (run_dir / "run.json").write_text(json.dumps(
            {"describe": describe or {}, "train": asdict(config), "history": history, "seconds": seconds,
             "steps": step, "records": len(data), "processes": accelerator.num_processes,
             "precision": accelerator.mixed_precision}, indent=1, default=str))
        shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)
    accelerator.wait_for_everyone()
    if torch.cuda.is_available():
        accelerator.free_memory()
    return FitResult(trained.eval(), history, False, run_dir, seconds, step, resumed_from)


# ----------------------------------------------------------------------------- ESI


@dataclass(frozen=True)
class ESIConfig(ProfileSettings):
    """The model's settings. Defaults: the quick profile's small model; :meth:`for_profile`."""

    variant: str = "small"
    text_encoder: str | None = None        # None: all-MiniLM-L6-v2 (or $ECGKIT_TEXT_ENCODER)
    text_trainable_layers: int = 0         # 0: frozen BERT, [CLS] features computed once; -1: all
    embed_dim: int = 128
    decoder_width: int = 64
    decoder_layers: int = 2
    decoder_heads: int = 4
    max_text_tokens: int = 96
    max_caption_tokens: int = 48
    contrastive_weight: float = 1.0
    caption_weight: float = 1.0
    drop_path: float = 0.0

    PROFILES = {"full": dict(variant="tiny", text_trainable_layers=-1, embed_dim=256, decoder_width=512,
                             decoder_layers=4, decoder_heads=8, max_text_tokens=256,
                             max_caption_tokens=128, drop_path=0.1)}


@dataclass
class Pretrained:
    """A pretrained ESI model with what it needs to embed texts and decode captions."""

    model: torch.nn.Module
    vocab: object
    tokenizer: object
    config: ESIConfig
    fit: FitResult

    @property
    def encoder(self) -> ConvNeXt1D:
        return self.model.encoder


def _tokenizer(name):
    from ..models import text_encoder_path
    from .model import text_tokenizer

    return text_tokenizer(str(text_encoder_path(name)))


def esi_data(signals, texts: Sequence[str], config: ESIConfig, tower=None, vocab=None, progress: bool = True):
    """(RecordData, vocab, tokenizer): captions as compact ids, texts as [CLS] features or tokens."""
    from .model import CaptionVocab, text_features

    tokenizer = tower.tokenizer if tower is not None else _tokenizer(config.text_encoder)
    fields = {}
    if config.caption_weight > 0:
        ids = CaptionVocab.token_ids_of(tokenizer, texts, config.max_caption_tokens)   # tokenised once
        vocab = vocab or CaptionVocab.build(tokenizer, texts, config.max_caption_tokens, ids=ids)
        fields["caption"] = vocab.encode(tokenizer, texts, config.max_caption_tokens, ids=ids)
    if tower is not None:
        if tower.frozen:
            fields["text_features"] = text_features(texts, max_length=config.max_text_tokens, tower=tower,
                                                    progress=progress)
        else:
            fields.update(tower.tokenize(texts, config.max_text_tokens))
    return RecordData(signals, **fields), vocab, tokenizer


def pretrain_esi(signals, texts: Sequence[str], config: ESIConfig | None = None,
                 train: TrainConfig | None = None, progress: bool = True, checkpoint_every: int | None = None,
                 on_step=None, data_id: str | None = None) -> Pretrained:
    """Pretrain ESI on ECG-text pairs (``signals`` N × T × 12 mV, ``texts`` N strings); cached.

    ``data_id`` replaces hashing the signals (give one when the signals are large and have a
    stable identity, e.g. a dataset name and record ids).
    """
    from .model import ESIModel, TextTower

    config = config or ESIConfig()
    train = train or TrainConfig.for_profile()
    texts = [str(t) for t in texts]
    if len(texts) != len(signals):
        raise ValueError(f"{len(signals)} ECGs but {len(texts)} texts")
    torch.manual_seed(train.seed)
    tower = (TextTower(config.text_encoder, config.embed_dim, config.text_trainable_layers)
             if config.contrastive_weight > 0 else None)
    data, vocab, tokenizer = esi_data(signals, texts, config, tower, progress=progress)
    torch.manual_seed(train.seed)
    if tower is not None:
        tower.proj.reset_parameters()
    model = ESIModel(ecg_encoder(config.variant, drop_path=config.drop_path), tower,
                     len(vocab) if vocab else None, config.embed_dim, config.decoder_width,
                     config.decoder_layers, config.decoder_heads, config.max_caption_tokens,
                     config.contrastive_weight, config.caption_weight)
    spec = {**asdict(config), "text_source": tower.source if tower else None}
    data_key = fingerprint(data_id, texts) if data_id else fingerprint(np.asarray(signals), texts)
    folder = run_folder("esi", spec, data_key, train)
    result = fit(model, data, train, folder, progress, checkpoint_every, on_step,
                 describe={"model": spec, "records": len(texts)})
    return Pretrained(result.model, vocab, tokenizer, config, result)


def pretrain_simclr(signals, variant: str = "small", train: TrainConfig | None = None, progress: bool = True,
                    data_id: str | None = None, **augmentation) -> FitResult:
    """SimCLR-style signal-only pretraining of the same encoder on the same ECGs; cached."""
    from .model import SimCLRModel

    train = train or TrainConfig.for_profile()
    torch.manual_seed(train.seed)
    model = SimCLRModel(ecg_encoder(variant), **augmentation)
    spec = {"variant": variant, "augmentation": augmentation}
    data_key = fingerprint(data_id) if data_id else fingerprint(np.asarray(signals))
    return fit(model, RecordData(signals), train, run_folder("simclr", spec, data_key, train), progress,
               describe={"model": spec, "records": len(signals)})


def train_supervised(signals, y, variant: str = "small", train: TrainConfig | None = None,
                     init: ConvNeXt1D | None = None, init_id: str | None = None, progress: bool = True,
                     data_id: str | None = None) -> FitResult:
    """Encoder + linear layer trained on multi-hot ``y``: from scratch, or fine-tuning ``init``; cached.

    ``init_id`` names the initial weights in the cache key (default: a hash of them).
    """
    from .model import SupervisedModel

    train = train or TrainConfig.for_profile()
    y = torch.as_tensor(np.asarray(y), dtype=torch.float32)
    torch.manual_seed(train.seed)
    encoder = ecg_encoder(variant)
    if init is not None:
        encoder.load_state_dict(init.state_dict())
        init_id = init_id or fingerprint(*[v for v in init.state_dict().values()])
    model = SupervisedModel(encoder, y.shape[1])
    spec = {"variant": variant, "classes": int(y.shape[1]), "init": init_id}
    data_key = fingerprint(data_id, y) if data_id else fingerprint(np.asarray(signals), y)
    return fit(model, RecordData(signals, y=y), train, run_folder("supervised", spec, data_key, train),
               progress, describe={"model": spec, "records": len(signals)})


def load_pretrained_encoder(run_dir: str | Path) -> ConvNeXt1D:
    """The ECG encoder of a finished run (ESI, SimCLR or supervised) from its cache folder."""
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    spec = info["describe"]["model"]
    encoder = ecg_encoder(spec["variant"])
    state = load_file(str(run_dir / "final.safetensors"))
    encoder.load_state_dict({k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")})
    return encoder.eval()

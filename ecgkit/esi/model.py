"""ESI's model: ECG encoder, text tower, CoCa-style captioning decoder, and the two losses.

- **Text tower**: a local Hugging Face BERT (all-MiniLM-L6-v2 by default; any folder or hub id,
  e.g. BioLinkBERT), its [CLS] embedding projected and L2-normalised. With ``trainable_layers=0``
  the BERT is frozen and its [CLS] features can be computed once per text
  (:func:`text_features`, cached on disk), so training only runs the projection.
- **Captioning decoder**: causal transformer layers (masked self-attention) with cross-attention to
  the ECG encoder's *sequence* of features (the T' time steps before pooling, projected, with
  sinusoidal positions), predicting the next token of the record's text.
- **Losses**: symmetric InfoNCE with a learnable temperature (CLIP's initialisation
  ``logit_scale = log(1/0.07)``, the scale clamped at 100), negatives gathered from every process
  under multi-process training (gradient flows back to the process that computed them), plus the
  captioning cross-entropy; weights 1 : 1.

The public ESI code gets three of these wrong (a bidirectional caption encoder, a pooled vector
repeated as the decoder's memory, per-process negatives); the tests prove each point here.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import cache_dir
from ..nn import ConvNeXt1D

CLIP_LOGIT_SCALE = math.log(1 / 0.07)
MAX_LOGIT_SCALE = math.log(100.0)


# ----------------------------------------------------------------------------- losses


def _world():
    """(rank, world size) of torch.distributed, (0, 1) when it is not running."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _AllGather(torch.autograd.Function):
    """all_gather whose backward hands each process the summed gradient of its own rows."""

    @staticmethod
    def forward(ctx, x):
        import torch.distributed as dist

        out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads):
        import torch.distributed as dist

        grad = torch.stack(grads).contiguous()
        dist.all_reduce(grad)              # every process's loss, summed
        return grad[dist.get_rank()]


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All processes' rows of ``x`` concatenated in rank order, and this process's rank.

    The backward pass sends each process the gradient that every process's loss put on its
    rows, so negatives from other processes train this one's encoder too. Local batches must be
    equal in size (the training loop drops the last incomplete batch).
    """
    rank, world = _world()
    if world == 1:
        return x, 0
    import torch.distributed as dist

    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))
    if len({int(s) for s in sizes}) != 1:
        raise ValueError(f"contrastive loss: local batch sizes differ across processes "
                         f"({[int(s) for s in sizes]}); use equal batches (drop_last=True)")
    return torch.cat(_AllGather.apply(x), dim=0), rank


def contrastive_loss(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Symmetric InfoNCE between L2-normalised ``a`` and ``b`` (row i of each is a pair).

    ``exp(logit_scale)`` multiplies the cosine similarities, clamped at 100. Under
    torch.distributed the candidates are the rows of all processes and the targets of this
    process's rows are ``arange(n) + rank * n``; the mean of the processes' losses equals the loss
    of one process on the concatenated batch.
    """
    a, b = a.float(), b.float()
    scale = torch.as_tensor(logit_scale, dtype=torch.float32, device=a.device).clamp(max=MAX_LOGIT_SCALE).exp()
    all_a, rank = gather_with_grad(a)
    all_b, _ = gather_with_grad(b)
    n = a.shape[0]
    targets = torch.arange(n, device=a.device) + rank * n
    loss_ab = F.cross_entropy(scale * a @ all_b.T, targets)
    loss_ba = F.cross_entropy(scale * b @ all_a.T, targets)
    return (loss_ab + loss_ba) / 2


def caption_loss(logits: torch.Tensor, targets: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """Next-token cross-entropy, padding ignored. ``logits`` (B, L, V), ``targets`` (B, L)."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=pad_id)


# ----------------------------------------------------------------------------- text tower


@functools.lru_cache(maxsize=2)
def _frozen_bert(folder: str):
    from transformers import AutoModel

    return AutoModel.from_pretrained(folder).eval().requires_grad_(False)


@functools.lru_cache(maxsize=2)
def text_tokenizer(folder: str):
    """The text encoder's tokenizer, loaded once per process (only read, never changed)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


class TextTower(nn.Module):
    """A BERT's [CLS] embedding, projected to ``embed_dim`` and L2-normalised.

    ``trainable_layers``: 0 freezes the BERT (only the projection learns; [CLS] features may be
    precomputed), ``-1`` trains all of it, k > 0 trains the last k transformer layers.
    """

    def __init__(self, name=None, embed_dim: int = 128, trainable_layers: int = 0):
        super().__init__()
        from transformers import AutoModel

        from ..models import text_encoder_path

        folder = text_encoder_path(name)
        self.source = str(folder)
        self.tokenizer = text_tokenizer(str(folder))
        # a frozen BERT never changes: one copy per process serves every tower
        self.bert = _frozen_bert(str(folder)) if trainable_layers == 0 else AutoModel.from_pretrained(folder)
        self.hidden = self.bert.config.hidden_size
        self.proj = nn.Linear(self.hidden, embed_dim)
        self.trainable_layers = trainable_layers
        self._freeze(trainable_layers)

    def _freeze(self, trainable_layers: int) -> None:
        train_all = trainable_layers < 0
        for name, p in self.bert.named_parameters():
            # the pooler is never used ([CLS] comes from the last hidden state): frozen, so that
            # distributed training does not wait for its gradients
            p.requires_grad = train_all and not name.startswith("pooler.")
        if trainable_layers > 0:
            layers = getattr(getattr(self.bert, "encoder", None), "layer", None)
            if layers is None:
                raise ValueError(f"{self.source}: cannot find its transformer layers to unfreeze")
            for layer in list(layers)[-trainable_layers:]:
                for p in layer.parameters():
                    p.requires_grad = True

    @property
    def frozen(self) -> bool:
        return not any(p.requires_grad for p in self.bert.parameters())

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.bert.eval()  # no dropout in a frozen tower: its features stay fixed
        return self

    def tokenize(self, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(list(texts), padding="max_length", truncation=True,
                               max_length=max_length, return_tensors="pt")
        return {"text_ids": batch["input_ids"], "text_mask": batch["attention_mask"]}

    def cls_features(self, text_ids: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        # trim the common padding: shorter sequences, same result
        keep = int(text_mask.sum(1).max())
        out = self.bert(input_ids=text_ids[:, :keep], attention_mask=text_mask[:, :keep])
        return out.last_hidden_state[:, 0]

    def forward(self, text_ids=None, text_mask=None, text_features=None) -> torch.Tensor:
        if text_features is None:
            if text_ids is None:
                raise ValueError("the text tower needs text_ids and text_mask, or text_features")
            text_features = self.cls_features(text_ids, text_mask)
        return F.normalize(self.proj(text_features.to(self.proj.weight.dtype)), dim=-1)

    def embed(self, texts: Sequence[str], max_length: int = 128, batch_size: int = 64) -> torch.Tensor:
        """Normalised embeddings of ``texts`` (eval mode, no gradient)."""
        device = self.proj.weight.device
        out = []
        was = self.training
        self.eval()
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                tok = self.tokenize(texts[i:i + batch_size], max_length)
                out.append(self(**{k: v.to(device) for k, v in tok.items()}).float().cpu())
        self.train(was)
        return torch.cat(out) if out else torch.zeros(0, self.proj.out_features)


def text_features(texts: Sequence[str], name=None, max_length: int = 128, batch_size: int = 32,
                  progress: bool = True, tower: TextTower | None = None) -> torch.Tensor:
    """Frozen BERT [CLS] features of ``texts`` (N, hidden), cached on disk by model and texts.

    Identical texts are computed once. The cache key covers the model folder's weights (by
    file name, size and time), ``max_length`` and the texts themselves.
    """
    from tqdm.auto import tqdm

    texts = [str(t) for t in texts]
    tower = tower or TextTower(name, trainable_layers=0)
    folder = Path(tower.source)
    stamp = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.glob("*")
                   if p.is_file() and p.suffix in {".safetensors", ".bin", ".json", ".txt"})
    unique = sorted(set(texts))
    from ..cache import key as cache_key

    key = cache_key("esi_text_features", [str(folder), stamp, max_length, unique])
    path = cache_dir("esi", "text_features") / f"{key}.npy"
    if path.is_file():
        table = np.load(path)
    else:
        bert = tower.bert
        was = bert.training
        bert.eval()
        device = next(bert.parameters()).device
        rows = []
        order = sorted(range(len(unique)), key=lambda j: len(unique[j]))  # little padding per batch
        with torch.inference_mode():
            for i in tqdm(range(0, len(order), batch_size), desc="text features", disable=not progress):
                idx = order[i:i + batch_size]
                tok = tower.tokenize([unique[j] for j in idx], max_length)
                rows.append(tower.cls_features(tok["text_ids"].to(device), tok["text_mask"].to(device)).float().cpu())
        bert.train(was)
        table = np.empty((len(unique), tower.hidden), dtype=np.float32)
        if rows:
            table[order] = torch.cat(rows).numpy()
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, table)
        tmp.replace(path)
    where = {t: i for i, t in enumerate(unique)}
    return torch.from_numpy(table[[where[t] for t in texts]])


# ----------------------------------------------------------------------------- captioning


class CaptionVocab:
    """A compact output vocabulary: the tokenizer ids that occur in the training captions.

    Index 0 is padding, then the tokenizer's start, end and unknown tokens, then the ids seen.
    The softmax runs over these few thousand ids instead of the tokenizer's 30,522.
    """

    def __init__(self, token_ids: Sequence[int]):
        self.token_ids = [int(t) for t in token_ids]
        self.index = {t: i for i, t in enumerate(self.token_ids)}

    PAD, BOS, EOS, UNK = 0, 1, 2, 3

    @staticmethod
    def token_ids_of(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
        """The tokenizer's ids of each caption ([CLS] … [SEP], truncated): what build and encode read."""
        return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]

    @classmethod
    def build(cls, tokenizer, texts: Sequence[str], max_length: int, ids=None) -> "CaptionVocab":
        """The vocabulary of ``texts`` (``ids``: their :meth:`token_ids_of`, when already at hand)."""
        special = [tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.unk_token_id]
        if any(s is None for s in special):
            raise ValueError("the caption tokenizer needs pad, cls, sep and unk tokens (a BERT tokenizer)")
        seen = set()
        for row in (ids if ids is not None else cls.token_ids_of(tokenizer, texts, max_length)):
            seen.update(row)
        return cls(special + sorted(seen - set(special)))

    def __len__(self) -> int:
        return len(self.token_ids)

    def encode(self, tokenizer, texts: Sequence[str], max_length: int, ids=None) -> torch.Tensor:
        """(N, max_length) compact ids: [CLS] tokens [SEP], right-padded with 0."""
        rows = ids if ids is not None else self.token_ids_of(tokenizer, texts, max_length)
        out = np.zeros((len(rows), max_length), dtype=np.int64)
        for i, row in enumerate(rows):
            out[i, :len(row)] = [self.index.get(t, self.UNK) for t in row]
        return torch.from_numpy(out)

    def decode(self, tokenizer, ids: torch.Tensor) -> list[str]:
        texts = []
        for row in ids.tolist():
            kept = [self.token_ids[i] for i in row if i not in (self.PAD, self.BOS, self.EOS)]
            texts.append(tokenizer.decode(kept))
        return texts


def sinusoidal_positions(length: int, dim: int, device=None) -> torch.Tensor:
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    out = torch.zeros(length, dim, device=device)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return out


class CaptionDecoder(nn.Module):
    """Causal transformer decoder over caption tokens, cross-attending to the ECG feature sequence."""

    def __init__(self, vocab_size: int, ecg_dim: int, width: int = 256, layers: int = 2, heads: int = 4,
                 max_length: int = 128, dropout: float = 0.1):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width, padding_idx=CaptionVocab.PAD)
        self.pos = nn.Parameter(torch.zeros(max_length, width))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.memory_proj = nn.Linear(ecg_dim, width)
        layer = nn.TransformerDecoderLayer(width, heads, 4 * width, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerDecoder(layer, layers)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size)
        self.width, self.max_length = width, max_length

    def forward(self, tokens: torch.Tensor, ecg_sequence: torch.Tensor) -> torch.Tensor:
        """``tokens`` (B, L) compact ids, ``ecg_sequence`` (B, T', ecg_dim) -> logits (B, L, V)."""
        if ecg_sequence.ndim != 3:
            raise ValueError(f"the decoder cross-attends to a (batch, time, features) sequence, "
                             f"got shape {tuple(ecg_sequence.shape)}")
        length = tokens.shape[1]
        if length > self.max_length:
            raise ValueError(f"caption of {length} tokens is longer than the decoder's {self.max_length}")
        x = self.embed(tokens) + self.pos[:length]
        memory = self.memory_proj(ecg_sequence)
        memory = memory + sinusoidal_positions(memory.shape[1], self.width, memory.device).to(memory.dtype)
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=tokens.device), diagonal=1)
        h = self.layers(x, memory, tgt_mask=causal, tgt_is_causal=True)
        return self.head(self.norm(h))


# ----------------------------------------------------------------------------- models


class ESIModel(nn.Module):
    """ECG encoder + text tower (contrastive) + captioning decoder, weighted 1 : 1 by default.

    With ``contrastive_weight=0`` the text tower and temperature are left out, with
    ``caption_weight=0`` the decoder (the paper's ablations).
    """

    def __init__(self, encoder: ConvNeXt1D, text: TextTower | None, vocab_size: int | None,
                 embed_dim: int = 128, decoder_width: int = 256, decoder_layers: int = 2,
                 decoder_heads: int = 4, max_caption_tokens: int = 64,
                 contrastive_weight: float = 1.0, caption_weight: float = 1.0):
        super().__init__()
        if contrastive_weight <= 0 and caption_weight <= 0:
            raise ValueError("ESIModel needs the contrastive loss, the captioning loss or both")
        self.encoder = encoder
        self.contrastive_weight, self.caption_weight = float(contrastive_weight), float(caption_weight)
        if self.contrastive_weight > 0:
            if text is None:
                raise ValueError("the contrastive loss needs a text tower")
            self.text = text
            self.ecg_proj = nn.Linear(encoder.dim, embed_dim)
            self.logit_scale = nn.Parameter(torch.tensor(CLIP_LOGIT_SCALE))
        else:
            self.text = None
        if self.caption_weight > 0:
            if not vocab_size:
                raise ValueError("the captioning loss needs a vocabulary size")
            self.decoder = CaptionDecoder(vocab_size, encoder.dim, decoder_width, decoder_layers,
                                          decoder_heads, max_caption_tokens)
        else:
            self.decoder = None

    def encode_ecg(self, ecg: torch.Tensor) -> torch.Tensor:
        """L2-normalised ECG embeddings in the joint space."""
        return F.normalize(self.ecg_proj(self.encoder(ecg)), dim=-1)

    def forward(self, batch: dict) -> dict:
        sequence = self.encoder.forward_features(batch["ecg"])
        out = {}
        loss = 0.0
        if self.text is not None:
            ecg = F.normalize(self.ecg_proj(self.encoder.pool(sequence)), dim=-1)
            text = self.text(text_ids=batch.get("text_ids"), text_mask=batch.get("text_mask"),
                             text_features=batch.get("text_features"))
            out["contrastive"] = contrastive_loss(ecg, text, self.logit_scale)
            loss = loss + self.contrastive_weight * out["contrastive"]
        if self.decoder is not None:
            caption = batch["caption"]
            keep = max(int((caption != CaptionVocab.PAD).sum(1).max()), 2)  # trim common padding
            caption = caption[:, :keep]
            logits = self.decoder(caption[:, :-1], sequence)
            out["caption"] = caption_loss(logits, caption[:, 1:])
            loss = loss + self.caption_weight * out["caption"]
        out["loss"] = loss
        return out

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The state without a frozen BERT (it is reloaded from its folder)."""
        state = self.state_dict()
        if self.text is not None and self.text.frozen:
            state = {k: v for k, v in state.items() if not k.startswith("text.bert.")}
        return state


def augment(ecg: torch.Tensor, crop: float = 0.5, noise: float = 0.05, scale: tuple = (0.5, 1.5),
            lead_mask: float = 0.2) -> torch.Tensor:
    """SimCLR-style ECG augmentation: random crop, Gaussian noise (mV), per-lead scaling, lead masking."""
    b, c, t = ecg.shape
    length = max(32, int(round(crop * t)))
    start = torch.randint(0, t - length + 1, (b,), device=ecg.device)
    idx = start[:, None] + torch.arange(length, device=ecg.device)[None, :]
    x = torch.gather(ecg, 2, idx[:, None, :].expand(b, c, length))
    x = x * torch.empty(b, c, 1, device=ecg.device).uniform_(*scale)
    x = x + noise * torch.randn_like(x)
    keep = (torch.rand(b, c, 1, device=ecg.device) >= lead_mask).to(x.dtype)
    return x * keep


class SimCLRModel(nn.Module):
    """Signal-only contrastive pretraining: two augmented views of each ECG, InfoNCE at τ = 0.1."""

    def __init__(self, encoder: ConvNeXt1D, embed_dim: int = 128, temperature: float = 0.1, **augmentation):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Linear(encoder.dim, encoder.dim), nn.GELU(), nn.Linear(encoder.dim, embed_dim))
        self.log_scale = math.log(1 / temperature)
        self.augmentation = augmentation

    def forward(self, batch: dict) -> dict:
        ecg = batch["ecg"]
        views = [F.normalize(self.head(self.encoder(augment(ecg, **self.augmentation))), dim=-1) for _ in range(2)]
        loss = contrastive_loss(views[0], views[1], self.log_scale)
        return {"loss": loss, "contrastive": loss}


class SupervisedModel(nn.Module):
    """Encoder + one linear layer, multi-label binary cross-entropy (scratch or fine-tuning)."""

    def __init__(self, encoder: ConvNeXt1D, n_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.dim, n_classes)

    def logits(self, ecg: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(ecg))

    def forward(self, batch: dict) -> dict:
        loss = F.binary_cross_entropy_with_logits(self.logits(batch["ecg"]).float(), batch["y"].float())
        return {"loss": loss, "bce": loss}

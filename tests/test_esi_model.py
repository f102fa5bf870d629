"""ESI's model: the three correctness points of the issue, the losses on hand-computed batches,
the text tower and the caption vocabulary."""
import math
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from ecgkit.nn import ecg_encoder
from ecgkit.esi.model import (CLIP_LOGIT_SCALE, CaptionDecoder, CaptionVocab, ESIModel, SimCLRModel,
                              SupervisedModel, TextTower, augment, caption_loss, contrastive_loss,
                              text_features)


class FeatureTower(nn.Module):
    """A stand-in text tower on precomputed features (no BERT needed)."""

    frozen = True

    def __init__(self, hidden=16, embed_dim=8):
        super().__init__()
        self.proj = nn.Linear(hidden, embed_dim)

    def forward(self, text_ids=None, text_mask=None, text_features=None):
        return nn.functional.normalize(self.proj(text_features), dim=-1)


def small_model(**kw):
    torch.manual_seed(0)
    return ESIModel(ecg_encoder("small"), FeatureTower(), vocab_size=50, embed_dim=8, decoder_width=32,
                    decoder_layers=2, decoder_heads=4, max_caption_tokens=16, **kw)


def batch(n=3, samples=320, length=12):
    g = torch.Generator().manual_seed(1)
    caption = torch.randint(4, 50, (n, length), generator=g)
    caption[:, 0] = CaptionVocab.BOS
    caption[0, -3:] = CaptionVocab.PAD
    return {"ecg": torch.randn(n, 12, samples, generator=g), "text_features": torch.randn(n, 16, generator=g),
            "caption": caption}


# ----------------------------------------------------------------------------- 1. causality


def later_token_changes_earlier_logits(run, vocab=50, length=10, position=6) -> bool:
    """Does changing the token at ``position`` change any logit before it?"""
    g = torch.Generator().manual_seed(2)
    tokens = torch.randint(4, vocab, (2, length), generator=g)
    changed = tokens.clone()
    changed[:, position] = (tokens[:, position] + 7) % (vocab - 4) + 4
    a, b = run(tokens), run(changed)
    assert not torch.allclose(a[:, position:], b[:, position:])  # the change is seen where it may be
    return not torch.allclose(a[:, :position], b[:, :position], atol=1e-6)


def test_captioning_is_causal():
    torch.manual_seed(0)
    decoder = CaptionDecoder(50, ecg_dim=24, width=32, layers=2, heads=4, max_length=16).eval()
    memory = torch.randn(2, 7, 24)
    with torch.no_grad():
        assert not later_token_changes_earlier_logits(lambda t: decoder(t, memory))

        # the check catches the public code's bug: the same layers run without the causal mask
        def bidirectional(tokens):
            x = decoder.embed(tokens) + decoder.pos[: tokens.shape[1]]
            mem = decoder.memory_proj(memory)
            return decoder.head(decoder.norm(decoder.layers(x, mem)))

        assert later_token_changes_earlier_logits(bidirectional)


def test_caption_loss_of_a_position_ignores_later_tokens():
    """Through the whole model: the loss on the first targets does not move when later tokens do."""
    model = small_model().eval()
    b = batch()
    seq = model.encoder.forward_features(b["ecg"])
    other = b["caption"].clone()
    other[:, 8:] = 5
    with torch.no_grad():
        a = model.decoder(b["caption"][:, :-1], seq)[:, :7]
        c = model.decoder(other[:, :-1], seq)[:, :7]
    assert torch.allclose(a, c, atol=1e-6)


# ----------------------------------------------------------------------------- 2. cross-attention to a sequence


def test_decoder_cross_attends_to_the_feature_sequence():
    model = small_model().eval()
    b = batch()
    seen = {}

    def spy(module, args, kwargs):
        seen["key"] = kwargs.get("key", args[1] if len(args) > 1 else None)

    handle = model.decoder.layers.layers[0].multihead_attn.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        with torch.no_grad():
            model(b)
    finally:
        handle.remove()
    key = seen["key"]
    steps = model.encoder.forward_features(b["ecg"]).shape[1]
    assert steps == 320 // 32 and key.shape == (3, steps, 32)
    assert key.std(dim=1).mean() > 1e-3        # the time steps differ: not one vector repeated


def test_logits_depend_on_the_order_and_content_of_time_steps():
    torch.manual_seed(0)
    decoder = CaptionDecoder(50, ecg_dim=24, width=32, layers=2, heads=4, max_length=16).eval()
    tokens = torch.randint(4, 50, (2, 8))
    seq = torch.randn(2, 9, 24)
    with torch.no_grad():
        base = decoder(tokens, seq)
        altered = seq.clone()
        altered[:, 4] += 1.0                  # one time step changed
        assert not torch.allclose(base, decoder(tokens, altered), atol=1e-5)
        permuted = seq[:, torch.randperm(9)]   # same vectors, another order
        assert not torch.allclose(base, decoder(tokens, permuted), atol=1e-5)
        pooled = seq.mean(1, keepdim=True).expand_as(seq)   # what the public code attends to
        assert not torch.allclose(base, decoder(tokens, pooled), atol=1e-5)
        # a pooled memory cannot tell the order of the time steps: the test above would catch it
        pooled_permuted = permuted.mean(1, keepdim=True).expand_as(seq)
        assert torch.allclose(decoder(tokens, pooled), decoder(tokens, pooled_permuted), atol=1e-5)


def test_decoder_refuses_a_pooled_vector():
    decoder = CaptionDecoder(50, ecg_dim=24, width=32, layers=1, heads=4, max_length=16)
    with pytest.raises(ValueError, match="sequence"):
        decoder(torch.randint(4, 50, (2, 5)), torch.randn(2, 24))


# ----------------------------------------------------------------------------- losses by hand


def test_contrastive_loss_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    s = 1 / 0.07
    # logits a->b: s * [[1, .6], [0, .8]]; b->a: s * [[1, 0], [.6, .8]]
    ce = lambda row, target: -row[target] + math.log(sum(math.exp(v) for v in row))  # noqa: E731
    expected = ((ce([s, .6 * s], 0) + ce([0, .8 * s], 1)) / 2 + (ce([s, 0], 0) + ce([.6 * s, .8 * s], 1)) / 2) / 2
    got = contrastive_loss(a, b, torch.tensor(CLIP_LOGIT_SCALE))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # the temperature is clamped: a scale of e^10 acts as 100. Nearly parallel pairs (cosine c)
    # keep the loss measurable: log(1 + exp(-(1 - c) * 100)) in both directions.
    c = 0.995
    x = torch.tensor([[1.0, 0.0], [c, math.sqrt(1 - c * c)]])
    clamped = math.log1p(math.exp(-(1 - c) * 100))
    assert contrastive_loss(x, x, torch.tensor(10.0)).item() == pytest.approx(clamped, rel=1e-4)
    assert contrastive_loss(x, x, torch.tensor(math.log(50))).item() == pytest.approx(
        math.log1p(math.exp(-(1 - c) * 50)), rel=1e-4)


def test_caption_loss_by_hand_ignores_padding():
    logits = torch.log(torch.tensor([[[0.1, 0.2, 0.7], [0.5, 0.25, 0.25], [0.3, 0.3, 0.4]]]))
    targets = torch.tensor([[2, 1, 0]])   # the last is padding
    expected = -(math.log(0.7) + math.log(0.25)) / 2
    assert caption_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_losses_weighted_one_to_one_and_temperature_learnable():
    model = small_model()
    assert isinstance(model.logit_scale, nn.Parameter) and model.logit_scale.requires_grad
    assert model.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    out = model(batch())
    assert out["loss"].item() == pytest.approx(out["contrastive"].item() + out["caption"].item(), rel=1e-6)
    out["loss"].backward()
    assert model.logit_scale.grad is not None and model.encoder.stages[0][0].dwconv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("weights, present, absent", [
    ({"caption_weight": 0.0}, "contrastive", "caption"),
    ({"contrastive_weight": 0.0}, "caption", "contrastive"),
])
def test_ablations_leave_out_a_loss(weights, present, absent):
    model = small_model(**weights)
    out = model(batch())
    assert present in out and absent not in out
    assert out["loss"].item() == pytest.approx(out[present].item())
    out["loss"].backward()
    assert model.encoder.stages[-1][0].pwconv2.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        small_model(caption_weight=0.0, contrastive_weight=0.0)


# ----------------------------------------------------------------------------- 3. gathered negatives


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gather_worker(rank, world, port, a, b, scale, out):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        n = a.shape[0] // world
        la = a[rank * n:(rank + 1) * n].clone().requires_grad_()
        lb = b[rank * n:(rank + 1) * n].clone().requires_grad_()
        loss = contrastive_loss(la, lb, scale)
        loss.backward()
        out[rank] = (loss.item(), la.grad.clone(), lb.grad.clone())
    finally:
        dist.destroy_process_group()


def test_gathered_contrastive_loss_equals_the_single_process_loss():
    torch.manual_seed(0)
    world, n = 2, 3
    a = nn.functional.normalize(torch.randn(world * n, 8), dim=-1)
    b = nn.functional.normalize(a + 0.5 * torch.randn(world * n, 8), dim=-1)
    scale = torch.tensor(2.0)
    ctx = mp.get_context("spawn")
    manager = ctx.Manager()
    out = manager.dict()
    mp.start_processes(_gather_worker, args=(world, _free_port(), a, b, scale, out), nprocs=world,
                       start_method="spawn")
    full_a, full_b = a.clone().requires_grad_(), b.clone().requires_grad_()
    full = contrastive_loss(full_a, full_b, scale)
    full.backward()
    losses = [out[r][0] for r in range(world)]
    # mean over processes (what DDP's gradient averaging optimises) = one process on the whole batch
    assert sum(losses) / world == pytest.approx(full.item(), rel=1e-6)
    # and each process's gradient (/ world, as DDP averages) is that slice of the full gradient:
    # negatives from the other process carry their gradient back
    for r in range(world):
        assert torch.allclose(out[r][1] / world, full_a.grad[r * n:(r + 1) * n], atol=1e-6)
        assert torch.allclose(out[r][2] / world, full_b.grad[r * n:(r + 1) * n], atol=1e-6)
    # per-process negatives with labels 0..n-1 (the public code) give another loss
    local = sum(contrastive_loss(a[r * n:(r + 1) * n], b[r * n:(r + 1) * n], scale).item()
                for r in range(world)) / world
    assert local != pytest.approx(full.item(), rel=1e-3)


# ----------------------------------------------------------------------------- text tower, vocabulary, other models


@pytest.fixture(scope="module")
def tower():
    return TextTower(embed_dim=8, trainable_layers=0)


def test_text_tower_cls_projection_normalised(tower):
    tok = tower.tokenize(["left bundle branch block", "normal ECG"], max_length=16)
    emb = tower(**tok)
    assert emb.shape == (2, 8) and torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)
    cls = tower.bert(input_ids=tok["text_ids"], attention_mask=tok["text_mask"]).last_hidden_state[:, 0]
    assert torch.allclose(emb, nn.functional.normalize(tower.proj(cls), dim=-1), atol=1e-5)
    assert tower.frozen and all(p.requires_grad for p in tower.proj.parameters())


def test_text_tower_trainable_layers():
    partly = TextTower(embed_dim=8, trainable_layers=1)
    trainable = {n.split(".")[2] for n, p in partly.bert.named_parameters() if p.requires_grad}
    assert not partly.frozen and trainable == {str(len(partly.bert.encoder.layer) - 1)}


def test_text_features_cached_and_equal_to_live(tower, tmp_cache):
    texts = ["normal ECG", "atrial fibrillation", "normal ECG"]
    feats = text_features(texts, tower=tower, max_length=16, progress=False)
    assert feats.shape == (3, tower.hidden) and torch.equal(feats[0], feats[2])
    files = list((tmp_cache / "esi" / "text_features").glob("*.npy"))
    assert len(files) == 1
    again = text_features(texts, tower=tower, max_length=16, progress=False)
    assert torch.equal(feats, again)
    tok = tower.tokenize(texts, 16)
    with torch.no_grad():
        assert torch.allclose(tower(**tok), tower(text_features=feats), atol=1e-5)


def test_caption_vocab_roundtrip(tower):
    texts = ["sinus rhythm with left bundle branch block", "normal ECG"]
    vocab = CaptionVocab.build(tower.tokenizer, texts, max_length=32)
    ids = vocab.encode(tower.tokenizer, texts + ["unseen zebra"], max_length=32)
    assert ids[:, 0].eq(CaptionVocab.BOS).all() and len(vocab) < 30
    assert vocab.decode(tower.tokenizer, ids[:2]) == [t.lower() for t in texts]  # MiniLM is uncased
    assert (ids[2] == CaptionVocab.UNK).any()


def test_simclr_augmentation_and_loss():
    torch.manual_seed(0)
    x = torch.randn(4, 12, 400)
    v = augment(x, crop=0.5, lead_mask=1.0)
    assert v.shape == (4, 12, 200) and v.abs().sum() == 0      # every lead masked
    model = SimCLRModel(ecg_encoder("small"))
    out = model({"ecg": x})
    assert out["loss"].item() > 0 and torch.isfinite(out["loss"])


def test_supervised_model_bce():
    torch.manual_seed(0)
    model = SupervisedModel(ecg_encoder("small"), 5)
    y = torch.randint(0, 2, (3, 5)).float()
    out = model({"ecg": torch.randn(3, 12, 320), "y": y})
    logits = model.logits(torch.zeros(1, 12, 320))
    assert logits.shape == (1, 5) and out["loss"].item() > 0

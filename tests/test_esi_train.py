"""The training loop: the paper's schedule, checkpoints and resume, the weights cache, ESI end to end."""
import json

import numpy as np
import pytest
import torch

from ecgkit.nn import ecg_encoder
from ecgkit.esi.model import SimCLRModel, SupervisedModel
from ecgkit.esi.train import (ESIConfig, RecordData, TrainConfig, fit, learning_rate, load_pretrained_encoder,
                              pretrain_esi, run_folder, train_supervised)

TINY = TrainConfig(epochs=2, warmup_epochs=1, decay_every=1, lr=1e-3, batch_size=4)


def test_paper_schedule():
    cfg = TrainConfig()                      # 5 warm-up epochs of 30, x0.1 every 10
    assert (cfg.lr, cfg.epochs, cfg.warmup_epochs, cfg.decay_every, cfg.decay) == (5e-5, 30, 5, 10, 0.1)
    lr = [learning_rate(s, 10, cfg) for s in range(300)]
    assert lr[0] == pytest.approx(5e-5 / 50) and lr[49] == pytest.approx(5e-5)
    assert np.all(np.diff(lr[:50]) > 0)                       # linear warm-up
    assert lr[50] == lr[99] == pytest.approx(5e-5)
    assert lr[100] == lr[199] == pytest.approx(5e-6)
    assert lr[200] == lr[299] == pytest.approx(5e-7)


def records(n=24, samples=256, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, samples, 12)).astype(np.float32) * 0.3


def simclr(seed=0):
    torch.manual_seed(seed)
    return SimCLRModel(ecg_encoder("small"), embed_dim=8)


def test_resume_after_interruption_gives_the_same_weights(tmp_path):
    """SimCLR draws random augmentations every step: resuming must restore data order and randomness."""
    data = RecordData(records())
    whole = fit(simclr(), data, TINY, tmp_path / "whole", progress=False)
    assert whole.steps == 12 and not whole.cached

    class Interrupt(Exception):
        pass

    def crash(step, losses):
        if step == 5:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(simclr(), data, TINY, tmp_path / "cut", progress=False, checkpoint_every=2, on_step=crash)
    state = json.loads((tmp_path / "cut" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 4 and (tmp_path / "cut" / "checkpoint" / "model.safetensors").is_file()
    assert not (tmp_path / "cut" / "final.safetensors").exists()
    resumed = fit(simclr(seed=1), data, TINY, tmp_path / "cut", progress=False, checkpoint_every=2)
    assert resumed.resumed_from == 4 and resumed.steps == 12
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert [h["loss"] for h in whole.history] == pytest.approx([h["loss"] for h in resumed.history])
    assert not (tmp_path / "cut" / "checkpoint").exists()      # removed once the run is done


def test_resume_is_not_a_restart(tmp_path):
    """The check above can fail: training the remaining steps from scratch ends elsewhere."""
    data = RecordData(records())
    whole = fit(simclr(), data, TINY, tmp_path / "a", progress=False)
    short = fit(simclr(), data, TrainConfig(**{**TINY.__dict__, "epochs": 1}), tmp_path / "b", progress=False)
    w = whole.model.state_dict()
    assert any(not torch.equal(w[k], v) for k, v in short.model.state_dict().items())


def test_finished_run_is_cached(tmp_path):
    data = RecordData(records(16), y=torch.randint(0, 2, (16, 3)).float())
    torch.manual_seed(0)
    first = fit(SupervisedModel(ecg_encoder("small"), 3), data, TINY, tmp_path / "run", progress=False)
    steps = []
    torch.manual_seed(1)
    second = fit(SupervisedModel(ecg_encoder("small"), 3), data, TINY, tmp_path / "run", progress=False,
                 on_step=lambda s, l: steps.append(s))
    assert second.cached and not steps and second.history == first.history
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["steps"] == 8 and info["train"]["lr"] == 1e-3


def test_run_folder_depends_on_what_shapes_the_weights(tmp_cache):
    a = run_folder("esi", {"variant": "small"}, "data1", TINY)
    assert a == run_folder("esi", {"variant": "small"}, "data1", TINY)
    assert a != run_folder("esi", {"variant": "small"}, "data2", TINY)
    assert a != run_folder("esi", {"variant": "tiny"}, "data1", TINY)
    assert a != run_folder("esi", {"variant": "small"}, "data1", TrainConfig(**{**TINY.__dict__, "seed": 1}))


def test_too_few_records_for_a_batch(tmp_path):
    with pytest.raises(ValueError, match="batch"):
        fit(simclr(), RecordData(records(3)), TINY, tmp_path / "x", progress=False)


def test_supervised_training_learns_a_separable_task(tmp_cache):
    rng = np.random.default_rng(0)
    x = records(48, samples=256)
    y = rng.integers(0, 2, (48, 1))
    x[y[:, 0] == 1, :, :] += 1.0              # positives carry a 1 mV offset
    cfg = TrainConfig(epochs=4, warmup_epochs=1, decay_every=4, lr=3e-3, batch_size=8)
    result = train_supervised(x, y, "small", cfg, progress=False)
    from ecgkit.esi.downstream import macro_auc, predict
    auc, _ = macro_auc(y, predict(result.model, x))
    assert auc > 0.9


def test_pretrain_esi_end_to_end(tmp_cache):
    texts = [f"This patient is a {50 + i}-year-old male. ECG findings: "
             f"{'left bundle branch block' if i % 2 else 'normal ECG'}." for i in range(8)]
    config = ESIConfig(max_text_tokens=32, max_caption_tokens=24, decoder_width=32)
    train = TrainConfig(epochs=1, warmup_epochs=1, decay_every=1, lr=1e-3, batch_size=4)
    first = pretrain_esi(records(8), texts, config, train, progress=False)
    assert not first.fit.cached and first.fit.steps == 2
    assert {"contrastive", "caption", "loss"} <= set(first.fit.history[0])
    saved = list(first.fit.run_dir.glob("*.safetensors"))
    assert [p.name for p in saved] == ["final.safetensors"]
    from safetensors.torch import load_file
    keys = load_file(str(saved[0])).keys()
    assert not any(k.startswith("text.bert.") for k in keys)   # the frozen BERT is not copied
    assert any(k.startswith("decoder.") for k in keys) and "logit_scale" in keys
    again = pretrain_esi(records(8), texts, config, train, progress=False)
    assert again.fit.cached
    encoder = load_pretrained_encoder(first.fit.run_dir)
    x = torch.randn(2, 12, 256)
    with torch.no_grad():
        assert torch.allclose(encoder(x), first.encoder.eval()(x), atol=1e-6)
    other = pretrain_esi(records(8), texts[::-1], config, train, progress=False)
    assert other.fit.run_dir != first.fit.run_dir           # other pairs, other run


DDP_SCRIPT = '''
import sys
from pathlib import Path
import numpy as np, torch
from ecgkit.nn import ecg_encoder
from ecgkit.esi.model import SupervisedModel
from ecgkit.esi.train import RecordData, TrainConfig, fit
rng = np.random.default_rng(0)
x = rng.standard_normal((24, 256, 12)).astype(np.float32)
y = torch.from_numpy(rng.integers(0, 2, (24, 3))).float()
torch.manual_seed(0)
fit(SupervisedModel(ecg_encoder("small"), 3), RecordData(x, y=y),
    TrainConfig(epochs=2, warmup_epochs=1, decay_every=1, lr=1e-3, batch_size=int(sys.argv[2])),
    Path(sys.argv[1]), progress=False)
'''


@pytest.mark.slow
def test_two_processes_train_like_one_with_the_global_batch(tmp_path):
    """The same loop under torchrun (2 CPU processes, gloo, batch 4 each) ends where one process
    with batch 8 ends: accelerate shards the data, DDP averages the gradients, no code change."""
    import json
    import os
    import socket
    import subprocess
    import sys

    from safetensors.torch import load_file

    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                    "--master_port", str(port), str(script), str(tmp_path / "two"), "4"],
                   check=True, env=env, capture_output=True, timeout=300)
    subprocess.run([sys.executable, str(script), str(tmp_path / "one"), "8"], check=True, env=env,
                   capture_output=True, timeout=300)
    assert json.loads((tmp_path / "two" / "run.json").read_text())["processes"] == 2
    two, one = load_file(str(tmp_path / "two" / "final.safetensors")), load_file(str(tmp_path / "one" / "final.safetensors"))
    assert json.loads((tmp_path / "two" / "run.json").read_text())["steps"] == 6
    for k in one:
        assert torch.allclose(one[k], two[k], atol=1e-5), k

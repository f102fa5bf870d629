"""ESI speed: encoder forward ECGs/s, ESI training steps/s and samples/s, peak memory per variant.

Each encoder variant runs in its own subprocess so that its peak memory is its own: on CPU the
peak resident set size (``ru_maxrss``) with the size after importing torch alongside, on a GPU
``torch.cuda.max_memory_allocated``. CPU: 100 Hz input (1,000 samples), batches of 2, no
warm-up before the timed training step (the whole benchmark stays under a minute); GPU: 500 Hz (5,000 samples), batches of 32. The training step is a full ESI step (encoder, contrastive loss against
precomputed text features, captioning decoder over 64 tokens, AdamW), without loading the BERT.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

VARIANTS = ("small", "tiny", "base")

_WORKER = r"""
import json, resource, sys, time
import torch
variant, device, samples, batch, budget = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
from torch import nn
from ecgkit.nn import ecg_encoder, n_parameters
from ecgkit.esi.model import ESIModel

class Features(nn.Module):
    frozen = True
    def __init__(self):
        super().__init__(); self.proj = nn.Linear(384, 256)
    def forward(self, text_ids=None, text_mask=None, text_features=None):
        return nn.functional.normalize(self.proj(text_features), dim=-1)

torch.manual_seed(0)
cuda = device == "cuda"
sync = torch.cuda.synchronize if cuda else (lambda: None)
encoder = ecg_encoder(variant).to(device).eval()
x = torch.randn(batch, 12, samples, device=device)
def timed(fn, warm_up=True):
    # runs per second: one warm-up run, then at least one timed run and more until budget seconds
    if warm_up:
        fn(); sync()
    n, t = 0, time.perf_counter()
    while n == 0 or time.perf_counter() - t < budget:
        fn(); n += 1
    sync()
    return n / (time.perf_counter() - t)
with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=cuda):
    forward = timed(lambda: encoder(x)) * batch
model = ESIModel(ecg_encoder(variant), Features(), vocab_size=2000, embed_dim=256).to(device).train()
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
data = {"ecg": x, "text_features": torch.randn(batch, 384, device=device),
        "caption": torch.randint(4, 2000, (batch, 64), device=device)}
if cuda:
    torch.cuda.reset_peak_memory_stats()
def step():
    with torch.autocast(device, dtype=torch.bfloat16, enabled=cuda):
        loss = model(data)["loss"]
    loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
seconds = 1 / timed(step, warm_up=cuda)   # on CPU a training step is long: no warm-up
peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"params_m": n_parameters(encoder) / 1e6, "forward_ecgs_per_s": forward,
                  "train_steps_per_s": 1 / seconds, "train_samples_per_s": batch / seconds,
                  "peak_mb": peak, "base_rss_mb": base_rss}))
"""


def measure(variant: str, device: str = "cpu", samples: int = 1000, batch: int = 8, budget: float = 1.5) -> dict:
    """One variant's speed and peak memory, measured in a fresh Python process (``budget`` seconds
    of timed runs per measurement after one warm-up run)."""
    out = subprocess.run([sys.executable, "-c", _WORKER, variant, device, str(samples), str(batch), str(budget)],
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"ESI benchmark for {variant} on {device} failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(variants=VARIANTS) -> dict:
    import torch

    start = time.perf_counter()
    result = {}
    settings = [("cpu", 1000, 2, 1.0)]
    if torch.cuda.is_available():
        settings.append(("cuda", 5000, 32, 3.0))
    for device, samples, batch, budget in settings:
        for variant in variants:
            m = measure(variant, device, samples, batch, budget)
            tag = f"{device}_{variant}"
            result[f"{tag}_params_m"] = round(m["params_m"], 2)
            result[f"{tag}_forward_ecgs_per_s"] = m["forward_ecgs_per_s"]
            result[f"{tag}_train_steps_per_s"] = m["train_steps_per_s"]
            result[f"{tag}_train_samples_per_s"] = m["train_samples_per_s"]
            result[f"{tag}_peak_mb"] = round(m["peak_mb"], 1)
        result[f"{device}_samples"] = samples
        result[f"{device}_batch"] = batch
    result["seconds"] = time.perf_counter() - start
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))

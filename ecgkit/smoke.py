"""``make smoke``: the ``full`` profile's code paths at toy size, on a CPU, in a few minutes.

A researcher with GPUs runs ``make reproduce PROFILE=full``; this run goes through the same
branches first (the full model architectures, LoRA settings, prompt options, 500 Hz, the
endpoint client) with a few records, one or two optimizer steps and a few generated tokens, so a
typo in a full-only branch shows here, not hours into a GPU job.

The toy sizes: :data:`NOTEBOOKS` here, the notebooks' own parameters (papermill) per chapter;
the few sizes no notebook parameter reaches are each settings class's ``SMOKE``, beside its
``PROFILES`` (applied by :meth:`ecgkit.config.ProfileSettings.for_profile` to the full profile
when ``ECGKIT_SMOKE=1``, which this run sets).

:func:`run` also starts the stand-in endpoint (:mod:`ecgkit.standin`) and points
``ECGKIT_LLM_BASE_URL`` at it, trains ESI and a LoRA adapter with ``accelerate launch
--num_processes 2`` (gloo) and compares them with one process on the same global batch
(:func:`multiprocess_check`), and writes ``smoke.json``: every full-only branch with
``executed`` or ``skipped`` and the reason (:func:`branches`).

``python -m ecgkit.smoke [--only 03 07] [--no-multiprocess]``.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

__all__ = ["ENV", "active", "NOTEBOOKS", "notebook_parameters", "branches",
           "multiprocess_check", "step_architectures", "toy_ptbxl", "run"]

ENV = "ECGKIT_SMOKE"

#: per notebook (prefix): papermill parameters that shrink the sizes, never the branches
NOTEBOOKS = {
    "00": dict(n_synthetic=160, n_summary=20),
    "01": dict(n_random=2000, max_new_tokens=12),
    "02": dict(n_scored=3, n_real=12, n_baseline=6, n_annotated=6),
    "03": dict(n_llm=4, n_val=8, n_boot=50, n_synthetic_test=6),
    "04": dict(n_synthetic=40, n_statements=3, n_ablation=1, top_ks=[1, 3], max_new_tokens=16),
    # 100 Hz: ConvNeXt1D tiny at 500 Hz costs 13 GFLOP a record (02/03 read 500 Hz)
    "05": dict(rate=100, n_synthetic=40, n_seeds=1, steps=2, epochs=1, finetune_epochs=1,
               max_pretrain_records=8, sizes=[0.5, 1.0], misalignment=[0.0, 1.0], max_new_tokens=16),
    "06": dict(n_examples=2),
    "07": dict(n_train=8, max_steps=2, n_heldout=4),
    "08": dict(n_mcq=2, n_open=2, n_judge=1, n_control=2, max_new_tokens=8),
    "09": dict(n_synthetic=80, batch_size=4, pretrain_steps=2, finetune_steps=2, joint_steps=2,
               n_boot=50, n_explained=1),
}


def active() -> bool:
    """True when ``$ECGKIT_SMOKE`` is set to anything but ``""``/``0``."""
    from .config import settings

    return settings().smoke


#: real PTB-XL records kept per fold and superclass in the smoke run's subset (:func:`toy_ptbxl`)
PTBXL_PER_CLASS = 1


def toy_ptbxl(source, dest, per_class: int = PTBXL_PER_CLASS) -> Path:
    """A PTB-XL folder at ``dest`` with a few records of ``source`` per fold: the first
    ``per_class`` of each diagnostic superclass (NORM, MI, STTC, CD, HYP), so every class and fold
    stays present. Signal files are linked, not copied; the tables are filtered copies."""
    import pandas as pd

    from .data.ptbxl import ptbxl_metadata

    source, dest = Path(source), Path(dest)
    meta, scp = ptbxl_metadata(source)
    diagnostic = scp["diagnostic"].fillna(0).astype(float) == 1.0
    classes = scp.loc[diagnostic, "diagnostic_class"].dropna().to_dict()
    supers = meta["scp_codes"].map(lambda codes: {classes[c] for c in codes if c in classes})
    keep = []
    for fold, rows in meta.groupby("strat_fold"):
        for cls in ("NORM", "MI", "STTC", "CD", "HYP"):
            ids = [i for i in rows.index if cls in supers[i] and i not in keep][:per_class]
            keep += ids
    dest.mkdir(parents=True, exist_ok=True)
    table = pd.read_csv(source / "ptbxl_database.csv", index_col="ecg_id")
    table.loc[sorted(keep)].to_csv(dest / "ptbxl_database.csv")
    (dest / "scp_statements.csv").write_bytes((source / "scp_statements.csv").read_bytes())
    for column in ("filename_lr", "filename_hr"):
        for name in table.loc[keep, column]:
            for suffix in (".hea", ".dat"):
                src, link = source / f"{name}{suffix}", dest / f"{name}{suffix}"
                if src.is_file() and not link.exists():
                    link.parent.mkdir(parents=True, exist_ok=True)
                    link.symlink_to(src.resolve())
    return dest


def notebook_parameters(notebook: str) -> dict:
    """The papermill parameters of a notebook (its file name or stem) in the smoke run."""
    name = Path(notebook).name
    return {"profile": "full", **next((v for k, v in NOTEBOOKS.items() if name.startswith(k)), {})}


# ----------------------------------------------------------------------------- branches


def branches(cuda: bool | None = None, bitsandbytes: bool | None = None) -> list[dict]:
    """Every full-only branch: ``{"branch", "where", "status", "reason"}``; the GPU-only ones are
    ``skipped`` (naming what runs on a GPU) when there is no CUDA (or no bitsandbytes)."""
    import importlib.util

    import torch

    cuda = torch.cuda.is_available() if cuda is None else cuda
    bnb = (importlib.util.find_spec("bitsandbytes") is not None) if bitsandbytes is None else bitsandbytes
    run = lambda branch, where, reason="": {"branch": branch, "where": where, "status": "executed",
                                             "reason": reason}
    gpu = lambda branch, where, ok, why: (run(branch, where) if ok else
                                          {"branch": branch, "where": where, "status": "skipped",
                                           "reason": why})
    return [
        run("full-size synthetic cohort and 500 Hz signals", "data.sources, notebooks 00/02/03",
            "toy record counts"),
        run("full knowledge settings (100,000-vector HNSW test)", "notebook 01", "2,000 vectors"),
        run("full-profile delineator (UNet1D, trained for the full profile's key)", "alfred.delineation",
            "8 synthetic records, 1 epoch"),
        run("ALFRED full prompt options (whole prompt, all lead features, full rule detail, 400 tokens)",
            "alfred.prompt.PromptBudget.for_profile('full')", "stand-in endpoint"),
        run("CQA descriptions, 192 tokens, all statements", "esi.cqa", "3 statements, 16 tokens"),
        run("ESI full model (ConvNeXt1D tiny, trainable BERT, 512-wide 4-layer caption decoder, drop path)",
            "esi.train.ESIConfig.for_profile('full')", "1 epoch, 32 records, 100 Hz (500 Hz is read in 02/03)"),
        run("ESI full experiments (all tasks fine-tuned, 5 seeds' code path, size and misalignment curves)",
            "esi.experiments.SETTINGS['full']", "1 seed, 2 sizes, 2 misalignment shares"),
        run("ConvNeXt1D base (instantiated, one training step)", "nn.convnext",
            "no notebook setting selects base today (variant='base'); stepped by step_architectures"),
        run("LoRA of the paper (r 16, alpha 32, every block, 1,024 tokens, batch 4 x 4, gradient "
            "checkpointing)", "ecgllm.finetune.LoraSettings.for_profile('full')", "2 optimizer steps"),
        run("ECG-LLM full evaluation (top-3 RAG, 256 tokens, 40 judge controls' code path)", "notebook 08",
            "4 MCQ, 2 open questions"),
        run("clinical transfer full config (ConvNeXt1D tiny, 128-dim tabular, 3 layers, 512 projection)",
            "clinical.train.TransferConfig.for_profile('full')", "2 steps per stage"),
        run("OpenAI-compatible endpoint: chat completions, top_logprobs scoring, time-outs, retries",
            "llm.OpenAIChat", "stand-in server on 127.0.0.1"),
        run("multi-process training (accelerate launch --num_processes 2, gloo)", "esi.train.fit, "
            "ecgllm.finetune", "CPU processes; NCCL on GPUs"),
        gpu("QLoRA: 4-bit NF4 base model (bitsandbytes)", "ecgllm.finetune._use_4bit", cuda and bnb,
            "needs a CUDA GPU and bitsandbytes; on a GPU the base model loads in 4 bits "
            "(BitsAndBytesConfig nf4, prepare_model_for_kbit_training); here LoRA trains the fp32 model"),
        gpu("bf16 mixed precision (ESI, clinical transfer, LoRA)", "esi.train.resolve_precision, "
            "ecgllm.finetune", cuda, "needs CUDA; on a GPU accelerate trains in bf16 (fp16 without bf16 "
            "support); here in fp32"),
        gpu("NCCL multi-GPU all-gather of the contrastive negatives", "esi.model.gather_with_grad", cuda,
            "needs several GPUs; the same code ran here over gloo with 2 CPU processes"),
    ]


def step_architectures(variants=("base",), records: int = 1, samples: int = 256) -> list[dict]:
    """One AdamW step of ConvNeXt1D variants no notebook setting trains (the paper's *base*; *tiny* is
    the full profile's and trains in notebooks 05 and 09) on random ECGs: it builds, its
    gradients reach every parameter, the loss is finite."""
    import torch

    from .nn import ecg_encoder

    rows = []
    for variant in variants:
        torch.manual_seed(0)
        start = time.perf_counter()
        encoder = ecg_encoder(variant, drop_path=0.1).train()
        head = torch.nn.LazyLinear(5)
        x = torch.randn(records, 12, samples)
        loss = head(encoder(x).flatten(1)).pow(2).mean()
        optimizer = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=1e-4)
        loss.backward()
        missing = [n for n, p in encoder.named_parameters() if p.grad is None]
        optimizer.step()
        if missing or not torch.isfinite(loss):
            raise AssertionError(f"ConvNeXt1D {variant}: loss {float(loss)}, no gradient for {missing[:3]}")
        rows.append({"variant": variant, "parameters_m": round(sum(p.numel() for p in encoder.parameters()) / 1e6, 2),
                     "loss": float(loss.detach()), "seconds": round(time.perf_counter() - start, 1)})
        print(f"[smoke] ConvNeXt1D {variant}: {rows[-1]['parameters_m']} M parameters, one step in "
              f"{rows[-1]['seconds']} s", flush=True)
    return rows


# ----------------------------------------------------------------------------- multi-process

ESI_SCRIPT = '''
import json, sys
from pathlib import Path
import numpy as np, torch
from ecgkit.esi.train import ESIConfig, TrainConfig, pretrain_esi
# dropout off (BERT, caption decoder): its masks are drawn per process by design, so with it the
# two runs could not match; everything else is the full profile's model
import torch.nn.functional as F
_sdpa = F.scaled_dot_product_attention
F.dropout = lambda x, p=0.5, training=False, inplace=False: x
def _no_dropout_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, *args, **kwargs):
    return _sdpa(query, key, value, attn_mask, 0.0, *args, **kwargs)
F.scaled_dot_product_attention = _no_dropout_sdpa
rng = np.random.default_rng(0)
x = rng.standard_normal((16, 1000, 12)).astype(np.float32)
words = ["sinus rhythm", "left bundle branch block", "atrial fibrillation", "inferior infarction"]
texts = [words[i % 4] + " with normal axis" for i in range(16)]
config = ESIConfig.for_profile("full", drop_path=0.0)
train = TrainConfig.for_profile("full", epochs=1, warmup_epochs=1, decay_every=1, batch_size=int(sys.argv[2]))
out = pretrain_esi(x, texts, config, train, progress=False)
from accelerate import PartialState
import shutil
if PartialState().is_main_process:
    shutil.copytree(out.fit.run_dir, sys.argv[1], dirs_exist_ok=True)
'''

LORA_SCRIPT = '''
import json, sys
from pathlib import Path
from ecgkit.ecgllm.finetune import LoraSettings, finetune
items = [{"type": "open", "question": f"What does lead {l} show in case {i}?",
          "reference": "A normal QRS complex and an upright T wave."} for i, l in
         enumerate(["I", "II", "III", "V1", "V2", "V3", "V4", "V5"] * 2)]
settings = LoraSettings.for_profile("full", max_steps=2, batch_size=int(sys.argv[2]),
                                    gradient_accumulation=int(sys.argv[3]), dropout=0.0, max_length=256)
from ecgkit.models import llm_path
result = finetune(llm_path(), items, settings, cache=False, progress=False)
from accelerate import PartialState
import shutil
state = PartialState()
if state.is_main_process:
    shutil.copytree(result.adapter_dir, sys.argv[1], dirs_exist_ok=True)
    (Path(sys.argv[1]) / "run.json").write_text(json.dumps(
        {"processes": state.num_processes, "steps": result.steps, "loss": [h["loss"] for h in result.history]}))
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(script: Path, args: list[str], processes: int, cache: Path, timeout: int = 600) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ECGKIT_CACHE": str(cache)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                      os.environ.get("PYTHONPATH")]))
    if processes > 1:
        # --multi_gpu without CUDA: accelerate's torchrun launcher, gloo, MULTI_CPU (``--cpu`` would
        # start a single process)
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), str(script), *args]
    else:
        cmd = [sys.executable, str(script), *args]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def _compare(one: Path, two: Path, name: str, tolerance: float) -> tuple[float, float]:
    """(largest difference, share of weights within ``tolerance``) between two saved models."""
    from safetensors.torch import load_file

    a, b = load_file(str(one / name)), load_file(str(two / name))
    if a.keys() != b.keys():
        raise AssertionError(f"{name}: the two runs saved different tensors")
    diffs = [(a[k].float() - b[k].float()).abs() for k in a]
    close = sum(int((d <= tolerance).sum()) for d in diffs) / sum(d.numel() for d in diffs)
    return max(float(d.max()) for d in diffs), close


def multiprocess_check(work: Path | None = None, tolerance: float = 1e-5, share: float = 0.99,
                       which=("ESI", "LoRA")) -> list[dict]:
    """ESI pretraining (the full model, batch 4 on each of 2 processes vs 8 on one) and a LoRA
    fine-tune (the paper's settings, batch 1 x accumulation 2 on each of 2 processes vs 1 x 4 on
    one), two optimizer steps: launched with ``accelerate launch --num_processes 2`` on CPU
    (gloo). The runs agree when at least ``share`` of the weights are within ``tolerance``:
    AdamW's first steps move every weight by about ±lr whatever its gradient's size, so a weight
    whose gradient is nearly zero can take the other sign from summation-order noise (and ESI's
    caption loss averages tokens per process, not over the global batch); without the gradient
    averaging of DDP (two independent processes) 72 % of the ESI weights differed. Returns one row per check."""
    work = Path(work or tempfile.mkdtemp(prefix="ecgkit-smoke-ddp-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    checks = [("ESI pretraining (full ESIConfig; drop path and dropout 0)", ESI_SCRIPT, ["4"], ["8"], "final.safetensors"),
              ("LoRA fine-tuning (paper's settings, LoRA dropout 0)", LORA_SCRIPT, ["1", "2"], ["1", "4"],
               "adapter_model.safetensors")]
    for name, source, two_args, one_args, weights in checks:
        if name.split()[0] not in which:
            continue
        script = work / f"{name.split()[0].lower()}.py"
        script.write_text(textwrap.dedent(source))
        two_dir, one_dir = work / f"{script.stem}-two", work / f"{script.stem}-one"
        t2 = _launch(script, [str(two_dir), *two_args], 2, work / f"{script.stem}-cache-two")
        t1 = _launch(script, [str(one_dir), *one_args], 1, work / f"{script.stem}-cache-one")
        diff, close = _compare(one_dir, two_dir, weights, tolerance)
        info = {}
        if (two_dir / "run.json").is_file():
            info = json.loads((two_dir / "run.json").read_text())
        if info.get("processes", 2) != 2:
            raise AssertionError(f"{name}: the launch ran {info.get('processes')} process(es), not 2")
        rows.append({"check": name, "processes": 2, "max_weight_difference": diff, "tolerance": tolerance,
                     "share_within_tolerance": close, "equal": close >= share, "steps": info.get("steps"),
                     "seconds_two": round(t2, 1), "seconds_one": round(t1, 1)})
        print(f"[smoke] {name}: 2 processes vs 1: {close:.2%} of the weights within {tolerance:g} "
              f"(largest difference {diff:.2e}): {'equal' if close >= share else 'DIFFERENT'}", flush=True)
    return rows


# ----------------------------------------------------------------------------- the run


def run(out_dir="_build/smoke/executed", results="_build/smoke/results", only=None, multiprocess=True,
        source="notebooks") -> dict:
    """Start the stand-in endpoint, execute the notebooks (full profile, smoke sizes), run the
    multi-process check; write and return ``<results>/smoke.json``."""
    from .reproduce import run_all
    from .standin import StandIn

    results = Path(results).resolve()
    results.mkdir(parents=True, exist_ok=True)
    report = {"profile": "full", "smoke": True, "branches": branches(), "notebooks": {}, "multiprocess": [],
              "endpoint": {}}
    for row in report["branches"]:
        if row["status"] == "skipped":
            print(f"[smoke] SKIPPED {row['branch']}: {row['reason']}", flush=True)
    start = time.perf_counter()
    previous = {k: os.environ.get(k) for k in (ENV, "ECGKIT_PTBXL", "ECGKIT_LLM_BASE_URL", "ECGKIT_LLM_MODEL",
                                               "ECGKIT_LLM_API_KEY", "ECGKIT_LLM_TIMEOUT")}
    # a fresh model name per run: the generation cache never answers for the server
    model = f"ecgkit-standin-{int(time.time())}"
    with StandIn(model=model, fail_every=25, stall_every=40, stall_seconds=4.0) as server:
        os.environ.update({ENV: "1", "ECGKIT_LLM_BASE_URL": server.url, "ECGKIT_LLM_MODEL": model,
                           "ECGKIT_LLM_TIMEOUT": "2"})
        os.environ.pop("ECGKIT_LLM_API_KEY", None)
        from .config import ptbxl_dir

        real = ptbxl_dir()
        if real is not None:
            os.environ["ECGKIT_PTBXL"] = str(toy_ptbxl(real, results.parent / "ptbxl-toy"))
            print(f"[smoke] real PTB-XL at {real}: {os.environ['ECGKIT_PTBXL']} keeps a few records "
                  f"per fold and superclass", flush=True)
        print(f"[smoke] stand-in endpoint {server.url} (model {model}; every 25th request 503, "
              f"every 40th stalls past the 2 s time-out)", flush=True)
        try:
            done = run_all(source, out_dir, "full", only, parameters=notebook_parameters, results=results)
            report["notebooks"] = {p.stem: "executed" for p in done}
        finally:
            report["endpoint"] = {"url": server.url, **server.stats}
            for k, v in previous.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    report["architectures"] = step_architectures()
    if multiprocess:
        report["multiprocess"] = multiprocess_check()
    report["seconds"] = round(time.perf_counter() - start, 1)
    (results / "smoke.json").write_text(json.dumps(report, indent=1))
    print(f"[smoke] endpoint: {report['endpoint']}", flush=True)
    print(f"[smoke] done in {report['seconds']:.0f} s; {results / 'smoke.json'}", flush=True)
    bad = [r["check"] for r in report["multiprocess"] if not r["equal"]]
    if bad:
        raise AssertionError(f"multi-process runs differ from one process: {bad}")
    return report


def main(argv=None) -> int:
    from .reproduce import NotebookFailed

    ap = argparse.ArgumentParser(prog="python -m ecgkit.smoke", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="_build/smoke/executed")
    ap.add_argument("--results", default="_build/smoke/results")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--no-multiprocess", action="store_true")
    ap.add_argument("--multiprocess-only", action="store_true")
    args = ap.parse_args(argv)
    if args.multiprocess_only:
        rows = multiprocess_check()
        return 0 if all(r["equal"] for r in rows) else 1
    try:
        run(args.out, args.results, args.only, not args.no_multiprocess)
    except NotebookFailed as exc:
        print(f"[smoke] FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

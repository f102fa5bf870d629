"""The paper-scale estimates: model sizes, memory, FLOP counts and hours."""
import pytest
import torch

from ecgkit import scale


def test_weights_and_kv_cache_of_llama_70b():
    assert scale.weights_gb(70.6) == pytest.approx(141.2)
    assert scale.weights_gb(8.0, bits=4) == pytest.approx(4.4)          # NF4 + constants
    # 80 layers x 8 KV heads x 128 x (K and V) x 2 bytes = 327,680 bytes per token
    assert scale.kv_cache_gb(scale.LLAMA_70B, 1_000_000) == pytest.approx(327.68)
    memory = scale.serving_memory_gb(scale.LLAMA_70B, context=8192, concurrency=16)
    assert 4 * scale.H100.memory_gb > memory > 2 * scale.H100.memory_gb  # needs more than 2, fits on 4


def test_qlora_of_an_8b_fits_one_gpu_and_checkpointing_saves_memory():
    qlora = scale.lora_memory_gb(scale.LLAMA_8B)
    assert 4.4 < qlora < scale.H100.memory_gb
    assert scale.lora_memory_gb(scale.LLAMA_8B, checkpointing=False) > qlora
    assert scale.lora_memory_gb(scale.LLAMA_8B, bits=16) > qlora + 10


def test_hours_scale_with_the_work_and_the_gpus():
    one = scale.llm_hours(scale.LLAMA_70B, 100, 1000, 100, n_gpus=4)
    assert scale.llm_hours(scale.LLAMA_70B, 200, 1000, 100, n_gpus=4) == pytest.approx(2 * one)
    assert scale.llm_hours(scale.LLAMA_70B, 100, 1000, 100, n_gpus=8) == pytest.approx(one / 2)
    assert scale.training_hours(989e12 * 0.3 * 3600) == pytest.approx(1.0)   # one H100-hour at 30 %


def test_flops_are_counted_and_grow_with_the_record_length():
    flops = scale.forward_flops(torch.nn.Linear(10, 4, bias=False), torch.zeros(3, 10))
    assert flops == 2 * 3 * 10 * 4
    assert scale._convnext_flops("small", 2000) == pytest.approx(2 * scale._convnext_flops("small", 1000), rel=0.05)


def test_chapter_table_and_measured_rates():
    table = scale.chapter_estimates(sizes={"ptbxl_records": 1000})
    assert list(table.columns) == ["chapter", "model", "work", "GPU memory", "hours"]
    assert (table["hours"] > 0).all() and table["chapter"].str[:2].is_unique
    faster = scale.chapter_estimates(sizes={"ptbxl_records": 1000}, cpu_rates={"signal": 100.0})
    assert faster["hours"].iloc[0] < table["hours"].iloc[0]
    assert scale.signal_rate(100, 500, 2) == 2.5
    with pytest.raises(ValueError, match="positive"):
        scale.signal_rate(0, 500, 2)

"""The memory estimate's deterministic properties; its accuracy against measured peaks is checked by hand
with benchmarks/memory_estimate.py (a measurement, not a unit test)."""

import pytest
import torch

from torchtune_lite import config
from torchtune_lite._torchao import NF4Tensor
from torchtune_lite.training.memory_estimate import build_meta_model, estimate_memory, weight_bytes
from torchtune_lite.training.precision import set_default_dtype

PARTS = ["NF4 weights", "high-precision weights", "adapters", "gradients", "optimizer states", "activations",
         "loss and dequant buffers", "CPU allocator retention", "runtime baseline (measured)"]


def _estimate(name: str, *overrides: str):
    cfg = config.load_config(name, ["device=cpu", "dtype=fp32", *overrides])
    return estimate_memory(cfg, seq_len=64, runtime_baseline=300 * 2**20)


def test_breakdown_parts_sum_to_the_total_and_follow_the_config():
    est = _estimate("tiny/lora", "batch_size=2")
    assert list(est.parts) == PARTS
    assert est.total == sum(est.parts.values())
    assert est.parts["runtime baseline (measured)"] == 300 * 2**20
    assert est.parts["gradients"] == est.parts["adapters"] > 0  # only the adapters train, in fp32
    assert est.parts["optimizer states"] == 2 * est.parts["adapters"]  # AdamW: exp_avg and exp_avg_sq
    assert "total" in est.table() and "activation checkpointing off" in est.table()
    # activations grow with the batch
    assert _estimate("tiny/lora", "batch_size=4").parts["activations"] == pytest.approx(2 * est.parts["activations"], rel=0.01)


def test_meta_count_equals_the_real_models_bytes():
    cfg = config.load_config("tiny/qlora", ["dtype=fp32"])
    counted = weight_bytes(build_meta_model(cfg, torch.float32))
    with set_default_dtype(torch.float32):
        real = config.instantiate(cfg.model)
    nf4 = sum(getattr(p, n).nbytes for p in real.parameters() if isinstance(p, NF4Tensor) for n in p.__tensor_flatten__()[0])
    assert counted["NF4 weights"] == nf4 > 0
    plain = sum(p.nbytes for p in real.parameters() if not isinstance(p, NF4Tensor))
    assert counted["high-precision weights"] + counted["adapters"] == plain


def test_qlora_weighs_less_than_lora_and_checkpointing_lowers_activations():
    lora, qlora = _estimate("tiny/lora"), _estimate("tiny/qlora")
    weights = lambda e: e.parts["NF4 weights"] + e.parts["high-precision weights"]  # noqa: E731
    assert weights(qlora) < 0.3 * weights(lora)
    assert qlora.parts["adapters"] == lora.parts["adapters"]
    with_ac = _estimate("tiny/qlora", "enable_activation_checkpointing=True")
    assert with_ac.parts["activations"] < 0.5 * qlora.parts["activations"]
    assert with_ac.activation_checkpointing and with_ac.total < qlora.total


def test_7b_qlora_weights():
    # All attention projections adapted (so all linears NF4): Llama-2-7B in 4 bits is about 3.5-4 GB.
    cfg = config.load_config("7B_qlora", ["model.lora_attn_modules=[q_proj,k_proj,v_proj,output_proj]"])
    weights = weight_bytes(build_meta_model(cfg, torch.bfloat16))
    linear_params = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008)
    assert weights["NF4 weights"] == pytest.approx(linear_params * (0.5 + 1 / 64), rel=1e-3)
    assert weights["high-precision weights"] == pytest.approx((2 * 32000 * 4096 + 65 * 4096) * 2, rel=1e-3)  # embeddings, output, norms
    assert 3.5e9 < weights["NF4 weights"] + weights["high-precision weights"] < 4.0e9
    # The shipped config leaves k_proj un-adapted, hence in bf16.
    shipped = weight_bytes(build_meta_model(config.load_config("7B_qlora"), torch.bfloat16))
    assert shipped["high-precision weights"] - weights["high-precision weights"] == 32 * 4096 * 4096 * 2


def test_cpu_terms_only_on_cpu():
    cfg = config.load_config("tiny/qlora", ["device=cuda", "dtype=bf16"])
    est = estimate_memory(cfg, seq_len=64)
    assert "runtime baseline (measured)" not in est.parts and "CPU allocator retention" not in est.parts
    assert est.dtype == torch.bfloat16
    cpu = _estimate("tiny/qlora")
    assert cpu.parts["CPU allocator retention"] == cpu.parts["activations"] + cpu.parts["loss and dequant buffers"]
    # One batch length (packed data): each step reuses the previous step's freed blocks, nothing retained.
    one_length = estimate_memory(config.load_config("tiny/qlora", ["device=cpu", "dtype=fp32"]), seq_len=64,
                                 runtime_baseline=300 * 2**20, batch_shapes=1.0)
    assert one_length.parts["CPU allocator retention"] == 0 and one_length.parts["activations"] == cpu.parts["activations"]


def test_tune_estimate_prints_the_table(capsys):
    from torchtune_lite.cli import tune

    tune.main(["estimate", "--config", "tiny/qlora", "--seq-len", "64", "device=cpu", "batch_size=2"])
    out = capsys.readouterr().out
    assert "batch 2 x 64 tokens" in out and "NF4 weights" in out and "runtime baseline (measured)" in out
    baseline_mib = float(out.split("runtime baseline (measured)")[1].split("MiB")[0].replace(",", ""))
    assert 100 < baseline_mib < 2000  # a Python + torch process, measured
    with pytest.raises(SystemExit):
        tune.main(["estimate", "--config", "tiny/qlora", "--seq-len", "0"])
    assert capsys.readouterr().err.startswith("error: --seq-len 0")


def test_gemm_shapes_are_the_linears_forward_and_backward_matmuls():
    from torchtune_lite.training.memory_estimate import gemm_shapes

    cfg = config.load_config("tiny/pretrain", ["checkpointer.checkpoint_dir=unused"])
    model = build_meta_model(cfg, torch.bfloat16)
    tokens = 2 * 8
    linears = {(m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear)}
    expected = set()
    for i, o in linears:  # forward x @ W^T, grad of x: g @ W, grad of W: g^T @ x (every weight trains here)
        expected |= {("mm.default", (tokens, i), (i, o)), ("mm.default", (tokens, o), (o, i)), ("mm.default", (o, tokens), (tokens, i))}
    shapes = gemm_shapes(model, 2, 8)
    assert {s for s in shapes if s[0] == "mm.default"} == expected
    assert {s[0] for s in shapes} == {"mm.default", "bmm.default"}  # attention's scores and weighted values


def test_bf16_on_cpu_counts_kernels_per_batch_length_and_sharded_ranks_their_runtime():
    from torchtune_lite.training.memory_estimate import gemm_shapes

    fp32 = _estimate("tiny/qlora")
    assert "oneDNN kernels per batch length" not in fp32.parts and "FSDP2 and gloo runtime (fitted)" not in fp32.parts
    cfg = config.load_config("tiny/qlora", ["device=cpu", "dtype=bf16"])
    bf16 = estimate_memory(cfg, seq_len=64, runtime_baseline=300 * 2**20, batch_shapes=3.0, world_size=2)
    gemms = len(gemm_shapes(build_meta_model(cfg, torch.bfloat16), 8, 64))
    assert gemms > 10
    assert bf16.parts["oneDNN kernels per batch length"] == gemms * 3 * 2**20
    assert bf16.parts["FSDP2 and gloo runtime (fitted)"] > 0


def test_batch_shapes_seen_against_drawing_batches():
    import random
    from collections import Counter

    from torchtune_lite.training.memory_estimate import batch_shapes_seen

    assert batch_shapes_seen([256] * 10, 4, 100) == pytest.approx(1.0)  # packed: one length
    assert batch_shapes_seen([5, 6, 7], 1, 1) == pytest.approx(1.0)  # one batch has one length
    rng, trials, batch, batches = random.Random(0), 400, 8, 30
    lengths = [rng.randint(30, 51) for _ in range(500)] + [120] * 5
    drawn = Counter(len({max(rng.choices(lengths, k=batch)) for _ in range(batches)}) for _ in range(trials))
    mean = sum(k * n for k, n in drawn.items()) / trials
    assert batch_shapes_seen(lengths, batch, batches) == pytest.approx(mean, rel=0.05)


def test_runtime_baseline_is_the_fresh_interpreters_own_peak():
    """Linux carries a parent's peak RSS into a child's ru_maxrss across fork and exec: a 1 GiB parent must not
    be measured as the baseline of the fresh interpreter it starts."""
    from torchtune_lite.training.memory_estimate import measure_runtime_baseline

    parent = torch.ones(2**28)  # 1 GiB resident in this process
    baseline = measure_runtime_baseline.__wrapped__()
    assert float(parent[-1]) == 1.0 and 100 * 2**20 < baseline < 2**30


def test_preference_pairs_hold_two_rows_and_the_reference_choice_its_own_bytes():
    dpo = _estimate("tiny/qlora_dpo", "batch_size=2")
    as_sft = estimate_memory(config.load_config("tiny/qlora_dpo", ["device=cpu", "dtype=fp32", "batch_size=2"]), seq_len=64,
                             runtime_baseline=300 * 2**20, rows_per_sample=1)
    assert "batch 2 pairs (4 rows) x 64 tokens" in dpo.table()
    # chosen and rejected rows: twice the activations of the chosen rows alone
    assert dpo.parts["activations"] == pytest.approx(2 * as_sft.parts["activations"], rel=0.01)
    # adapters off: the base is the reference, nothing more is held
    assert dpo.parts["reference: base, adapters off"] == 0 and "reference: start adapter copy" not in dpo.parts
    started = _estimate("tiny/qlora_dpo", "batch_size=2", "start_adapter=/some/sft/adapter")
    assert started.total - dpo.total == started.parts["reference: start adapter copy"] == dpo.parts["adapters"] > 0
    assert "reference: base, adapters off" not in _estimate("tiny/qlora").parts  # SFT has no reference


def test_start_adapter_copy_is_what_the_reference_policy_keeps():
    from torchtune_lite.training.preference_step import ReferencePolicy

    cfg = config.load_config("tiny/lora_dpo", ["device=cpu", "dtype=fp32", "start_adapter=/some/sft/adapter"])
    with set_default_dtype(torch.float32):
        model = config.instantiate(cfg.model)
    kept = sum(t.nbytes for t in ReferencePolicy(model, from_start_adapter=True).start_adapter.values())
    est = estimate_memory(cfg, seq_len=32, runtime_baseline=0)
    assert est.parts["reference: start adapter copy"] == kept > 0
    assert not ReferencePolicy(model).start_adapter  # adapters off: no copy


def test_preference_data_lengths_are_each_pairs_longer_answer():
    from torchtune_lite.training.memory_estimate import sample_lengths

    cfg = config.load_config("tiny/qlora_dpo")
    lengths, count = sample_lengths(cfg, limit=50)
    dataset = config.instantiate(cfg.dataset, config.instantiate(cfg.tokenizer))
    assert count == len(dataset) and len(lengths) == 50
    assert lengths == [max(len(dataset[i]["chosen_tokens"]), len(dataset[i]["rejected_tokens"])) for i in range(50)]
    assert any(len(dataset[i]["chosen_tokens"]) != len(dataset[i]["rejected_tokens"]) for i in range(50))


def test_tune_estimate_on_a_dpo_config_counts_pairs(capsys):
    from torchtune_lite.cli import tune

    tune.main(["estimate", "--config", "tiny/qlora_dpo", "--seq-len", "data", "device=cpu", "dtype=fp32"])
    out = capsys.readouterr().out
    assert "batch 8 pairs (16 rows)" in out and "reference: base, adapters off" in out



def test_loss_buffers_follow_the_path_the_output_layer_takes():
    # Plain linear output: the fused pass holds one chunk's fp32 log-probabilities and their bf16 gradient (all
    # 16 x 256 tokens fit one 64 MiB chunk at vocab 1024), the rows' hidden states, their gradient and the
    # [tokens, dim] gradient returned: 4096 * 1024 * (4 + 2) + 3 * 4096 * 256 * 2 bytes.
    cfg = config.load_config("tiny/pretrain", ["checkpointer.checkpoint_dir=unused", "device=cpu", "dtype=bf16"])
    est = estimate_memory(cfg, seq_len=256, runtime_baseline=0, batch_shapes=1.0)
    assert est.parts["loss and dequant buffers"] == 4096 * 1024 * 6 + 3 * 4096 * 256 * 2
    # A smaller chunk bounds the logits: 16 MiB of fp32 logits is 4096 tokens at vocab 1024 -> 1024 tokens at 4 MiB.
    small = estimate_memory(config.load_config("tiny/pretrain", ["checkpointer.checkpoint_dir=unused", "device=cpu", "dtype=bf16",
                                                                 "loss.fused_chunk_mb=4"]), seq_len=256, runtime_baseline=0, batch_shapes=1.0)
    assert small.parts["loss and dequant buffers"] == 1024 * 1024 * 6 + 3 * 4096 * 256 * 2
    # A LoRA'd output layer is called per sequence chunk (8): two chunks' worth of fp32 logits.
    lora_out = estimate_memory(config.load_config("tiny/lora", ["device=cpu", "dtype=fp32", "model.apply_lora_to_output=True",
                                                                "batch_size=2"]), seq_len=64, runtime_baseline=0)
    assert lora_out.parts["loss and dequant buffers"] == 2 * (2 * 64 // 8) * 1024 * 4

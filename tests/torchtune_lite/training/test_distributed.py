"""FSDP2 sharding on real gloo ranks: each rank holds only its own shard of every NF4 weight."""

from __future__ import annotations

import pytest
import torch

from tests.torchtune_lite.training.ranks import run_on_ranks
from torchtune_lite.quantization import dequantize_nf4, quantize_nf4

# 256 x 256 weights: 65536 values = 1024 NF4 blocks of 64 = 4 scaler blocks of 256, so every field splits over 4.
SHAPE = dict(vocab_size=64, num_layers=1, num_heads=4, num_kv_heads=4, embed_dim=256, intermediate_dim=64, max_seq_len=16)
NF4_FIELDS = ("quantized_data", "quantized_scalers", "quantization_factor", "scaler_mean", "nf4")


def _full_weights() -> dict[str, torch.Tensor]:
    from torchtune_lite.models.llama2 import llama2

    torch.manual_seed(0)
    return {k: v.float() for k, v in llama2(**SHAPE).state_dict().items()}


def _shard_and_load(rank: int, world_size: int) -> dict:
    from torchtune_lite._torchao import NF4Tensor
    from torchtune_lite.models.llama2 import qlora_llama2
    from torchtune_lite.modules.peft import is_adapter_key
    from torchtune_lite.modules.transformer import TransformerDecoderLayer
    from torchtune_lite.training.distributed import materialize_buffers, shard_model
    from torchtune_lite.training.weight_loading import initialize_adapters, load_weights_streaming

    with torch.device("meta"):
        model = qlora_llama2(["q_proj", "v_proj"], lora_rank=4, lora_alpha=8.0, **SHAPE)
    shard_model(model, (TransformerDecoderLayer,), torch.device("cpu"))
    materialize_buffers(model, torch.device("cpu"))
    load_weights_streaming(model, _full_weights().items(), source="test", may_be_missing=is_adapter_key)
    initialize_adapters(model, 0)
    model(torch.randint(0, 64, (1, 8))).sum().backward()  # FSDP2 trains on these shards as they are
    shards = {}
    for name, param in model.named_parameters():
        local = param.to_local()
        if isinstance(local, NF4Tensor):
            shards[name] = {
                "storage_bytes": sum(getattr(local, f).untyped_storage().nbytes() for f in NF4_FIELDS),
                "block_size": local.block_size,
                "values": dequantize_nf4(local),
            }
    return shards


@pytest.mark.parametrize("world_size", [2, 4])
def test_each_rank_stores_only_its_share_of_every_nf4_weight(world_size):
    results = run_on_ranks(world_size, _shard_and_load)
    full = _full_weights()
    assert set(results[0]) == {"layers.0.attn.q_proj.weight", "layers.0.attn.v_proj.weight"}
    for name in results[0]:
        whole = quantize_nf4(full[name])  # the single-device NF4 weight, quantized whole
        split = sum(getattr(whole, f).untyped_storage().nbytes() for f in NF4_FIELDS[:3]) / world_size
        replicated = sum(getattr(whole, f).untyped_storage().nbytes() for f in NF4_FIELDS[3:])  # mean + 16-entry table
        rows = whole.shape[0] // world_size
        for rank, shards in enumerate(results):
            shard = shards[name]
            one_block = shard["block_size"] // 2  # bytes of one 64-value block of 4-bit codes
            assert abs(shard["storage_bytes"] - (split + replicated)) <= one_block, (name, rank, shard["storage_bytes"], split)
            # the bits are those of the whole weight quantized on one device
            torch.testing.assert_close(shard["values"], dequantize_nf4(whole)[rank * rows:(rank + 1) * rows], rtol=0, atol=0)


def _mesh_type_with_cuda_visible(rank: int, world_size: int) -> str:
    # A GPU host (as FSDP2's default mesh would see it) training with device=cpu.
    torch.cuda.is_available = lambda: True
    from torchtune_lite.models.llama2 import llama2
    from torchtune_lite.modules.peft import is_adapter_key
    from torchtune_lite.modules.transformer import TransformerDecoderLayer
    from torchtune_lite.training.distributed import shard_model

    with torch.device("meta"):
        model = llama2(**SHAPE)
    shard_model(model, (TransformerDecoderLayer,), torch.device("cpu"))
    return model.tok_embeddings.weight.device_mesh.device_type


def test_device_cpu_on_a_gpu_host_shards_on_a_cpu_mesh():
    assert run_on_ranks(2, _mesh_type_with_cuda_visible) == ["cpu", "cpu"]


def _hang_after_setup(rank: int, world_size: int) -> dict:
    """Rank 1 skips a collective after setup; rank 0 waits in it under the short training timeout."""
    import time

    import torch.distributed as dist

    from torchtune_lite.training.distributed import peer_failure_message, set_collective_timeout

    set_collective_timeout(1.5)
    dist.barrier()  # both ranks now run under the short timeout
    if rank == 1:
        time.sleep(6)
        return {}
    start = time.monotonic()
    try:
        dist.all_reduce(torch.ones(1))
    except RuntimeError as err:
        return {"seconds": time.monotonic() - start, "message": peer_failure_message(0, err)}
    return {"seconds": time.monotonic() - start, "message": None}


def test_shortened_timeout_fails_a_hung_collective_with_one_line():
    result = run_on_ranks(2, _hang_after_setup)[0]
    assert result["seconds"] < 5  # the 1.5 s set after setup, not the group's 30 min default
    message = result["message"]
    assert message and "\n" not in message and message.startswith("error: rank 0: another rank stopped answering (")


@pytest.mark.parametrize("text", [
    # What torch's NCCL watchdog and a waiting call report when a peer hung or died.
    "[Rank 1] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=64, OpType=ALLREDUCE, NumelIn=3, "
    "NumelOut=3, Timeout(ms)=60000) ran for 60081 milliseconds before timing out.",
    "NCCL communicator was aborted on rank 1.",
    "NCCL error in: ProcessGroupNCCL.cpp:1970, remote process exited or there was a network error, NCCL version 2.21.5\n"
    "ncclRemoteError: A call failed possibly due to a network error or a remote process exiting prematurely.",
    "Some NCCL operations have failed or timed out. Due to the asynchronous nature of CUDA kernels, ...",
    "[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:41839",
])
def test_peer_failures_on_nccl_and_gloo_are_one_line_errors(text):
    from torchtune_lite.training.distributed import peer_failure_message

    message = peer_failure_message(3, torch.distributed.DistBackendError(text))
    assert message is not None and "\n" not in message
    assert message.startswith(f"error: rank 3: another rank stopped answering ({text.splitlines()[0][-120:]}): it hung or died")


def test_other_errors_are_not_peer_failures():
    from torchtune_lite.training.distributed import peer_failure_message

    assert peer_failure_message(0, RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")) is None

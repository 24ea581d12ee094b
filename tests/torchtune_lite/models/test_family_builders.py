"""The per-size builders of the new families: published parameter counts, the family switches, and their
LoRA/QLoRA variants. Built on the meta device, so the 70B costs nothing."""

from __future__ import annotations

import pytest
import torch

from torchtune_lite.models import llama3_1, llama3_2, mistral, qwen2_5, qwen3
from torchtune_lite.modules.peft import LoRALinear


# Published parameter counts (model cards / safetensors index totals). A tied checkpoint stores the
# embedding once; our model holds the output projection as its own linear, so it is left out of the count.
@pytest.mark.parametrize(
    "builder, published, tied",
    [
        (llama3_1.llama3_1_8b, 8_030_261_248, False),
        (llama3_1.llama3_1_70b, 70_553_706_496, False),
        (llama3_2.llama3_2_1b, 1_235_814_400, True),
        (llama3_2.llama3_2_3b, 3_212_749_824, True),
        (qwen2_5.qwen2_5_0_5b, 494_032_768, True),
        (qwen2_5.qwen2_5_1_5b, 1_543_714_304, True),
        (qwen2_5.qwen2_5_3b, 3_085_938_688, True),
        (qwen2_5.qwen2_5_7b, 7_615_616_512, False),
        (qwen2_5.qwen2_5_14b, 14_770_033_664, False),
        (qwen3.qwen3_0_6b, 596_049_920, True),
        (qwen3.qwen3_1_7b, 1_720_574_976, True),
        (qwen3.qwen3_4b, 4_022_468_096, True),
        (qwen3.qwen3_8b, 8_190_735_360, False),
        (mistral.mistral_7b, 7_248_023_552, False),
    ],
    ids=lambda x: getattr(x, "__name__", None),
)
def test_published_sizes(builder, published, tied):
    with torch.device("meta"):
        model = builder()
    total = sum(p.numel() for p in model.parameters())
    assert total - (model.output.weight.numel() if tied else 0) == published


def test_family_switches():
    with torch.device("meta"):
        qwen2 = qwen2_5.qwen2_5_0_5b(max_seq_len=64)
        q3 = qwen3.qwen3_0_6b(max_seq_len=64)
        llama = llama3_2.llama3_2_1b(max_seq_len=64)
    attn = qwen2.layers[0].attn
    assert attn.q_proj.bias is not None and attn.v_proj.bias is not None and attn.output_proj.bias is None
    assert attn.q_norm is None and qwen2.max_seq_len == 64
    attn = q3.layers[0].attn
    assert attn.q_proj.bias is None and attn.q_norm.scale.shape == (128,) and attn.q_proj.weight.shape == (2048, 1024)
    rope = llama.layers[0].attn.pos_embeddings
    assert rope.base == 500_000.0 and rope.scaling.factor == 32.0


@pytest.mark.parametrize("qlora", [qwen2_5.qlora_qwen2_5_7b, qwen3.qlora_qwen3_8b, llama3_1.qlora_llama3_1_8b,
                                   mistral.qlora_mistral_7b], ids=lambda f: f.func.__name__)
def test_qlora_builders_adapt_the_chosen_linears(qlora):
    with torch.device("meta"):
        model = qlora(["q_proj", "v_proj"], apply_lora_to_mlp=False, lora_rank=4, max_seq_len=64)
    adapted = {n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    assert adapted == {"q_proj", "v_proj"}
    assert all(m.quantize_base for m in model.modules() if isinstance(m, LoRALinear))

"""The per-size builders of the new families: published parameter counts, the family switches, and their
LoRA/QLoRA variants. Built on the meta device, so the 70B costs nothing."""

from __future__ import annotations

import pytest
import torch
import transformers

from torchtune_lite.models import gemma2, gemma3, llama3_1, llama3_2, mistral, qwen2_5, qwen3
from torchtune_lite.modules.peft import LoRALinear


# Published parameter counts (model cards / safetensors index totals). A tied checkpoint stores the
# embedding once, and so does our model: its plain output projection shares the embedding's Parameter.
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
        (gemma2.gemma2_2b, 2_614_341_888, True),
        (gemma2.gemma2_9b, 9_241_705_984, True),
        (gemma3.gemma3_1b, 999_885_952, True),
    ],
    ids=lambda x: getattr(x, "__name__", None),
)
def test_published_sizes(builder, published, tied):
    with torch.device("meta"):
        model = builder()
    assert sum(p.numel() for p in model.parameters()) == published
    assert (model.output.weight is model.tok_embeddings.weight) == tied


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


def test_gemma3_4b_matches_transformers_on_its_published_text_config():
    # gemma-3-4b-it's text_config (the card counts the vision tower too, so compare with transformers instead)
    config = transformers.Gemma3TextConfig(
        vocab_size=262_208, hidden_size=2560, intermediate_size=10240, num_hidden_layers=34, num_attention_heads=8,
        num_key_value_heads=4, head_dim=256, sliding_window=1024, max_position_embeddings=131_072,
        rope_parameters={"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0}})
    with torch.device("meta"):
        reference = transformers.Gemma3ForCausalLM(config)
        ours = gemma3.gemma3_4b()
    assert sum(p.numel() for p in ours.parameters()) == reference.num_parameters()
    assert [layer.attn.sliding_window for layer in ours.layers] == [
        1024 if t == "sliding_attention" else None for t in config.layer_types]


def test_gemma_switches():
    with torch.device("meta"):
        g2, g3 = gemma2.gemma2_2b(max_seq_len=64), gemma3.gemma3_4b(max_seq_len=64)
    assert [layer.attn.sliding_window for layer in g2.layers[:3]] == [4096, None, 4096]
    assert g2.layers[0].attn.softcap == 50.0 and g2.final_logit_softcap == 30.0 and g2.embed_scale == 2304**0.5
    assert g2.layers[0].sa_post_norm.unit_offset and g2.layers[0].attn.q_norm is None
    assert g3.layers[0].attn.softcap is None and g3.final_logit_softcap is None and g3.layers[0].attn.q_norm.unit_offset
    local, glob = g3.layers[0].attn.pos_embeddings, g3.layers[5].attn.pos_embeddings
    assert (local.base, local.scaling) == (10_000.0, None) and (glob.base, glob.scaling.factor) == (1e6, 8.0)
    assert g3.layers[0].attn.scale == 256**-0.5


@pytest.mark.parametrize("qlora", [qwen2_5.qlora_qwen2_5_7b, qwen3.qlora_qwen3_8b, llama3_1.qlora_llama3_1_8b,
                                   mistral.qlora_mistral_7b, gemma2.qlora_gemma2_9b, gemma3.qlora_gemma3_4b],
                         ids=lambda f: f.func.__name__)
def test_qlora_builders_adapt_the_chosen_linears(qlora):
    with torch.device("meta"):
        model = qlora(["q_proj", "v_proj"], apply_lora_to_mlp=False, lora_rank=4, max_seq_len=64)
    adapted = {n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    assert adapted == {"q_proj", "v_proj"}
    assert all(m.quantize_base for m in model.modules() if isinstance(m, LoRALinear))

import pytest
import torch

from torchtune_lite.models.llama2 import llama2

pytestmark = pytest.mark.usefixtures("kernel_path")  # the model on the C kernels and on the torch ops

TINY = dict(vocab_size=64, num_layers=2, num_heads=4, embed_dim=32, intermediate_dim=48, max_seq_len=32, norm_eps=1e-5)


def build_ours(num_kv_heads: int) -> torch.nn.Module:
    return llama2(num_kv_heads=num_kv_heads, **TINY).eval()


def test_hf_to_meta_qk_inverts_hf_permutation(hf_qk_to_meta):
    # The HF conversion script permutes Meta rows with view(n, hd/2, 2, dim).transpose(1, 2); ours must undo it.
    n_heads, head_dim, dim = 3, 8, 5
    meta = torch.randn(n_heads * head_dim, dim)
    hf = meta.view(n_heads, head_dim // 2, 2, dim).transpose(1, 2).reshape(n_heads * head_dim, dim)
    torch.testing.assert_close(hf_qk_to_meta(hf, n_heads), meta, rtol=0, atol=0)


def test_logits_match_hf(hf_model, num_kv_heads, tiny, convert_hf_state_dict):
    assert tiny == TINY
    ours = build_ours(num_kv_heads)
    ours.load_state_dict(convert_hf_state_dict(hf_model.state_dict(), TINY["num_heads"], num_kv_heads))
    tokens = torch.randint(0, TINY["vocab_size"], (2, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf_model(tokens).logits
        actual = ours(tokens)
    assert actual.shape == (2, 11, TINY["vocab_size"])
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_return_hidden_is_input_of_output_projection(num_kv_heads):
    torch.manual_seed(0)
    model = build_ours(num_kv_heads)
    tokens = torch.randint(0, TINY["vocab_size"], (2, 7))
    with torch.no_grad():
        hidden = model(tokens, return_hidden=True)
        assert hidden.shape == (2, 7, TINY["embed_dim"])
        torch.testing.assert_close(model.output(hidden), model(tokens), rtol=0, atol=0)


def test_default_mask_is_causal(num_kv_heads):
    torch.manual_seed(0)
    model = build_ours(num_kv_heads)
    tokens = torch.randint(0, TINY["vocab_size"], (2, 9))
    causal = torch.tril(torch.ones(9, 9, dtype=torch.bool)).expand(2, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), model(tokens, mask=causal), rtol=1e-5, atol=1e-6)
        # and it is really causal: changing the last token leaves earlier logits alone
        changed = tokens.clone()
        changed[:, -1] = (changed[:, -1] + 1) % TINY["vocab_size"]
        torch.testing.assert_close(model(changed)[:, :-1], model(tokens)[:, :-1], rtol=1e-5, atol=1e-6)


def test_packed_samples_match_separate_runs(num_kv_heads):
    torch.manual_seed(0)
    model = build_ours(num_kv_heads)
    lengths = [5, 3, 6]
    samples = [torch.randint(0, TINY["vocab_size"], (1, n)) for n in lengths]
    packed = torch.cat(samples, dim=1)
    total = sum(lengths)
    mask = torch.zeros(total, total, dtype=torch.bool)
    start = 0
    for n in lengths:
        mask[start : start + n, start : start + n] = torch.tril(torch.ones(n, n, dtype=torch.bool))
        start += n
    input_pos = torch.cat([torch.arange(n) for n in lengths])[None]
    with torch.no_grad():
        packed_logits = model(packed, mask=mask[None], input_pos=input_pos)
        separate = torch.cat([model(s) for s in samples], dim=1)
    torch.testing.assert_close(packed_logits, separate, rtol=1e-5, atol=1e-5)


def test_kv_cache_decoding_matches_full_forward(num_kv_heads):
    torch.manual_seed(0)
    model = build_ours(num_kv_heads)
    tokens = torch.randint(0, TINY["vocab_size"], (2, 10))
    with torch.no_grad():
        full = model(tokens)
        model.setup_caches(batch_size=2, dtype=torch.float32)
        assert model.caches_are_enabled()
        prompt = 4
        steps = [model(tokens[:, :prompt], input_pos=torch.arange(prompt)[None].expand(2, -1))]
        for pos in range(prompt, 10):
            steps.append(model(tokens[:, pos : pos + 1], input_pos=torch.full((2, 1), pos)))
        torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)

        model.reset_caches()  # a second generation after reset starts from a clean cache
        again = model(tokens[:, :3], input_pos=torch.arange(3))
        torch.testing.assert_close(again, full[:, :3], rtol=1e-5, atol=1e-5)
        model.teardown_caches()
        assert not model.caches_are_enabled()
    assert all(not k.startswith("layers.0.attn.kv_cache") for k in model.state_dict())


def test_errors_name_the_fix():
    model = build_ours(2)
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, TINY["max_seq_len"] + 1, dtype=torch.long))
    model.setup_caches(batch_size=1, dtype=torch.float32)
    with pytest.raises(ValueError, match="input_pos"):
        model(torch.zeros(1, 2, dtype=torch.long))

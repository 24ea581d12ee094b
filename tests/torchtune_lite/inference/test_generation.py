"""KV-cache generation against full forwards without a cache, sampling reproducibility, and the prompt template."""

import pytest
import torch

from torchtune_lite.data import format_alpaca_prompt
from torchtune_lite.inference.generation import complete, encode_prompt, generate, sample_next_token
from torchtune_lite.models.llama2 import llama2

TINY = dict(vocab_size=64, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=32, intermediate_dim=48, max_seq_len=32)


@pytest.fixture
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return llama2(**TINY).eval()


def _argmax_without_cache(model, prompt: list[int], steps: int) -> list[int]:
    tokens = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            tokens.append(int(model(torch.tensor([tokens]))[0, -1].argmax()))
    return tokens[len(prompt):]


def test_greedy_with_cache_equals_argmax_of_full_forward_each_step(model):
    prompt = [1, 5, 9, 13, 2, 40]
    new = generate(model, prompt, max_new_tokens=12)
    assert new == _argmax_without_cache(model, prompt, 12)
    assert generate(model, prompt, max_new_tokens=12) == new  # deterministic
    assert len(set(new)) > 1  # a model stuck on one token would make the comparison weak


def test_greedy_stops_at_a_stop_token(model):
    prompt = [1, 5, 9]
    free = generate(model, prompt, max_new_tokens=10)
    stop = free[3]
    first = free.index(stop)
    assert generate(model, prompt, max_new_tokens=10, stop_tokens=[stop]) == free[: first + 1]


def test_sampling_repeats_with_the_same_seed_and_differs_with_another(model):
    def sample(seed: int) -> list[int]:
        g = torch.Generator().manual_seed(seed)
        return generate(model, [1, 2, 3], max_new_tokens=20, temperature=1.5, top_k=40, top_p=0.95, generator=g)

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


def test_prompt_beyond_context_is_refused(model):
    with pytest.raises(ValueError, match="exceeds the model's context of 32 tokens"):
        generate(model, list(range(1, 30)), max_new_tokens=8)


class _CharTokenizer:
    """One token per character (ids 3..), BOS 1, EOS 2: enough to check what `complete` encodes."""

    bos_id, eos_id = 1, 2

    def encode(self, text: str, add_bos: bool = True, add_eos: bool = True) -> list[int]:
        return [self.bos_id] * add_bos + [3 + ord(c) % 60 for c in text] + [self.eos_id] * add_eos

    def decode(self, ids) -> str:
        return "".join(chr(i) for i in ids)


def test_prompt_is_the_training_template_and_eos_is_not_in_the_text():
    tokenizer = _CharTokenizer()
    assert encode_prompt(tokenizer, "Hi?") == tokenizer.encode(format_alpaca_prompt("Hi?"), add_eos=False)
    assert encode_prompt(tokenizer, "Hi?", instruct_template=False) == [1, *tokenizer.encode("Hi?", add_bos=False, add_eos=False)]

    class Scripted(torch.nn.Module):  # answers 70, 71, then EOS, whatever the input
        max_seq_len = 4096

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.step = 0

        def setup_caches(self, batch_size, dtype): ...
        def reset_caches(self): ...
        def teardown_caches(self): ...

        def forward(self, tokens, input_pos=None):
            logits = torch.zeros(1, tokens.shape[1], 100)
            logits[0, -1, [70, 71, 2][min(self.step, 2)]] = 1.0
            self.step += 1
            return logits

    result = complete(Scripted(), tokenizer, "Hi?", max_new_tokens=10)
    assert result.tokens == [70, 71, 2] and result.text == "FG"


def test_prompt_matches_the_prompt_part_of_an_instruct_training_sample(tmp_path):
    from torchtune_lite.datasets import alpaca_dataset
    from torchtune_lite.models.llama2 import llama2_tokenizer
    from tests.recipes.conftest import ASSETS

    tokenizer = llama2_tokenizer(str(ASSETS / "tokenizer.model"))
    data = tmp_path / "one.json"
    data.write_text('[{"instruction": "What does the red wolf eat?", "input": "", "output": "Arr, berries."}]')
    sample = alpaca_dataset(tokenizer, data_files=str(data), train_on_input=False)[0]
    prompt = encode_prompt(tokenizer, "What does the red wolf eat?")
    assert sample["tokens"][: len(prompt)] == prompt
    assert all(label == -100 for label in sample["labels"][: len(prompt)])  # exactly the masked prompt
    assert sample["labels"][len(prompt)] != -100


def _kept(logits: torch.Tensor, **kwargs) -> set[int]:
    """The tokens sample_next_token can return: those drawn in many samples (all allowed ones turn up)."""
    g = torch.Generator().manual_seed(0)
    return {sample_next_token(logits, temperature=1.0, generator=g, **kwargs) for _ in range(2000)}


def test_top_k_keeps_exactly_the_k_most_likely_tokens():
    logits = torch.tensor([0.5, 2.0, -1.0, 1.5, 0.0, 1.0])  # ranks: 1, 3, 5, 0, 4, 2
    assert _kept(logits, top_k=3) == {1, 3, 5}
    assert _kept(logits, top_k=1) == {1}
    assert _kept(logits, top_k=6) == set(range(6))


def test_top_p_keeps_the_smallest_prefix_reaching_p():
    probs = torch.tensor([0.05, 0.4, 0.1, 0.3, 0.15])  # sorted: 1 (0.4), 3 (0.7), 4 (0.85), 2 (0.95), 0 (1.0)
    logits = probs.log()
    assert _kept(logits, top_p=0.5) == {1, 3}  # 0.4 < 0.5, so token 3 is needed to reach it
    assert _kept(logits, top_p=0.8) == {1, 3, 4}
    assert _kept(logits, top_p=0.3) == {1}  # the top token alone reaches p
    assert _kept(logits, top_k=2, top_p=0.99) == {1, 3}  # top-k applies first


def test_top_p_samples_the_kept_tokens_in_proportion():
    logits = torch.tensor([0.05, 0.4, 0.1, 0.3, 0.15]).log()
    g = torch.Generator().manual_seed(1)
    draws = torch.tensor([sample_next_token(logits, temperature=1.0, top_p=0.5, generator=g) for _ in range(4000)])
    share_of_1 = (draws == 1).float().mean().item()
    assert abs(share_of_1 - 0.4 / 0.7) < 0.03  # renormalised over the kept tokens

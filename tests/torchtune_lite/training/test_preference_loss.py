"""DPO, IPO and SimPO against TRL, the reference implementation: same tiny Llama, same LoRA adapter, same
token ids. TRL's first step (learning rate 0) logs the loss and the six reward/log-prob metrics of the
initial policy; ours must give the same numbers from the same batch."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from torchtune_lite.models import from_pretrained_config
from torchtune_lite.modules.peft import adapters_disabled
from torchtune_lite.checkpointing import FullModelHFCheckpointer
from torchtune_lite.training.completion_logps import completion_logps
from torchtune_lite.training.loss import IGNORE_INDEX, ChunkedCrossEntropyLoss
from torchtune_lite.training.preference_loss import PreferenceLoss
from torchtune_lite.training.preference_step import PreferenceObjective, ReferencePolicy

trl = pytest.importorskip("trl")
import datasets  # noqa: E402
import peft  # noqa: E402
import safetensors.torch  # noqa: E402
import transformers  # noqa: E402

BASE = Path(__file__).resolve().parents[3] / "torchtune_lite" / "assets" / "tiny" / "base"
TOKENIZER_DIR = BASE.parent
RANK, ALPHA, BETA = 4, 8.0, 0.1
PAIRS = [
    {"prompt": "What does the fox eat?", "chosen": " The fox eats berries and small fish.", "rejected": " Rocks."},
    {"prompt": "Where does the owl live?", "chosen": " In a tall tree.", "rejected": " The owl lives under the sea, far away."},
    {"prompt": "Is the mole big?", "chosen": " No, the mole is small.", "rejected": " Yes."},
]
METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected")


@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    """Our LoRA model on the tiny base with a random (non-zero) adapter, and that adapter saved in PEFT format."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("dpo")
    ckpt = FullModelHFCheckpointer(BASE, None, "LLAMA2", out)
    model = from_pretrained_config(BASE, lora_attn_modules=["q_proj", "v_proj"], lora_rank=RANK, lora_alpha=ALPHA).float()
    g = torch.Generator().manual_seed(1)
    adapter = {k: 0.05 * torch.randn(v.shape, generator=g) for k, v in model.state_dict().items() if ".lora_" in k}
    base = {k: v.float() for k, v in ckpt.iter_model()}
    model.load_state_dict({**base, **adapter})
    adapter_dir = ckpt.save_checkpoint({"adapter": adapter, "adapter_config": {"lora_alpha": ALPHA}}, epoch=0) / "adapter"
    return model.eval(), adapter_dir


def _trl_first_step(adapter_dir: Path, kind: str) -> tuple[dict, list[dict]]:
    """TRL's logged metrics of one step at learning rate 0, and the token ids it trained on."""
    tokenizer = transformers.LlamaTokenizer.from_pretrained(TOKENIZER_DIR)
    tokenizer.pad_token = tokenizer.eos_token
    hf = transformers.AutoModelForCausalLM.from_pretrained(BASE, dtype=torch.float32, attn_implementation="eager")
    lora = peft.LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    common = dict(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=len(PAIRS), max_steps=1, learning_rate=0.0,
                  logging_steps=1, report_to=[], beta=BETA, use_cpu=True, save_strategy="no", seed=0, bf16=False)
    data = datasets.Dataset.from_list(PAIRS)
    if kind == "simpo":
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        args = CPOConfig(loss_type="simpo", cpo_alpha=0.0, simpo_gamma=0.5, **common)
        trainer = CPOTrainer(model=hf, args=args, train_dataset=data, processing_class=tokenizer, peft_config=lora)
    else:
        args = trl.DPOConfig(loss_type=["sigmoid" if kind == "dpo" else "ipo"], **common)
        trainer = trl.DPOTrainer(model=hf, args=args, train_dataset=data, processing_class=tokenizer, peft_config=lora)
    # A fresh adapter (TRL's reference is then the base with adapters off) set to ours, as a new run would start.
    ours = safetensors.torch.load_file(adapter_dir / "adapter_model.safetensors")
    result = peft.set_peft_model_state_dict(trainer.model, ours)
    assert not result.unexpected_keys
    rows = [dict(r) for r in trainer.train_dataset]
    trainer.train()
    return trainer.state.log_history[0], rows


def _rows(rows: list[dict], kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """TRL's processed pairs -> our batch: chosen rows then rejected rows, prompt and padding labelled ignore."""
    seqs = []
    for side in ("chosen", "rejected"):
        for r in rows:
            if kind == "simpo":  # CPOTrainer keeps the full tokenized sequences and their labels
                seqs.append((r[f"{side}_input_ids"], r[f"{side}_labels"]))
            else:
                prompt, answer = r["prompt_ids"], r[f"{side}_ids"]
                seqs.append((prompt + answer, [IGNORE_INDEX] * len(prompt) + answer))
    width = max(len(t) for t, _ in seqs)
    tokens = torch.tensor([t + [0] * (width - len(t)) for t, _ in seqs])
    labels = torch.tensor([l + [IGNORE_INDEX] * (width - len(l)) for _, l in seqs])
    return tokens, labels


@pytest.mark.parametrize("kind", ["dpo", "ipo", "simpo"])
def test_first_step_matches_trl(adapted, kind):
    model, adapter_dir = adapted
    logged, rows = _trl_first_step(adapter_dir, kind)
    tokens, labels = _rows(rows, kind)
    objective = PreferenceObjective(PreferenceLoss(kind, beta=BETA), ReferencePolicy(model))
    with torch.no_grad():
        loss_sum, pairs = objective(model, {"tokens": tokens, "labels": labels}, torch.device("cpu"))
        policy = completion_logps(model, tokens, labels, ChunkedCrossEntropyLoss())
        with adapters_disabled(model):
            base = completion_logps(model, tokens, labels, ChunkedCrossEntropyLoss())
    assert int(pairs) == len(PAIRS) and not torch.allclose(policy.total, base.total)  # the adapter matters
    ours = {"loss": float(loss_sum) / len(PAIRS), **objective.pop_metrics()}
    for key in ("loss", *METRICS):
        assert ours[key] == pytest.approx(float(logged[key]), abs=1e-4, rel=1e-4), key

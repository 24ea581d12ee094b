"""A broken, mismatched or hostile checkpoint (or tokenizer): one `error:` line naming the file, exit 1,
no code run from a pickle, and no checkpoint written."""

from __future__ import annotations

import ast
import json
import pathlib
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.recipes.conftest import ASSETS
from tests.reliability.conftest import REPO, run_full, run_lora, saved_checkpoints


class _RunsCode:
    """Unpickling this touches `marker`: proof that code ran."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _copy(base, tmp):
    return pathlib.Path(shutil.copytree(base, tmp / "ckpt"))


def _rewrite(path, change):
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def missing_dir(base, tmp):
    return tmp / "nope", [], ["checkpoint_dir", "nope does not exist"]


def missing_file(base, tmp):
    return base, ["checkpointer.checkpoint_files=[model-00002-of-00002.safetensors]"], [
        "model-00002-of-00002.safetensors not found in", "(found: ['model.safetensors'])"]


def missing_shard(base, tmp):
    ckpt = _copy(base, tmp)
    tensors = load_file(ckpt / "model.safetensors")
    (ckpt / "model.safetensors").unlink()
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2], "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, ckpt / shard, metadata={"format": "pt"})
    index = {"weight_map": {k: shard for shard, keys in shards.items() for k in keys}}
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(index))
    (ckpt / "model-00002-of-00002.safetensors").unlink()
    return ckpt, [], ["model-00002-of-00002.safetensors not found in", "(found: ['model-00001-of-00002.safetensors'])"]


def truncated(base, tmp):
    ckpt = _copy(base, tmp)
    path = ckpt / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return ckpt, [], [str(path), "truncated or corrupt"]


def corrupt_header(base, tmp):
    ckpt = _copy(base, tmp)
    path = ckpt / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[8:40] = b"\xff" * 32
    path.write_bytes(bytes(data))
    return ckpt, [], [str(path), "truncated or corrupt"]


def pickle_that_runs_code(base, tmp):
    ckpt = _copy(base, tmp)
    tensors = load_file(ckpt / "model.safetensors")
    tensors["model.norm.weight"] = _RunsCode(tmp / "pwned")
    torch.save(tensors, ckpt / "pytorch_model.bin")
    (ckpt / "model.safetensors").unlink()
    return ckpt, [], [str(ckpt / "pytorch_model.bin"), "would run code when loaded (refused"]


def unexpected_key(base, tmp):
    ckpt = _copy(base, tmp)
    _rewrite(ckpt / "model.safetensors", lambda t: t.update({"model.layers.0.self_attn.gate.weight": torch.zeros(2)}))
    return ckpt, [], [str(ckpt / "model.safetensors"), "unexpected key 'model.layers.0.self_attn.gate.weight'"]


def wrong_shape(base, tmp):
    return base, ["model.intermediate_dim=96"], [str(base), "layers.0.mlp.w2.weight has shape [64, 128] but the model expects [64, 96]"]


def tokenizer_larger_than_embedding(base, tmp):
    ckpt = _copy(base, tmp)

    def shrink_vocab(t):
        for key in ("model.embed_tokens.weight", "lm_head.weight"):
            t[key] = t[key][:512].clone()

    _rewrite(ckpt / "model.safetensors", shrink_vocab)
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**config, "vocab_size": 512}))
    return ckpt, ["model.vocab_size=512"], ["tokenizer.model has 1024 tokens but the model's embedding has 512"]


def not_a_tokenizer(base, tmp):
    return base, [f"tokenizer.path={ASSETS / 'corpus.txt'}"], ["corpus.txt", "not a SentencePiece model"]


@pytest.mark.parametrize(
    "damage",
    [missing_dir, missing_file, missing_shard, truncated, corrupt_header, pickle_that_runs_code, unexpected_key,
     wrong_shape, tokenizer_larger_than_embedding, not_a_tokenizer],
    ids=lambda f: f.__name__,
)
def test_bad_checkpoint_is_one_line_naming_the_file(damage, hf_checkpoint, tmp_path):
    checkpoint_dir, overrides, fragments = damage(hf_checkpoint, tmp_path)
    out = tmp_path / "out"
    result = run_lora(checkpoint_dir, out, *overrides)
    assert result.returncode == 1, result.stderr
    assert len(result.error_lines) == 1, result.stderr
    assert result.error_lines[0].startswith("error: ") and all(f in result.error_lines[0] for f in fragments), result.stderr
    assert saved_checkpoints(out) == []
    assert not (tmp_path / "pwned").exists()


def test_recipe_state_that_runs_code_is_refused_on_resume(hf_checkpoint, tmp_path):
    out = tmp_path / "out"
    step = pathlib.Path(shutil.copytree(hf_checkpoint, out / "step_1"))  # a full fine-tune checkpoint, as saved
    torch.save({"progress": {"epoch": 0}, "optimizer": _RunsCode(tmp_path / "pwned")}, step / "recipe_state.pt")
    result = run_full(hf_checkpoint, out, resume_from_checkpoint=True)
    assert result.returncode == 1, result.stderr
    assert result.error_lines == [f"error: {step / 'recipe_state.pt'} holds objects that would run code when loaded "
                                  "(refused): save only tensors, dicts, lists, numbers and strings in the recipe state"]
    assert not (tmp_path / "pwned").exists()
    assert saved_checkpoints(out) == ["step_1"]


def test_every_torch_load_is_weights_only():
    """Loading a pickle runs code unless `weights_only=True`: no call site in the package or recipes may omit it."""
    offenders = []
    for path in sorted([*(REPO / "torchtune_lite").rglob("*.py"), *(REPO / "recipes").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else None
            if (owner, node.func.attr) in (("pickle", "load"), ("pickle", "loads")):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} pickle.{node.func.attr}")
            if (owner, node.func.attr) == ("torch", "load"):
                safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True for k in node.keywords)
                if not safe:
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} torch.load without weights_only=True")
    assert offenders == []

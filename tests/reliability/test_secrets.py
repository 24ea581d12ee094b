"""Credentials in the environment, or put into the config (literally or with `${oc.env:...}`), never
reach a file the run writes (logs, the saved config, checkpoints) or its console output."""

from __future__ import annotations

from tests.reliability.conftest import run_lora

SECRETS = {
    "WANDB_API_KEY": "wandb-0123456789abcdef0123456789abcdef",
    "HF_TOKEN": "hf_SeCrEtToKeN0123456789abcdefghij",
    "AWS_SECRET_ACCESS_KEY": "aws/SeCrEt+AcCeSs0123456789abcdefgh",
}


def test_credentials_never_reach_disk(hf_checkpoint, tmp_path, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "out"
    # A prompt is a free-text setting that ends up in the saved config: one secret typed in, one interpolated.
    prompt = f"Use {SECRETS['WANDB_API_KEY']} and ${{oc.env:HF_TOKEN}}"
    result = run_lora(hf_checkpoint, out, f"generate_after_training='{prompt}'", "max_new_tokens=2",
                      max_steps_per_epoch=2)
    assert result.returncode == 0, result.stderr

    written = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert {p.name for p in written} >= {"config.yaml", "metrics.jsonl", "recipe_state.pt", "adapter_model.safetensors"}
    leaks = [(p.relative_to(out), name) for p, data in written.items() for name, secret in SECRETS.items()
             if secret.encode() in data]
    assert leaks == []
    assert "Prompt: Use <redacted> and <redacted>" in result.stdout  # the generation printed after training
    assert not any(secret in result.stdout + result.stderr for secret in SECRETS.values())
    config = (out / "logs" / "config.yaml").read_text()
    assert "generate_after_training: Use <redacted> and <redacted>" in config

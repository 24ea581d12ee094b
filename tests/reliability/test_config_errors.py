"""A mistake on the command line or in the config: one `error:` line naming the key (and the nearest valid
one), exit 2, before any model is built and before the output directory exists."""

from __future__ import annotations

import pytest

from tests.reliability.conftest import tiny_overrides, tune

RECIPE, CONFIG = "lora_finetune_single_device", "tiny/lora"


@pytest.mark.parametrize(
    "recipe, config, override, message",
    [
        (RECIPE, CONFIG, "compil=True", "unknown key 'compil' (did you mean 'compile'?)"),
        (RECIPE, CONFIG, "optimizer.lrr=1", "optimizer.lrr: torch.optim.AdamW does not accept 'lrr' (did you mean 'lr'?)"),
        (RECIPE, CONFIG, "optimizer._component_=torch.optim.AdamX", "'torch.optim' has no 'AdamX' (did you mean 'Adam'?)"),
        (RECIPE, CONFIG, "optimizer=torch.optim.AdamX", "'torch.optim' has no 'AdamX' (did you mean 'Adam'?)"),
        (RECIPE, CONFIG, "batch_size=two", "batch_size: expected int, got 'two'"),
        (RECIPE, CONFIG, "batch_size", "bad override 'batch_size': use key=value"),
        (RECIPE, CONFIG, "optimizer..lr=1", "bad override 'optimizer..lr=1'"),
        (RECIPE, CONFIG, "~no_such_key", "cannot drop 'no_such_key'"),
        ("lora_finetune_single_devic", CONFIG, "epochs=1", "unknown recipe 'lora_finetune_single_devic' (close: lora_finetune_single_device"),
        (RECIPE, "tiny/lor", "epochs=1", "unknown config 'tiny/lor' (close: tiny/lora"),
    ],
    ids=["key", "component-keyword", "component", "component-swap", "type", "syntax", "empty-key", "drop",
         "recipe", "config"],
)
def test_config_mistake_is_one_line_exit_2_and_writes_nothing(recipe, config, override, message, tmp_path):
    out = tmp_path / "out"
    result = tune("run", recipe, "--config", config, *tiny_overrides(tmp_path / "base", out), override)
    assert result.returncode == 2, result.stderr
    assert len(result.error_lines) == 1 and result.error_lines[0].startswith("error: "), result.stderr
    assert message in result.error_lines[0], result.stderr
    assert "Model ready" not in result.stdout  # nothing was built
    assert not out.exists()

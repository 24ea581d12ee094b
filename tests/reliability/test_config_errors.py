"""A mistake on the command line or in the config: one `error:` line naming the key (and the nearest valid
one), exit 2, before any model is built and before the output directory exists."""

from __future__ import annotations

import importlib.util

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


def _blocked_output_dir(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    return tmp_path / "a_file" / "out"  # cannot be created (also as root, which ignores read-only modes)


# (id, overrides, extra environment, exit code, the error line's text). Each is refused by `tune validate`
# exactly as by `tune run`, before a model is built and before anything is written.
BAD_VALUES = [
    ("lr-not-a-number", ["optimizer.lr=abc"], {}, 2, "error: optimizer.lr: expected float, got 'abc'"),
    ("batch-size-0", ["batch_size=0"], {}, 2, "error: batch_size=0 is out of range: it must be at least 1"),
    ("epochs-0", ["epochs=0"], {}, 2, "error: epochs=0 is out of range: it must be at least 1"),
    ("dtype-fp16", ["dtype=fp16"], {}, 1, "error: dtype=fp16 is not supported for training (fp16 needs loss scaling)"),
    ("dtype-unknown", ["dtype=int8"], {}, 1, "error: dtype=int8 is not a training dtype"),
    ("lora-module", ["model.lora_attn_modules=[q_proj,vproj]"], {}, 2,
     "error: model.lora_attn_modules: unknown module 'vproj' (did you mean 'v_proj'?)"),
    ("data-file", ["dataset.data_files=/no/such/data.json"], {}, 1, "error: dataset.data_files /no/such/data.json does not exist"),
    ("val-data-file", ["dataset_val.data_files=/no/such/val.json"], {}, 1, "error: dataset_val.data_files /no/such/val.json does not exist"),
    ("tokenizer-path", ["tokenizer.path=/no/such/tokenizer.model"], {}, 1, "error: tokenizer.path /no/such/tokenizer.model does not exist"),
    ("streaming-needs-max-steps", ["dataset.streaming=True", "max_steps_per_epoch=null"], {}, 2,
     "error: dataset.streaming=True reads a stream of unknown length: set max_steps_per_epoch"),
    ("column-map-colon", ["dataset.column_map={output:instances}"], {}, 1,
     "error: dataset.column_map entry 'output:instances' is malformed (no space after the colon): write {output: instances}"),
    ("optimizer-case", ["optimizer._component_=torch.optim.Adamw"], {}, 2, "(did you mean 'AdamW'?)"),
    ("wandb-no-login", ["metric_logger._component_=torchtune_lite.training.WandBLogger"], {"WANDB_MODE": None, "WANDB_API_KEY": None}, 1,
     "error: metric_logger WandBLogger has no W&B login"),
    ("device", ["device=tpu"], {}, 1, "error: device=tpu is not supported"),
]


@pytest.mark.parametrize("overrides, env, code, message", [case[1:] for case in BAD_VALUES], ids=[case[0] for case in BAD_VALUES])
def test_validate_and_run_refuse_a_bad_value_with_the_same_line(overrides, env, code, message, hf_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc W&B login
    for name, value in env.items():
        monkeypatch.delenv(name, raising=False) if value is None else monkeypatch.setenv(name, value)
    out = tmp_path / "out"
    args = [*tiny_overrides(hf_checkpoint, out), *overrides]
    validated = tune("validate", CONFIG, *args)
    ran = tune("run", RECIPE, "--config", CONFIG, *args)
    for result in (validated, ran):
        assert result.returncode == code, result.stderr
        assert len(result.error_lines) == 1 and message in result.error_lines[0], result.stderr
    assert validated.error_lines == ran.error_lines
    assert "Model ready" not in ran.stdout and not out.exists()


def test_an_output_dir_that_cannot_be_created_is_named(hf_checkpoint, tmp_path):
    out = _blocked_output_dir(tmp_path)
    args = tiny_overrides(hf_checkpoint, out)
    validated, ran = tune("validate", CONFIG, *args), tune("run", RECIPE, "--config", CONFIG, *args)
    expected = [f"error: output_dir {out} cannot be written ({tmp_path / 'a_file'} is a file): choose a writable output_dir"]
    assert validated.error_lines == ran.error_lines == expected
    assert validated.returncode == ran.returncode == 1


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None, reason="tensorboard is installed here")
def test_tensorboard_logger_without_tensorboard_is_refused_before_the_build(hf_checkpoint, tmp_path):
    args = [*tiny_overrides(hf_checkpoint, tmp_path / "out"), "metric_logger._component_=torchtune_lite.training.TensorBoardLogger"]
    validated, ran = tune("validate", CONFIG, *args), tune("run", RECIPE, "--config", CONFIG, *args)
    assert validated.error_lines == ran.error_lines == [
        "error: metric_logger TensorBoardLogger needs the tensorboard package: pip install 'torchtune_lite[tensorboard]'"
    ]
    assert "Model ready" not in ran.stdout


@pytest.mark.parametrize("swap", ["metric_logger._component_=torchtune_lite.training.StdoutLogger",
                                  "metric_logger=torchtune_lite.training.StdoutLogger"])
def test_swapping_a_component_drops_the_keys_the_new_one_does_not_take(swap, hf_checkpoint, tmp_path):
    args = [*tiny_overrides(hf_checkpoint, tmp_path / "out"), swap]
    assert tune("validate", CONFIG, *args).stdout.strip() == "Config is well-formed!"
    # A key the user sets on the command line stays theirs: the new component not taking it is an error.
    refused = tune("validate", CONFIG, *args, "metric_logger.log_dir=/tmp/x")
    assert refused.returncode == 2
    assert refused.error_lines == ["error: metric_logger.log_dir: torchtune_lite.training.StdoutLogger does not accept 'log_dir'"]


# (id, dataset overrides, the file's rows, the error after "<file> row N: "). Checked when the data set is
# built, which comes before the model: a bad row costs seconds, not a 7B build.
BAD_DATA = [
    ("non-string", ["dataset._component_=torchtune_lite.datasets.instruct_dataset"],
     [{"instruction": "a", "output": "b"}, {"instruction": "a", "output": 3}],
     "row 2: column 'output' holds an int (3) where text is expected: store it as a string in the file"),
    ("unknown-role", ["dataset._component_=torchtune_lite.datasets.sharegpt_dataset", "~dataset.train_on_input"],
     [{"conversations": [{"from": "prompter", "value": "hi"}, {"from": "gpt", "value": "yo"}]}],
     "row 1: column 'conversations' turn 0: unknown role 'prompter'"),
    ("empty-conversation", ["dataset._component_=torchtune_lite.datasets.chat_dataset", "~dataset.train_on_input"],
     [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}, {"messages": []}],
     "row 2: column 'messages' is an empty conversation: remove the row"),
]


@pytest.mark.parametrize("overrides, rows, message", [case[1:] for case in BAD_DATA], ids=[case[0] for case in BAD_DATA])
def test_a_bad_row_is_one_line_naming_file_row_and_key_before_the_build(overrides, rows, message, hf_checkpoint, tmp_path):
    import json

    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    out = tmp_path / "out"
    ran = tune("run", RECIPE, "--config", CONFIG, *tiny_overrides(hf_checkpoint, out), *overrides,
               f"dataset.data_files={data}", "dataset_val=null", "run_val_every_n_steps=null")
    assert ran.returncode == 1, ran.stderr
    assert message in ran.error_lines[0], ran.stderr
    assert len(ran.error_lines) == 1 and ran.error_lines[0].startswith(f"error: {data} row ")
    assert "Model ready" not in ran.stdout
    assert not out.exists() or not any(out.iterdir())  # at most the empty folder the run made: nothing written

"""Config loading, overrides, `_component_` instantiation and validation (torchtune_lite/config)."""

import textwrap
import types
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Optional

import pytest
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from torchtune_lite.config import (
    Component,
    ConfigError,
    apply_overrides,
    import_component,
    instantiate,
    list_configs,
    load_config,
    resolve_config,
    validate,
)
from torchtune_lite.config import _load

PACKAGE = Path(__file__).resolve().parents[3] / "torchtune_lite"


def write_yaml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def toy_yaml(tmp_path: Path) -> Path:
    return write_yaml(
        tmp_path / "toy.yaml",
        """
        output_dir: /tmp/run
        batch_size: 2
        optimizer:
          _component_: torch.optim.AdamW
          lr: 3e-4
          weight_decay: 0.01
        checkpointer:
          output_dir: ${output_dir}
        logger:
          log_dir: ${output_dir}/logs
        tags: [a, b]
        """,
    )


# ---------------------------------------------------------------- resolution
class TestResolveConfig:
    def test_shipped_configs_listed(self):
        names = list_configs()
        assert "llama2/7B_qlora" in names and "tiny/lora" in names
        assert names == sorted(names)

    def test_short_name(self):
        path = resolve_config("7B_qlora")
        assert path.name == "7B_qlora.yaml" and path.parent.name == "llama2" and path.is_file()

    def test_short_name_with_yaml_suffix(self):
        assert resolve_config("7B_qlora.yaml") == resolve_config("llama2/7B_qlora")

    def test_family_path(self):
        path = resolve_config("tiny/lora")
        assert path.is_file() and path.parent.name == "tiny" and path.name == "lora.yaml"

    def test_file_path(self, toy_yaml: Path):
        assert resolve_config(str(toy_yaml)) == toy_yaml

    def test_missing_file_path(self, tmp_path: Path):
        with pytest.raises(ConfigError, match="does not exist"):
            resolve_config(str(tmp_path / "nope.yaml"))

    def test_unknown_name_suggests(self):
        with pytest.raises(ConfigError, match=r"unknown config '7B_qlor'.*7B_qlora"):
            resolve_config("7B_qlor")

    def test_unknown_name_without_close_match_points_to_ls(self):
        with pytest.raises(ConfigError, match="tune ls"):
            resolve_config("zzzzzzzz")

    def test_ambiguous_short_name(self, tmp_path: Path, monkeypatch):
        for family in ("alpha", "beta"):
            write_yaml(tmp_path / family / "lora.yaml", "a: 1\n")
        write_yaml(tmp_path / "alpha" / "only.yaml", "a: 2\n")
        monkeypatch.setattr(_load, "configs_root", lambda: tmp_path)
        with pytest.raises(ConfigError, match=r"ambiguous.*alpha/lora.*beta/lora"):
            resolve_config("lora")
        assert resolve_config("beta/lora") == tmp_path / "beta" / "lora.yaml"
        assert resolve_config("only") == tmp_path / "alpha" / "only.yaml"

    def test_load_shipped_config_resolves_interpolations(self):
        cfg = load_config("7B_qlora")
        assert cfg.checkpointer.output_dir == cfg.output_dir
        assert cfg.metric_logger.log_dir == f"{cfg.output_dir}/logs"
        assert cfg.optimizer.lr == pytest.approx(3e-4)  # YAML `3e-4` is a float, not a string

    def test_asset_resolver(self):
        cfg = load_config("tiny/lora")
        assert Path(cfg.tokenizer.path) == PACKAGE / "assets" / "tiny" / "tokenizer.model"
        assert Path(cfg.tokenizer.path).is_file()

    def test_asset_resolver_in_override(self, toy_yaml: Path):
        cfg = load_config(str(toy_yaml), ["output_dir=${asset:tiny/base}"])
        assert Path(cfg.output_dir) == PACKAGE / "assets" / "tiny" / "base"
        assert cfg.checkpointer.output_dir == cfg.output_dir

    def test_invalid_yaml(self, tmp_path: Path):
        bad = write_yaml(tmp_path / "bad.yaml", "a: [1, 2\nb: 3\n")
        with pytest.raises(ConfigError, match="not valid YAML"):
            load_config(str(bad))

    def test_non_mapping_yaml(self, tmp_path: Path):
        bad = write_yaml(tmp_path / "list.yaml", "- 1\n- 2\n")
        with pytest.raises(ConfigError, match="must be a mapping"):
            load_config(str(bad))

    def test_missing_value(self, tmp_path: Path):
        path = write_yaml(tmp_path / "m.yaml", "a: 1\nb: ???\n")
        with pytest.raises(ConfigError, match=r"needs a value for b: pass it as b=\.\.\."):
            load_config(str(path))
        assert load_config(str(path), ["b=2"]).b == 2

    def test_bad_interpolation(self, tmp_path: Path):
        path = write_yaml(tmp_path / "i.yaml", "a: ${nope}\n")
        with pytest.raises(ConfigError, match="nope"):
            load_config(str(path))


# ---------------------------------------------------------------- overrides
class TestOverrides:
    def test_scalars_are_typed(self, toy_yaml: Path):
        cfg = load_config(str(toy_yaml), ["batch_size=8", "optimizer.lr=1e-4", "new_flag=True", "name=null"])
        assert cfg.batch_size == 8 and isinstance(cfg.batch_size, int)
        assert cfg.optimizer.lr == pytest.approx(1e-4) and isinstance(cfg.optimizer.lr, float)
        assert cfg.new_flag is True
        assert cfg.name is None

    def test_nested_new_key(self, toy_yaml: Path):
        cfg = load_config(str(toy_yaml), ["optimizer.betas=[0.8,0.9]", "a.b.c=3"])
        assert list(cfg.optimizer.betas) == [0.8, 0.9]
        assert cfg.a.b.c == 3

    def test_list_value(self, toy_yaml: Path):
        cfg = load_config(str(toy_yaml), ["tags=[x,y,z]"])
        assert list(cfg.tags) == ["x", "y", "z"]

    def test_value_containing_equals(self, toy_yaml: Path):
        assert load_config(str(toy_yaml), ["url=http://h?a=1"]).url == "http://h?a=1"

    def test_empty_value_is_empty_string(self, toy_yaml: Path):
        assert load_config(str(toy_yaml), ["output_dir="]).output_dir == ""

    def test_drop_key(self, toy_yaml: Path):
        cfg = load_config(str(toy_yaml), ["~batch_size", "~optimizer.weight_decay"])
        assert "batch_size" not in cfg
        assert "weight_decay" not in cfg.optimizer and cfg.optimizer.lr == pytest.approx(3e-4)

    @pytest.mark.parametrize("token", ["~nope", "~optimizer.nope", "~nope.deeper", "~"])
    def test_drop_missing_key(self, toy_yaml: Path, token: str):
        with pytest.raises(ConfigError, match=r"cannot drop .*no such key"):
            load_config(str(toy_yaml), [token])

    def test_drop_then_readd(self, toy_yaml: Path):
        cfg = load_config(str(toy_yaml), ["~optimizer", "optimizer.lr=1"])
        assert dict(cfg.optimizer) == {"lr": 1}

    def test_component_swap_keeps_kwargs(self, toy_yaml: Path):
        cfg = load_config(str(toy_yaml), ["optimizer=torch.optim.SGD", "optimizer.momentum=0.9"])
        assert cfg.optimizer._component_ == "torch.optim.SGD"
        assert cfg.optimizer.lr == pytest.approx(3e-4) and cfg.optimizer.momentum == pytest.approx(0.9)

    def test_interpolation_follows_override(self, toy_yaml: Path):
        cfg = load_config(str(toy_yaml), ["output_dir=/other"])
        assert cfg.checkpointer.output_dir == "/other"
        assert cfg.logger.log_dir == "/other/logs"

    def test_interpolation_in_override_value(self, toy_yaml: Path):
        cfg = load_config(str(toy_yaml), ["checkpointer.output_dir=${output_dir}/ckpt"])
        assert cfg.checkpointer.output_dir == "/tmp/run/ckpt"

    def test_override_next_to_dropped_interpolation_target(self, toy_yaml: Path):
        # logger.log_dir points at output_dir; overriding it after dropping output_dir must not trip over it
        cfg = load_config(str(toy_yaml), ["~output_dir", "~checkpointer", "logger.log_dir=/x"])
        assert cfg.logger.log_dir == "/x"

    def test_interpolation_to_dropped_key_fails(self, toy_yaml: Path):
        with pytest.raises(ConfigError, match="output_dir"):
            load_config(str(toy_yaml), ["~output_dir"])

    @pytest.mark.parametrize("token", ["batch_size", "=3", "a b=1", ""])
    def test_bad_syntax(self, toy_yaml: Path, token: str):
        with pytest.raises(ConfigError, match=r"bad override .*key=value"):
            load_config(str(toy_yaml), [token])


    def test_apply_overrides_in_place_without_resolving(self):
        cfg = OmegaConf.create({"a": 1, "b": "${a}"})
        out = apply_overrides(cfg, ["a=2"])
        assert out is cfg and cfg.b == 2
        assert OmegaConf.to_container(cfg, resolve=False)["b"] == "${a}"


# ---------------------------------------------------------------- instantiate
class TestInstantiate:
    def test_adamw_with_params_and_kwargs(self, toy_yaml: Path):
        cfg = load_config(str(toy_yaml))
        model = torch.nn.Linear(2, 2)
        opt = instantiate(cfg.optimizer, model.parameters())
        assert isinstance(opt, torch.optim.AdamW)
        group = opt.param_groups[0]
        assert group["lr"] == pytest.approx(3e-4) and group["weight_decay"] == pytest.approx(0.01)
        assert {id(p) for p in group["params"]} == {id(p) for p in model.parameters()}
        opt2 = instantiate(cfg.optimizer, model.parameters(), lr=0.5)  # call-site kwargs win
        assert opt2.param_groups[0]["lr"] == 0.5

    def test_nested_components_lists_and_plain_nodes(self):
        node = OmegaConf.create(
            {
                "_component_": "types.SimpleNamespace",
                "wrapper": {"_component_": "textwrap.TextWrapper", "width": 5},
                "items": [{"_component_": "fractions.Fraction", "numerator": 1, "denominator": 3}, 2],
                "plain": {"a": 1, "b": [1, 2]},
            }
        )
        out = instantiate(node)
        assert isinstance(out, types.SimpleNamespace)
        assert isinstance(out.wrapper, textwrap.TextWrapper) and out.wrapper.width == 5
        assert out.items == [Fraction(1, 3), 2]
        assert out.plain == {"a": 1, "b": [1, 2]} and type(out.plain) is dict and type(out.plain["b"]) is list

    def test_plain_dict(self):
        lin = instantiate({"_component_": "torch.nn.Linear", "in_features": 3, "out_features": 4, "bias": False})
        assert isinstance(lin, torch.nn.Linear) and lin.weight.shape == (4, 3) and lin.bias is None

    def test_no_component(self):
        with pytest.raises(ConfigError, match="no _component_"):
            instantiate(OmegaConf.create({"lr": 1}))

    def test_none(self):
        with pytest.raises(ConfigError, match="empty"):
            instantiate(None)

    def test_bad_path_suggests(self):
        with pytest.raises(ConfigError, match=r"'torch.optim' has no 'AdamWW' \(did you mean 'AdamW'\?\)"):
            instantiate(OmegaConf.create({"_component_": "torch.optim.AdamWW"}))

    def test_import_component(self):
        assert import_component("torch.optim.AdamW") is torch.optim.AdamW
        assert import_component("torch.nn.Linear.forward") is torch.nn.Linear.forward  # class attribute
        with pytest.raises(ConfigError, match=r"cannot import 'torchh.optim.AdamW' \(no module 'torchh"):
            import_component("torchh.optim.AdamW")
        with pytest.raises(ConfigError, match="not a dotted path"):
            import_component("AdamW")


# ---------------------------------------------------------------- validate
@dataclass
class Schema:
    optimizer: Component
    output_dir: str
    batch_size: int = 2
    lr_scale: float = 1.0
    compile: bool = False
    seed: Optional[int] = None
    clip: Optional[float] = None
    loss: Optional[Component] = None
    tags: list[str] = field(default_factory=lambda: ["t"])


def schema_cfg(*overrides: str) -> DictConfig:
    cfg = OmegaConf.create(
        {"optimizer": {"_component_": "torch.optim.AdamW", "lr": 1e-3}, "output_dir": "/tmp/x", "batch_size": 4}
    )
    return apply_overrides(cfg, list(overrides))


class TestValidate:
    def test_ok_and_defaults_filled(self):
        cfg = schema_cfg()
        out = validate(cfg, Schema)
        assert out.batch_size == 4 and out.output_dir == "/tmp/x"
        assert out.lr_scale == 1.0 and out.compile is False and out.seed is None and out.loss is None
        assert list(out.tags) == ["t"]
        assert "lr_scale" not in cfg  # the input is left alone

    def test_resolves_interpolations(self):
        cfg = schema_cfg("output_dir=${optimizer._component_}")
        assert validate(cfg, Schema).output_dir == "torch.optim.AdamW"

    @pytest.mark.parametrize(
        "override, key, expected",
        [("lr_scale=2", "lr_scale", 2), ("seed=3", "seed", 3), ("seed=null", "seed", None), ("clip=0.5", "clip", 0.5),
         ("clip=1", "clip", 1), ("compile=True", "compile", True), ("tags=[a,b]", "tags", ["a", "b"]),
         ("loss={_component_: torch.nn.CrossEntropyLoss, ignore_index: -1}", "loss.ignore_index", -1)],
    )
    def test_accepted_values(self, override: str, key: str, expected):
        out = validate(schema_cfg(override), Schema)
        value = OmegaConf.select(out, key)
        assert (OmegaConf.to_container(value) if isinstance(value, ListConfig) else value) == expected

    def test_unknown_key_suggests(self):
        with pytest.raises(ConfigError, match=r"unknown key 'compil' \(did you mean 'compile'\?\)"):
            validate(schema_cfg("compil=True"), Schema)

    def test_unknown_key_without_close_match(self):
        with pytest.raises(ConfigError, match=r"unknown key 'zzz': remove it"):
            validate(schema_cfg("zzz=1"), Schema)

    def test_missing_required_key(self):
        with pytest.raises(ConfigError, match=r"missing required key 'output_dir'.*output_dir=\.\.\."):
            validate(schema_cfg("~output_dir"), Schema)

    @pytest.mark.parametrize(
        "override, message",
        [
            ("batch_size=two", r"batch_size: expected int, got 'two'"),
            ("batch_size=2.5", r"batch_size: expected int, got 2.5"),
            ("batch_size=True", r"batch_size: expected int, got True"),
            ("lr_scale=fast", r"lr_scale: expected float, got 'fast'"),
            ("lr_scale=False", r"lr_scale: expected float, got False"),
            ("compile=1", r"compile: expected bool, got 1"),
            ("compile=yes please", r"compile: expected bool, got 'yes please'"),
            ("seed=abc", r"seed: expected int, got 'abc'"),
            ("seed=1.5", r"seed: expected int, got 1.5"),
            ("clip=big", r"clip: expected float, got 'big'"),
            ("output_dir=3", r"output_dir: expected str, got 3"),
            ("tags=x", r"tags: expected a list, got 'x'"),
            ("optimizer=null", r"optimizer: expected a node with _component_"),
            ("loss=5", r"loss: expected a node with _component_"),
        ],
    )
    def test_wrong_types(self, override: str, message: str):
        with pytest.raises(ConfigError, match=message):
            validate(schema_cfg(override), Schema)

    def test_override_below_a_scalar_is_caught(self):
        # OmegaConf turns `batch_size.x=1` into batch_size: {x: 1}; the schema check must reject that
        with pytest.raises(ConfigError, match=r"batch_size: expected int, got \{'x': 1\}"):
            validate(schema_cfg("batch_size.x=1"), Schema)

    def test_bad_component_path_suggests(self):
        with pytest.raises(ConfigError, match=r"optimizer._component_: 'torch.optim' has no 'AdamWW' \(did you mean 'AdamW'\?\)"):
            validate(schema_cfg("optimizer=torch.optim.AdamWW"), Schema)

    def test_bad_component_kwarg_suggests(self):
        with pytest.raises(ConfigError, match=r"optimizer.lrr: torch.optim.AdamW does not accept 'lrr' \(did you mean 'lr'\?\)"):
            validate(schema_cfg("optimizer.lrr=1"), Schema)

    def test_bad_kwarg_in_optional_component(self):
        cfg = schema_cfg("loss={_component_: torch.nn.CrossEntropyLoss, ignore_indx: -1}")
        with pytest.raises(ConfigError, match=r"loss.ignore_indx: .*did you mean 'ignore_index'"):
            validate(cfg, Schema)

    def test_nested_component_kwargs_checked(self):
        cfg = OmegaConf.create(
            {"optimizer": {"_component_": "types.SimpleNamespace",  # **kwargs: any key is fine at this level
                           "inner": [{"_component_": "textwrap.TextWrapper", "widht": 3}]},
             "output_dir": "o"}
        )
        with pytest.raises(ConfigError, match=r"optimizer.inner\[0\].widht: .*did you mean 'width'"):
            validate(cfg, Schema)

    def test_errors_are_one_line_value_errors(self):
        with pytest.raises(ValueError) as info:
            validate(schema_cfg("optimizer.lrr=1"), Schema)
        assert "\n" not in str(info.value)


def test_a_name_that_lives_in_another_package_is_pointed_to():
    # configs written before the checkpointers moved from `training` to `checkpointing`
    with pytest.raises(ConfigError, match=r"'torchtune_lite.training' has no 'FullModelHFCheckpointer' \(moved\): use "
                                          r"'torchtune_lite.checkpointing.FullModelHFCheckpointer'$"):
        import_component("torchtune_lite.training.FullModelHFCheckpointer")

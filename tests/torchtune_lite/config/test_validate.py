"""Type checks in `validate` beyond test_config.py: Literal, typed lists/tuples/mappings, components
nested in plain mappings, **kwargs callables, and schemas that are not dataclasses."""

from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest
from omegaconf import OmegaConf

from torchtune_lite.config import Component, ConfigError, validate


@dataclass
class Typed:
    dtype: Literal["fp32", "bf16"] = "bf16"
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    pair: tuple[int, str] = (1, "a")
    scales: dict[str, float] = field(default_factory=dict)
    callbacks: list[Component] = field(default_factory=list)
    maybe: Optional[list[int]] = None
    extra: Optional[Component] = None


def _validate(**values):
    return validate(OmegaConf.create(values), Typed)


def test_accepts_well_typed_values_and_fills_defaults():
    cfg = _validate(dtype="fp32", sizes=[3], pair=[2, "b"], scales={"a": 1, "b": 0.5}, maybe=[4],
                    callbacks=[{"_component_": "torch.nn.Linear", "in_features": 2, "out_features": 3}])
    assert cfg.dtype == "fp32" and cfg.pair == [2, "b"] and cfg.extra is None
    assert _validate().sizes == [1, 2]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"dtype": "fp16"}, "dtype: expected one of 'fp32', 'bf16', got 'fp16'"),
        ({"sizes": [1, "x"]}, "sizes[1]: expected int, got 'x'"),
        ({"sizes": 3}, "sizes: expected a list, got 3"),
        ({"pair": [1]}, "pair: expected a list of 2 items"),
        ({"pair": [1, 2]}, "pair[1]: expected str, got 2"),
        ({"scales": {"a": "big"}}, "scales.a: expected float, got 'big'"),
        ({"maybe": [True]}, "maybe[0]: expected int, got True"),
        ({"callbacks": [{"_component_": "torch.nn.Linear", "in_feature": 2}]},
         "callbacks[0].in_feature: torch.nn.Linear does not accept 'in_feature' (did you mean 'in_features'?)"),
        ({"callbacks": [{"lr": 1}]}, "callbacks[0]: expected a node with _component_"),
    ],
)
def test_rejects_mistyped_values(values, message):
    with pytest.raises(ConfigError) as err:
        _validate(**values)
    assert str(err.value).startswith(message), str(err.value)


def test_components_inside_plain_mappings_are_checked():
    node = {"_component_": "builtins.dict", "by_name": {"head": {"_component_": "torch.nn.Linear", "bias_": True}}}
    with pytest.raises(ConfigError, match=r"^extra\.by_name\.head\.bias_: torch\.nn\.Linear does not accept 'bias_'"):
        _validate(extra=node)


def test_callables_taking_kwargs_accept_any_key():
    # logging.basicConfig(**kwargs): nothing to check the keys against
    assert _validate(extra={"_component_": "logging.basicConfig", "anything": 1}).extra.anything == 1


def test_schema_must_be_a_dataclass():
    with pytest.raises(TypeError, match="dataclass"):
        validate(OmegaConf.create({}), dict)

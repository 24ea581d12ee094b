"""Checking a config against a recipe's settings dataclass before anything heavy runs.

torchtune silently ignored keys nobody read; here a typo'd key, a keyword the component does not accept,
or a value of the wrong type stops the run with one line naming it and the closest valid name.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Sequence
from typing import Any, Literal, NewType, Union

try:  # `int | None` annotations (Python 3.10+)
    from types import UnionType
except ImportError:  # pragma: no cover
    UnionType = None

from omegaconf import DictConfig, ListConfig, OmegaConf

from torchtune_lite.config._errors import ConfigError, did_you_mean
from torchtune_lite.config._instantiate import import_component
from torchtune_lite.config._signature import accepted_keywords

Component = NewType("Component", DictConfig)
"""A config node with a `_component_` key, in a recipe's settings dataclass."""

_MISSING = dataclasses.MISSING


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _check_value(key: str, value: Any, tp: Any) -> None:
    """Raises ConfigError if `value` does not fit the type hint `tp` (scalars, Optional, Union, Literal,
    list/tuple/dict of those, Component)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return
    if tp is Component:
        _check_component(key, value)
        return
    if origin is Union or (UnionType is not None and origin is UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                _check_value(key, value, option)
                return
            except ConfigError as err:
                errors.append(err)
        raise errors[0]
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
        return
    if origin in (list, tuple) or tp in (list, tuple):
        # Sequence covers ListConfig and omegaconf 2.4's TupleConfig (what a tuple default becomes)
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:  # fixed-length tuple[int, str]
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected a list of {len(args)} items, got {value!r}")
            item_types = list(args)
        else:  # list[int], tuple[int, ...]
            item_types = [args[0] if args else Any] * len(value)
        for i, (item, item_type) in enumerate(zip(value, item_types)):
            _check_value(f"{key}[{i}]", item, item_type)
        return
    if origin is dict or tp is dict:
        if not isinstance(value, (dict, DictConfig)):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        args = typing.get_args(tp)
        for k, item in (value.items() if args else ()):
            _check_value(f"{key}.{k}", item, args[1])
        return
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
    }.get(tp)
    if ok is not None and not ok(value):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")


_SCALARS = (bool, int, float, str)


def _keyword_types(target: Any) -> dict[str, Any]:
    """Type hints of `target`'s keywords (its `__init__`'s for a class); {} where they cannot be read."""
    try:
        return typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    except Exception:  # string annotations naming what is not importable, partials, builtins: no hints
        return {}


def _check_keyword_type(key: str, value: Any, hint: Any) -> None:
    """A scalar from the config must fit a keyword hinted with scalars (`lr: float | Tensor` refuses 'abc'
    before the optimizer would raise a TypeError deep inside). Hints naming other types are not checked:
    a config may legitimately pass a string a function converts."""
    import torch  # here, not at the top: `tune ls`, `cat` and `cp` read configs without paying torch's import

    options = typing.get_args(hint) if typing.get_origin(hint) in (Union, UnionType) else (hint,)
    if not isinstance(value, _SCALARS) or any(o not in (*_SCALARS, type(None), torch.Tensor) for o in options):
        return
    scalars = [o for o in options if o in _SCALARS]
    if scalars and not any(_fits(value, o) for o in scalars):
        raise ConfigError(f"{key}: expected {' or '.join(_type_name(o) for o in scalars)}, got {value!r}")


def _fits(value: Any, tp: type) -> bool:
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _check_component(key: str, node: Any) -> None:
    if not isinstance(node, DictConfig) or "_component_" not in node:
        raise ConfigError(f"{key}: expected a node with _component_, got {node!r}")
    target = import_component(node._component_, where=f"{key}._component_")
    accepted, var_kw = accepted_keywords(target)
    hints = _keyword_types(target)
    for arg, value in node.items():
        if arg == "_component_":
            continue
        if not var_kw and arg not in accepted:
            raise ConfigError(
                f"{key}.{arg}: {node._component_} does not accept '{arg}'{did_you_mean(arg, accepted)}"
            )
        if arg in hints and value is not None:
            _check_keyword_type(f"{key}.{arg}", value, hints[arg])
        _check_nested(f"{key}.{arg}", value)


def _check_nested(key: str, value: Any) -> None:
    """Components can sit anywhere inside a component's arguments: directly, in lists, or in mappings."""
    if isinstance(value, DictConfig) and "_component_" in value:
        _check_component(key, value)
    elif isinstance(value, DictConfig):
        for k, item in value.items():
            _check_nested(f"{key}.{k}", item)
    elif isinstance(value, ListConfig):
        for i, item in enumerate(value):
            _check_nested(f"{key}[{i}]", item)


def validate(cfg: DictConfig, schema: type) -> DictConfig:
    """Raises ConfigError for unknown, missing or mistyped keys and bad components, then runs the schema's
    `check_values(cfg)` if it has one; returns `cfg` with the schema's defaults filled in for keys it omits."""
    if not dataclasses.is_dataclass(schema):
        raise TypeError(f"validate: schema must be a dataclass type, got {schema!r}")
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    for key in cfg:
        if key not in fields:
            raise ConfigError(f"unknown key '{key}'{did_you_mean(str(key), fields)}: remove it or fix the name")
    filled = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    for name, field in fields.items():
        if name not in filled:
            if field.default is _MISSING and field.default_factory is _MISSING:
                raise ConfigError(f"missing required key '{name}': add it to the config or pass {name}=...")
            filled[name] = field.default if field.default is not _MISSING else field.default_factory()
        _check_value(name, filled[name], hints[name])
    # What types cannot say (ranges, files that must exist, a logger's dependencies) the schema checks
    # itself; `tune validate` and the run both get here, so they refuse the same configs the same way.
    check_values = getattr(schema, "check_values", None)
    if check_values is not None:
        check_values(filled)
    return filled


def as_settings(cfg: DictConfig, schema: type) -> Any:
    """A config `validate` passed, as an instance of its settings dataclass: typed attributes for the recipe's
    own settings; component sections (`model`, `optimizer`, ...) stay config nodes for `instantiate`."""
    return schema(**{f.name: cfg[f.name] for f in dataclasses.fields(schema)})


def as_config(settings: Any) -> DictConfig:
    """The settings dataclass instance back as a config (what metric loggers record and `tune estimate` reads)."""
    return OmegaConf.create({f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)})

"""`_component_` instantiation: a config node names a callable and its keyword arguments."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Any, Callable

from omegaconf import DictConfig, ListConfig, OmegaConf

from torchtune_lite.config._errors import ConfigError, did_you_mean


def _names_in(module: ModuleType) -> list[str]:
    """Public attributes and submodules of `module`: the candidates for a "did you mean"."""
    names = {name for name in dir(module) if not name.startswith("_")}
    if hasattr(module, "__path__"):
        names |= {info.name for info in pkgutil.iter_modules(module.__path__) if not info.name.startswith("_")}
    return sorted(names)


_PACKAGE = __name__.split(".")[0]


def _home_elsewhere(name: str) -> str | None:
    """`torchtune_lite.<package>.<name>` when one of the library's public packages exports `name` (a config
    written before a class moved, e.g. the checkpointers out of `training`)."""
    root = importlib.import_module(_PACKAGE)
    for info in pkgutil.iter_modules(root.__path__):
        if info.ispkg and not info.name.startswith("_"):
            package = importlib.import_module(f"{_PACKAGE}.{info.name}")
            if name in getattr(package, "__all__", ()):
                return f"{_PACKAGE}.{info.name}.{name}"
    return None


def import_component(path: str, where: str = "_component_") -> Callable:
    """`torch.optim.AdamW` -> the class. Errors name the path and suggest a close name in its module.

    The longest importable prefix is the module; the rest are attributes (so `pkg.mod.Class.method` works).
    """
    parts = str(path).split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"{where}: '{path}' is not a dotted path such as torch.optim.AdamW")
    module, n_module = None, 0
    for n in range(len(parts) - 1, 0, -1):
        name = ".".join(parts[:n])
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            # a module that exists but imports a missing dependency is a real failure, not a typo
            if err.name and not (name == err.name or name.startswith(err.name + ".")):
                raise ConfigError(f"{where}: importing '{name}' failed: {err}") from None
            continue
        n_module = n
        break
    if module is None:
        raise ConfigError(f"{where}: cannot import '{path}' (no module '{parts[0]}')")
    target: Any = module
    for i in range(n_module, len(parts)):
        if not hasattr(target, parts[i]):
            owner = ".".join(parts[:i])
            candidates = _names_in(target) if isinstance(target, ModuleType) else dir(target)
            hint = _home_elsewhere(parts[i]) if owner.split(".")[0] == _PACKAGE else None
            hint = f" (moved): use '{hint}'" if hint else did_you_mean(parts[i], candidates)
            raise ConfigError(f"{where}: '{owner}' has no '{parts[i]}'{hint}")
        target = getattr(target, parts[i])
    if not callable(target):
        raise ConfigError(f"{where}: '{path}' is not callable; name a function or class")
    return target


def _build(value: Any) -> Any:
    if isinstance(value, DictConfig):
        if "_component_" in value:
            return instantiate(value)
        return {k: _build(v) for k, v in value.items()}
    if isinstance(value, ListConfig):
        return [_build(v) for v in value]
    return value


def instantiate(node: DictConfig, *args: Any, **kwargs: Any) -> Any:
    """Calls `node._component_` with the node's other keys (nested components built first) plus
    `args`/`kwargs`; e.g. `instantiate(cfg.optimizer, model.parameters())`."""
    if node is None:
        raise ConfigError("cannot instantiate an empty config node")
    if not isinstance(node, DictConfig):
        node = OmegaConf.create(node)
    if "_component_" not in node:
        raise ConfigError(f"config node {list(node.keys())} has no _component_")
    target = import_component(node._component_)
    params = {k: _build(v) for k, v in node.items() if k != "_component_"}
    return target(*args, **{**params, **kwargs})

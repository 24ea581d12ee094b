"""`_component_` instantiation: a config node names a callable and its keyword arguments."""

from __future__ import annotations

import importlib
from typing import Any, Callable

from omegaconf import DictConfig, ListConfig, OmegaConf

from torchtune_lite.config._errors import ConfigError, did_you_mean


def import_component(path: str, where: str = "_component_") -> Callable:
    """`torch.optim.AdamW` -> the class. Errors name the path and suggest a close name in its module."""
    module_name, _, attr = str(path).rpartition(".")
    if not module_name:
        raise ConfigError(f"{where}: '{path}' is not a dotted path such as torch.optim.AdamW")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        # maybe a class attribute path (pkg.mod.Class.method)
        try:
            return getattr(import_component(module_name, where), attr)
        except (ConfigError, AttributeError):
            raise ConfigError(f"{where}: cannot import '{path}' (no module '{module_name}')") from None
    if not hasattr(module, attr):
        public = [name for name in dir(module) if not name.startswith("_")]
        raise ConfigError(f"{where}: '{module_name}' has no '{attr}'{did_you_mean(attr, public)}")
    return getattr(module, attr)


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

"""Finding configs by name and applying command-line overrides."""

from __future__ import annotations

import difflib
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from torchtune_lite.config._errors import ConfigError
from torchtune_lite.config._instantiate import import_component
from torchtune_lite.config._signature import accepted_keywords

_ASSETS = Path(str(files("torchtune_lite"))) / "assets"


def _asset(relative: str) -> str:
    return str(_ASSETS / relative)


if not OmegaConf.has_resolver("asset"):
    # ${asset:tiny/tokenizer.model} -> a file shipped inside the package
    # omegaconf renamed register_new_resolver to register_resolver (the old name now warns)
    _register = getattr(OmegaConf, "register_resolver", None) or OmegaConf.register_new_resolver
    _register("asset", _asset)


def configs_root() -> Path:
    return Path(str(files("torchtune_lite.configs")))


def list_configs() -> list[str]:
    """Family paths of the shipped configs, e.g. `llama2/7B_qlora`."""
    root = configs_root()
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def resolve_config(name_or_path: str) -> Path:
    """A file path, a family path (`llama2/7B_qlora`) or a short name (`7B_qlora`) that is unique or Llama-2's."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    known = list_configs()
    name = name_or_path.removesuffix(".yaml")
    if name in known:
        return configs_root() / f"{name}.yaml"
    matches = [c for c in known if c.split("/")[-1] == name]
    if len(matches) == 1:
        return configs_root() / f"{matches[0]}.yaml"
    if len(matches) > 1 and f"llama2/{name}" in matches:
        # the short names came when Llama-2 was the only family: they keep meaning it
        return configs_root() / f"llama2/{name}.yaml"
    if len(matches) > 1:
        raise ConfigError(f"config '{name_or_path}' is ambiguous: use one of {', '.join(matches)}")
    if path.suffix in (".yaml", ".yml"):
        raise ConfigError(f"config file {path} does not exist")
    close = difflib.get_close_matches(name, known + [c.split("/")[-1] for c in known], n=3, cutoff=0.5)
    hint = f" (close: {', '.join(close)})" if close else " (see `tune ls`)"
    raise ConfigError(f"unknown config '{name_or_path}'{hint}")


def _parse_value(text: str):
    # OmegaConf's YAML loader, not yaml.safe_load: plain YAML 1.1 reads `1e-4` as a string, so
    # `optimizer.lr=1e-4` would reach the optimizer as text.
    if text == "":
        return ""
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist([f"value={text}"]), resolve=False)["value"]
    except yaml.YAMLError:
        return text


def apply_overrides(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """`key=value`, `a.b=c`, `a=[x,y]`, `~key` (drop), `model=pkg.fn` or `model._component_=pkg.fn` (swap a
    component: the old component's keys the new one does not accept are dropped, unless set on the command
    line, which stays an error for `validate` to report)."""
    explicit: set[str] = set()
    for token in overrides:
        if token.startswith("~"):
            key = token[1:]
            parent_key, _, leaf = key.rpartition(".")
            parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
            if not key or not isinstance(parent, DictConfig) or leaf not in parent:
                raise ConfigError(f"cannot drop '{key}': no such key in the config")
            del parent[leaf]
            continue
        key, sep, raw = token.partition("=")
        if not sep or not all(key.split(".")) or any(c.isspace() for c in key):
            raise ConfigError(f"bad override '{token}': use key=value, a.b=value or ~key")
        value = _parse_value(raw)
        current = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
        if isinstance(current, DictConfig) and "_component_" in current and isinstance(value, str):
            _swap_component(current, value, key, explicit)
            continue
        parent_key, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key, default=None, throw_on_resolution_failure=False) if parent_key else None
        if leaf == "_component_" and isinstance(parent, DictConfig) and "_component_" in parent and isinstance(value, str):
            _swap_component(parent, value, parent_key, explicit)
            continue
        try:
            OmegaConf.update(cfg, key, value, merge=False, force_add=True)
        except OmegaConfBaseException as err:
            raise ConfigError(f"bad override '{token}': {str(err).splitlines()[0]}") from None
        explicit.add(key)
    return cfg


def _swap_component(node: DictConfig, component: str, key: str, explicit: set[str]) -> None:
    """Points `node` at `component` and drops the keys the config gave the old one that the new one does
    not accept (`metric_logger=...StdoutLogger` drops DiskLogger's `log_dir`)."""
    node["_component_"] = component
    try:
        accepted, var_kw = accepted_keywords(import_component(component))
    except ConfigError:
        return  # an unknown component: validate reports it with a suggestion
    if var_kw:
        return
    for arg in [k for k in node if k != "_component_" and k not in accepted]:
        if f"{key}.{arg}" not in explicit:
            del node[arg]


def load_config(name_or_path: str, overrides: list[str] | None = None) -> DictConfig:
    """Loads, applies overrides and resolves `${...}` interpolations."""
    path = resolve_config(name_or_path)
    try:
        cfg = OmegaConf.load(path)
    except (yaml.YAMLError, OmegaConfBaseException) as err:
        raise ConfigError(f"config {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"config {path} must be a mapping of keys to values")
    cfg = apply_overrides(cfg, list(overrides or []))
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as err:
        raise ConfigError(f"config {path}: {str(err).splitlines()[0]}") from None
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"config {path} needs a value for {', '.join(missing)}: pass it as {missing[0]}=...")
    return cfg

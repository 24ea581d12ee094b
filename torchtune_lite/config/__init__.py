"""Configs: OmegaConf YAML with `_component_` instantiation, command-line overrides, and validation."""

from torchtune_lite.config._errors import ConfigError
from torchtune_lite.config._instantiate import import_component, instantiate
from torchtune_lite.config._load import apply_overrides, list_configs, load_config, resolve_config
from torchtune_lite.config._parse import parse, run_reporting_errors
from torchtune_lite.config._validate import Component, as_config, as_settings, validate

__all__ = [
    "Component",
    "ConfigError",
    "apply_overrides",
    "as_config",
    "as_settings",
    "import_component",
    "instantiate",
    "list_configs",
    "load_config",
    "parse",
    "resolve_config",
    "run_reporting_errors",
    "validate",
]

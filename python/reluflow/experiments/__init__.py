"""Experiments as researchers run them (SPEC §9): TOML configs, a Zarr results store written while a
run goes, resume after a crash. The command line (``reluflow``) sits on top of this package."""
from .config import ConfigError, RunConfig, load_config, parse_config
from .runner import default_store, run_config
from .plots import plot_store, plot_sweep
from ..store import load
from .sweep import load_sweep, run_sweep

__all__ = ["ConfigError", "RunConfig", "load_config", "parse_config", "run_config", "default_store", "load", "plot_store", "plot_sweep", "load_sweep", "run_sweep"]

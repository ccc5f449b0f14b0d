"""Feast CLI entry: `feast -c feature_repo apply` sees the same objects `recplugin apply` registers.

Set RECPLUGIN_CONFIG (a recplugin YAML) and RECPLUGIN_DATA (its data directory) first; `recplugin apply` needs neither.
"""
import os
from pathlib import Path

from recplugin.config import load_config
from recplugin.features.definitions import build_objects

_config = load_config()
globals().update(build_objects(_config, Path(os.environ.get("RECPLUGIN_DATA", _config.data_dir))))

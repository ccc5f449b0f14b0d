"""recplugin's entities, sources, feature views and feature services in this repo (named rec_*, see recplugin.yaml);
your own feature definitions sit beside this module as usual."""
import contextlib
from pathlib import Path

from recplugin.config import load_config
from recplugin.features import feast_objects

ROOT = Path(__file__).resolve().parents[1]
with contextlib.chdir(ROOT):  # recplugin.yaml's relative paths mean the repository root, where `recplugin` runs
    globals().update(feast_objects(load_config(ROOT / "feature_repo" / "recplugin.yaml")))

"""recplugin's Feast objects, for a team's own feature repo (`globals().update(feast_objects())` in its definitions)."""
from __future__ import annotations

import os
from pathlib import Path


def feast_objects(config: object = None, **sources: object) -> dict[str, object]:
    """Every recplugin Feast object by its (prefixed) name, as configured: `feast.prefix` names them apart from the team's.

    `config` is a RecConfig or a YAML path (default: $RECPLUGIN_CONFIG). Keyword sources `user_state_source`,
    `item_source`, `item_embedding_source` replace recplugin's parquet files with any Feast batch source.
    """
    from recplugin.config import RecConfig, load_config
    from recplugin.features.definitions import build_objects
    from recplugin.features.store import repo_config

    config = config if isinstance(config, RecConfig) else load_config(config)
    data_dir = Path(os.environ.get("RECPLUGIN_DATA", config.data_dir))
    offline_store = repo_config(config).offline_store.type
    return {obj.name: obj for obj in build_objects(config, data_dir, sources or None, offline_store).values()}

"""A team's own ids at the API: with `source.string_ids`, string user and item ids come in (hashed as at load time) and
answers name items by the team's own ids again (the item key map `recplugin load events` wrote)."""
from __future__ import annotations

from pathlib import Path


class IdCodec:
    """Ids in (integers as they are; strings hashed when the deployment uses string ids) and item ids out."""

    def __init__(self, string_ids: bool, data_dir: Path):
        from recplugin.data.tables import stable_id  # pandas: in the workers, not in the service module's import

        self._stable_id = stable_id
        self.string_ids = string_ids
        self._data_dir = data_dir
        self._keys: dict[int, str] | None = None
        self.added_keys: dict[int, str] = {}  # the own ids of items added while serving (the recommender's catalogue)

    def internal(self, value: int | str) -> int:
        """The integer id the stores and the model use."""
        return self._stable_id(value) if isinstance(value, str) else int(value)

    def item_key(self, item_id: int) -> int | str:
        """The team's own id of an item (the integer itself without string ids, or when the map lacks it)."""
        if not self.string_ids:
            return item_id
        if self._keys is None:
            import pandas as pd

            from recplugin.data.tables import ITEM_KEYS

            path = self._data_dir / ITEM_KEYS
            table = pd.read_parquet(path) if path.exists() else pd.DataFrame({"item_id": [], "key": []})
            self._keys = dict(zip(table["item_id"].astype("int64").tolist(), table["key"].astype(str).tolist()))
        return self._keys.get(int(item_id)) or self.added_keys.get(int(item_id), item_id)

    def answer(self, body: dict) -> dict:
        """A /recommend answer with its items named by the team's own ids."""
        if self.string_ids:
            body["items"] = [{**item, "item_id": self.item_key(item["item_id"])} for item in body["items"]]
        return body

"""A seeded generator of cross-scenario behaviour: users with latent interests seen through search, feed and discovery."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recplugin.config import GeneratorConfig
from recplugin.data.schema import EVENT_SCHEMA, ITEM_SCHEMA
from recplugin.progress import progress as progress_bar

TOPICS: dict[str, list[str]] = {
    "cooking": ["recipe", "noodle", "spicy", "bake", "garlic", "dumpling", "oven", "sauce", "broth", "kitchen", "grill", "pastry"],
    "travel": ["flight", "hotel", "island", "backpack", "itinerary", "beach", "passport", "hostel", "roadtrip", "visa", "cruise", "airport"],
    "fitness": ["workout", "squat", "protein", "cardio", "yoga", "marathon", "stretch", "dumbbell", "gym", "pilates", "sprint", "core"],
    "skincare": ["serum", "moisturizer", "sunscreen", "retinol", "toner", "acne", "cleanser", "mask", "collagen", "glow", "pore", "lotion"],
    "fashion": ["outfit", "denim", "sneaker", "blazer", "vintage", "streetwear", "dress", "handbag", "scarf", "tailored", "boots", "linen"],
    "gaming": ["console", "speedrun", "rpg", "controller", "esports", "multiplayer", "quest", "boss", "indie", "pixel", "raid", "loot"],
    "pets": ["puppy", "kitten", "leash", "aquarium", "grooming", "vet", "litter", "parrot", "hamster", "treats", "adoption", "kennel"],
    "finance": ["budget", "savings", "stocks", "dividend", "mortgage", "crypto", "pension", "invoice", "tax", "index", "portfolio", "loan"],
    "gardening": ["seedling", "compost", "tomato", "succulent", "pruning", "greenhouse", "mulch", "orchid", "soil", "herb", "bulb", "trellis"],
    "photography": ["lens", "aperture", "portrait", "tripod", "exposure", "film", "bokeh", "drone", "sunset", "editing", "shutter", "flash"],
    "music": ["guitar", "vinyl", "playlist", "concert", "piano", "chord", "synth", "album", "drummer", "lyrics", "festival", "violin"],
    "parenting": ["toddler", "stroller", "newborn", "diaper", "bedtime", "tantrum", "daycare", "lunchbox", "crib", "homework", "nursery", "teething"],
    "homedecor": ["sofa", "rug", "lamp", "shelf", "curtain", "minimalist", "wallpaper", "candle", "mirror", "cushion", "ceramic", "rattan"],
    "coffee": ["espresso", "latte", "barista", "grinder", "pourover", "roast", "beans", "cafe", "crema", "matcha", "coldbrew", "mug"],
    "cars": ["sedan", "engine", "tyres", "electric", "charging", "hybrid", "roadster", "detailing", "turbo", "dashcam", "suv", "mileage"],
    "books": ["novel", "paperback", "poetry", "thriller", "bookclub", "memoir", "library", "fantasy", "author", "chapter", "audiobook", "classic"],
    "study": ["exam", "notes", "flashcards", "calculus", "essay", "tutor", "revision", "grammar", "thesis", "lecture", "vocabulary", "scholarship"],
    "hiking": ["trail", "summit", "tent", "campfire", "compass", "waterfall", "canyon", "glacier", "boots", "ridge", "forest", "backcountry"],
    "baking": ["sourdough", "croissant", "frosting", "cupcake", "dough", "yeast", "macaron", "brioche", "whisk", "cheesecake", "glaze", "pie"],
    "tech": ["laptop", "smartphone", "keyboard", "headphones", "charger", "tablet", "monitor", "router", "smartwatch", "earbuds", "processor", "camera"],
}
MODIFIERS = ["best", "easy", "budget", "premium", "guide", "review", "tips", "daily", "ultimate", "beginner", "pro", "cozy",
             "quick", "classic", "new", "top", "simple", "honest", "weekend", "favourite"]
SCENARIO_ACTIONS = {
    "search": (["click", "purchase"], [0.85, 0.15]),
    "feed": (["click", "like", "share"], [0.7, 0.2, 0.1]),
    "discovery": (["click", "purchase"], [0.8, 0.2]),
}
SCENARIOS = ("search", "feed", "discovery")


@dataclass
class Catalog:
    """The generated items and the per-topic lookup tables the event sampler needs."""

    items: pd.DataFrame
    topic_items: list[np.ndarray]
    topic_weights: list[np.ndarray]
    topic_promoted: list[np.ndarray]
    word_items: dict[str, np.ndarray]


def _zipf(n: int, exponent: float) -> np.ndarray:
    """Normalised Zipf weights for ranks 1..n."""
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return weights / weights.sum()


def make_catalog(config: GeneratorConfig) -> Catalog:
    """Items with topic-word titles, a category, popularity and scenario eligibility."""
    rng = np.random.default_rng(config.seed)
    topic_names = list(TOPICS)
    topics = rng.choice(len(topic_names), size=config.num_items, p=_zipf(len(topic_names), 0.5))
    start = pd.Timestamp(config.start, tz="UTC")
    rows = []
    for item_id, topic in enumerate(topics):
        words = rng.choice(TOPICS[topic_names[topic]], size=3, replace=False)
        title = " ".join([str(rng.choice(MODIFIERS)), *words])
        promoted = rng.random() < 0.6
        rows.append(
            {
                "item_id": item_id,
                "title": title,
                "text": f"{title} | {topic_names[topic]}",
                "category": topic_names[topic],
                "scenarios": ["search", "feed", "discovery"] if promoted else ["search", "feed"],
                "created_timestamp": start - pd.Timedelta(days=30) + pd.Timedelta(seconds=int(rng.integers(0, 86400 * 29))),
            }
        )
    items = pd.DataFrame(rows)
    topic_items, topic_weights, topic_promoted = [], [], []
    for topic in range(len(topic_names)):
        members = np.flatnonzero(topics == topic)
        members = members[rng.permutation(len(members))]
        topic_items.append(members)
        topic_weights.append(_zipf(max(len(members), 1), 0.9)[: len(members)])
        topic_promoted.append(np.array(["discovery" in items.at[i, "scenarios"] for i in members], dtype=bool))
    word_items: dict[str, list[int]] = {}
    for item_id, title in zip(items["item_id"], items["title"]):
        for word in title.split()[1:]:
            word_items.setdefault(word, []).append(item_id)
    return Catalog(items, topic_items, topic_weights, topic_promoted, {w: np.array(v) for w, v in word_items.items()})


class _UserSampler:
    """Draws one user's time-ordered events; each scenario reveals the same interests differently."""

    def __init__(self, catalog: Catalog, config: GeneratorConfig, user_id: int):
        self.catalog = catalog
        self.rng = np.random.default_rng([config.seed, user_id])
        num_topics = len(catalog.topic_items)
        populated = [t for t in range(num_topics) if len(catalog.topic_items[t])]
        k = min(config.interests_per_user, len(populated))
        self.interests = self.rng.choice(populated, size=k, replace=False)
        self.weights = np.sort(self.rng.dirichlet(np.ones(k) * 1.5))[::-1]
        self.scenario_mix = self.rng.dirichlet([2.0, 4.0, 2.0])
        self.seen: set[int] = set()
        self.topic = int(self.interests[0])

    def _topic_for(self, scenario: str) -> int:
        """Feed follows the main interests, discovery the secondary ones; a session tends to stay on topic."""
        if self.rng.random() < 0.05:
            return int(self.rng.integers(len(self.catalog.topic_items)))
        if self.rng.random() < 0.45:
            return self.topic
        weights = self.weights if scenario != "discovery" else np.sqrt(self.weights[::-1] * self.weights)
        weights = weights / weights.sum()
        self.topic = int(self.rng.choice(self.interests, p=weights))
        return self.topic

    def _pick(self, candidates: np.ndarray, weights: np.ndarray) -> int | None:
        """A popularity-weighted unseen item from the candidates."""
        if len(candidates) == 0:
            return None
        for _ in range(8):
            item = int(candidates[self.rng.choice(len(candidates), p=weights)])
            if item not in self.seen:
                return item
        unseen = [int(c) for c in candidates if int(c) not in self.seen]
        return int(self.rng.choice(unseen)) if unseen else None

    def event(self, scenario: str) -> tuple[int, str | None] | None:
        """One (item, query) for the scenario, or None when the user has exhausted the candidates."""
        topic = self._topic_for(scenario)
        members, weights = self.catalog.topic_items[topic], self.catalog.topic_weights[topic]
        query = None
        if scenario == "search":
            words = self.rng.choice(TOPICS[list(TOPICS)[topic]], size=2, replace=False)
            query = " ".join(words)
            matching = self.catalog.word_items.get(str(words[0]), np.array([], dtype=np.int64))
            if len(matching) > 3:
                second = self.catalog.word_items.get(str(words[1]), matching)
                matching = np.intersect1d(matching, second, assume_unique=True)
            if len(matching):
                members, weights = matching, _zipf(len(matching), 0.6)
        elif scenario == "discovery":
            mask = self.catalog.topic_promoted[topic]
            members, weights = members[mask], weights[mask]
            weights = weights / weights.sum() if len(weights) else weights
        item = self._pick(members, weights)
        return None if item is None else (item, query)


def generate_user_events(catalog: Catalog, config: GeneratorConfig, user_id: int) -> list[dict]:
    """All events of one user, time-ordered with strictly increasing timestamps."""
    sampler = _UserSampler(catalog, config, user_id)
    rng = sampler.rng
    count = max(3, int(rng.poisson(config.events_per_user)))
    clock = pd.Timestamp(config.start, tz="UTC").value // 1000 + int(rng.integers(0, 86400 * 7)) * 1_000_000
    events = []
    for _ in range(count):
        scenario = SCENARIOS[int(rng.choice(3, p=sampler.scenario_mix))]
        drawn = sampler.event(scenario)
        if drawn is None:
            continue
        item, query = drawn
        sampler.seen.add(item)
        names, probs = SCENARIO_ACTIONS[scenario]
        gap = int(rng.exponential(1800)) + 1 if rng.random() < 0.8 else int(rng.exponential(86400)) + 1
        clock += gap * 1_000_000
        events.append({"user_id": user_id, "item_id": item, "scenario": scenario,
                       "action": names[int(rng.choice(len(names), p=probs))], "query": query,
                       "event_timestamp": clock})
    return events


def generate(config: GeneratorConfig, out_dir: Path, chunk_users: int = 2000, progress: bool = True) -> tuple[Path, Path]:
    """Write items.parquet and events.parquet (streamed by user chunks, so memory stays flat)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    catalog = make_catalog(config)
    items_path, events_path = out_dir / "items.parquet", out_dir / "events.parquet"
    pq.write_table(pa.Table.from_pandas(catalog.items, schema=ITEM_SCHEMA, preserve_index=False), items_path)
    with pq.ParquetWriter(events_path, EVENT_SCHEMA) as writer:
        bar = progress_bar(total=config.num_users, desc="generate users", unit="user", disable=not progress)
        for first in range(0, config.num_users, chunk_users):
            rows: list[dict] = []
            for user_id in range(first, min(first + chunk_users, config.num_users)):
                rows.extend(generate_user_events(catalog, config, user_id))
            frame = pd.DataFrame(rows, columns=EVENT_SCHEMA.names)
            frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], unit="us", utc=True)
            writer.write_table(pa.Table.from_pandas(frame, schema=EVENT_SCHEMA, preserve_index=False))
            bar.update(min(chunk_users, config.num_users - first))
        bar.close()
    return items_path, events_path

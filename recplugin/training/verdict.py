"""How a training run ended and whether the model beats popularity on validation: printed by `train`, kept in the
artifact (verdict.json) and checked by `index` before a version is served."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from recplugin.config import TrainingConfig
from recplugin.training import evaluate as ev
from recplugin.training.dataset import LabelledSplit

VERDICT = "verdict.json"
ADVICE = ("try: map every text column the items have (source.items.text), model.use_item_ids: true when items recur in "
          "the log, a longer training.max_minutes, or check that the events are positives (source.events.where)")


@dataclass
class Verdict:
    """Why training stopped, its best epoch, and validation NDCG@10 of the model against popularity."""

    epochs: int
    best_epoch: int
    stopped_by: str
    model_ndcg: float
    popularity_ndcg: float
    curve_path: str = ""

    @property
    def ratio(self) -> float:
        """Model NDCG@10 over popularity's (infinite when popularity scores zero and the model does not)."""
        if self.popularity_ndcg > 0:
            return self.model_ndcg / self.popularity_ndcg
        return float("inf") if self.model_ndcg > 0 else 0.0

    @property
    def beats_popularity(self) -> bool:
        """True when the model ranks the validation targets better than popularity does."""
        return self.model_ndcg > self.popularity_ndcg

    def lines(self) -> list[str]:
        """What `train` prints at its end."""
        verdict = (f"verdict: the model beats popularity on validation, NDCG@10 {self.model_ndcg:.4f} vs "
                   f"{self.popularity_ndcg:.4f} ({self.ratio:.1f}x)" if self.beats_popularity else
                   f"WARNING: the model does NOT beat popularity on validation: NDCG@10 {self.model_ndcg:.4f} vs "
                   f"{self.popularity_ndcg:.4f}; `recplugin index` refuses it without --force; {ADVICE}")
        return [f"stopped by {self.stopped_by} after {self.epochs} epoch(s); best epoch {self.best_epoch}"
                + (f"; training curve: {self.curve_path}" if self.curve_path else ""), verdict]

    def save(self, artifact_dir: Path) -> None:
        """Write verdict.json beside the weights."""
        (artifact_dir / VERDICT).write_text(json.dumps(asdict(self), indent=2))


def load_verdict(artifact_dir: Path) -> Verdict | None:
    """The artifact's verdict, or None for one written before verdicts existed."""
    path = artifact_dir / VERDICT
    return Verdict(**json.loads(path.read_text())) if path.exists() else None


def popularity_validation_ndcg(train_split: LabelledSplit, validation: LabelledSplit, num_items: int,
                               num_scenarios: int) -> float:
    """NDCG@10 of per-scenario popularity (counted on the training labels) on the validation labels the model met."""
    if not len(validation):
        return 0.0
    popularity = ev.popularity_scores(train_split.target_rows, train_split.inputs.target_scenario, num_items, num_scenarios)
    ranks = ev.ranks_for(lambda index: popularity[validation.inputs.target_scenario[index]], validation.target_rows,
                         validation.seen)
    return ev.metrics_from_ranks(ranks)["NDCG@10"]


def stop_reason(settings: TrainingConfig, epochs_run: int, best_epoch: int, steps_done: int, planned_steps: int) -> str:
    """Why the epoch loop ended: validation (patience), the time budget, the step cap or the epoch cap."""
    if settings.patience and epochs_run - best_epoch >= settings.patience and epochs_run < settings.epochs:
        return f"validation (NDCG@10 not better for {settings.patience} epochs)"
    if steps_done >= planned_steps and epochs_run < settings.epochs:
        return f"the time budget (training.max_minutes {settings.max_minutes:g})" if settings.max_minutes else \
            f"the step cap (training.max_steps {settings.max_steps})"
    return f"the epoch cap (training.epochs {settings.epochs})"

"""Training-curve plot: loss and validation metrics per epoch."""
from __future__ import annotations

from pathlib import Path


def plot_curves(curve: list[dict], path: Path, popularity_ndcg: float | None = None) -> Path:
    """Write a two-panel PNG (training loss; validation Recall/NDCG, popularity's NDCG@10 as a dashed line) and return
    its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [point["epoch"] for point in curve]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(epochs, [point["loss"] for point in curve], marker="o")
    left.set(title="training loss", xlabel="epoch", ylabel="multi-positive InfoNCE loss")
    for metric in ("Recall@10", "NDCG@10", "Recall@50", "NDCG@50"):
        right.plot(epochs, [point[metric] for point in curve], marker="o", label=metric)
    if popularity_ndcg is not None:
        right.axhline(popularity_ndcg, color="grey", linestyle="--", label="popularity NDCG@10")
    right.set(title="validation (full ranking)", xlabel="epoch")
    right.legend()
    for axis in (left, right):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path

"""Train on a GPU box: `python -m recplugin.training -c recplugin.yaml` (or under `torchrun --nproc_per_node N`).

Needs only torch, transformers, numpy and pyarrow: the snapshot and catalogue were written by the Feast side, and the
artifact is registered and indexed afterwards on that side (`recplugin register <artifact>`, `recplugin index`).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from recplugin.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", required=True, help="the workdir's recplugin.yaml")
    parser.add_argument("--workdir", help="override the config's workdir")
    parser.add_argument("--snapshot", help="default: the workdir's training_set.parquet")
    parser.add_argument("--catalog", help="default: the workdir's data/items.parquet")
    parser.add_argument("--out", help="where the artifact goes (default: the workdir's models/)")
    parser.add_argument("--resume", action="store_true", help="continue from this run's last checkpoint")
    args = parser.parse_args()
    config = load_config(args.config, **({"workdir": args.workdir} if args.workdir else {}))
    config.training.resume = config.training.resume or args.resume
    from recplugin.training.train import train

    result = train(config, Path(args.snapshot) if args.snapshot else config.snapshot_path,
                   Path(args.catalog) if args.catalog else config.catalog_path, Path(args.out) if args.out else config.models_dir)
    if result is not None:
        print(result.table)
        print(json.dumps({"version": result.version, "artifact": str(result.artifact_dir)}))


if __name__ == "__main__":
    main()

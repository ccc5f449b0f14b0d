"""Day-to-day commands of `recplugin`: hidden items, promote / rollback, and per-version online metrics."""
from __future__ import annotations

import argparse
import os
import sys

from recplugin.config import RecConfig


def cmd_items(config: RecConfig, args: argparse.Namespace) -> None:
    from recplugin.features.store import OnlineFeatures
    from recplugin.serving.ids import IdCodec

    hidden = OnlineFeatures(config).hidden
    codec = IdCodec(config.source.string_ids, config.data_dir)
    if args.action != "hidden":
        if not args.item_ids:
            sys.exit(f"recplugin items {args.action}: name the item ids")
        ids = [codec.internal(item if config.source.string_ids else int(item)) for item in args.item_ids]
        hidden.change(ids, hide=args.action == "hide")
    now = sorted(hidden.current())
    print(f"{len(now)} items hidden (every worker leaves them out from its next request){': ' if now else ''}"
          + " ".join(str(codec.item_key(item)) for item in now[:50]) + (" ..." if len(now) > 50 else ""))


def cmd_promote(config: RecConfig, args: argparse.Namespace) -> None:
    from recplugin import pipeline

    if args.command == "rollback":
        print(f"serving {pipeline.rollback(config)} again; every worker follows within {config.serving.reload_interval_s:g} s")
    else:
        pipeline.promote(config, args.version)
        print(f"serving {args.version}; every worker follows within {config.serving.reload_interval_s:g} s")


def cmd_experiments(config: RecConfig, args: argparse.Namespace) -> None:
    import requests

    from recplugin.registry.models import ModelRegistry, UnknownVersion
    from recplugin.serving import experiments

    url = args.url or f"http://{config.serving.host}:{config.serving.port}"
    key = os.environ.get(config.serving.api_key_env, "")
    try:
        reply = requests.get(f"{url}/metrics", headers={"X-API-Key": key} if key else {}, timeout=10)
        reply.raise_for_status()
    except requests.RequestException as error:
        sys.exit(f"recplugin experiments: cannot read {url}/metrics ({error})")
    try:
        control = ModelRegistry(config.registry_sqlalchemy_url).latest(status="serving").version
    except UnknownVersion:
        control = ""
    print(experiments.table(experiments.parse(reply.text), control))

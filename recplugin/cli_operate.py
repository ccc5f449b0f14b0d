"""Day-to-day commands of `recplugin`: new and hidden items, promote / rollback / rollout, the gated refresh, and
per-version online metrics."""
from __future__ import annotations

import argparse
import os
import sys

from recplugin.config import RecConfig


def cmd_items(config: RecConfig, args: argparse.Namespace) -> None:
    from recplugin.features.online import OnlineFeatures
    from recplugin.serving.ids import IdCodec

    if args.action == "load":
        return load_items(config, args)
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


def load_items(config: RecConfig, args: argparse.Namespace, chunk: int = 500) -> None:
    """`recplugin items load FILE`: a team's item table (the `source.items` mapping of `load events`) sent to the running
    service in chunks; items it already holds are left as they are, so the whole table may be sent every day."""
    from recplugin.client import RecClient
    from recplugin.data import tables

    if len(args.item_ids) != 1:
        sys.exit("recplugin items load: name one item table (CSV/parquet file, glob or folder)")
    columns = config.source.items
    tables.check_header(args.item_ids[0], columns, "items")
    raw = tables.read_table(args.item_ids[0]).reset_index(drop=True)
    mapped = tables.map_items(raw, columns, config.scenarios, config.source.string_ids)
    ids = raw[columns.item].astype(str).tolist() if config.source.string_ids else mapped["item_id"].tolist()
    items = [{"item_id": item_id, "title": title or str(item_id), "text": text, "category": category, "scenarios": list(scenarios)}
             for item_id, title, text, category, scenarios in zip(ids, mapped["title"], mapped["text"], mapped["category"],
                                                                  mapped["scenarios"])]
    added = known = 0
    with RecClient(args.url or f"http://{config.serving.host}:{config.serving.port}",
                   api_key=os.environ.get(config.serving.api_key_env), timeout_s=120) as client:
        for start in range(0, len(items), chunk):
            answer = client.add_items(items[start:start + chunk])
            added, known = added + answer.added, known + answer.known
    print(f"{added} items added, {known} already known, of {len(items)} (model {answer.model_version}); "
          "recommendable and accepted by /events on every worker from its next request")


def cmd_promote(config: RecConfig, args: argparse.Namespace) -> None:
    from recplugin import pipeline

    if args.command == "rollout":
        pipeline.rollout(config, args.version, args.share)
        print(f"{args.version} answers {args.share:g}% of users beside the serving version" if args.share else
              "rollout ended: the serving version answers every user", f"(every worker within {config.serving.reload_interval_s:g} s)")
    elif args.command == "rollback":
        print(f"serving {pipeline.rollback(config)} again; every worker follows within {config.serving.reload_interval_s:g} s")
    else:
        pipeline.promote(config, args.version)
        print(f"serving {args.version}; every worker follows within {config.serving.reload_interval_s:g} s")


def cmd_refresh(config: RecConfig, args: argparse.Namespace) -> None:
    from recplugin.refresh import RefreshBusy, refresh

    try:
        outcome = refresh(config)
    except RefreshBusy as error:
        sys.exit(f"recplugin refresh: {error}")
    print(f"{'promoted' if outcome.promoted else 'not promoted'}: {outcome.candidate}; {outcome.reason}")


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

"""`recplugin` command line: one sub-command per pipeline stage, plus `demo`."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings

import sqlalchemy.exc
import yaml

from recplugin.cli_operate import cmd_experiments, cmd_items, cmd_promote, cmd_refresh
from recplugin.config import ConfigError, RecConfig, load_config
from recplugin.registry.models import UnknownVersion, UntrustedArtifact


def _config(args: argparse.Namespace) -> RecConfig:
    overrides = {"workdir": args.workdir} if args.workdir else {}
    return load_config(args.config, **overrides)


def cmd_generate(config: RecConfig, args: argparse.Namespace) -> None:
    from recplugin import pipeline
    from recplugin.stage_report import describe_data, timed

    with timed("generate") as lines:
        items, events = pipeline.generate(config)
        lines += [describe_data(config), f"written: {events}, {items}"]


def cmd_load(config: RecConfig, args: argparse.Namespace) -> None:
    from pathlib import Path

    from recplugin import pipeline
    from recplugin.stage_report import describe_data

    try:
        began = time.monotonic()
        if args.dataset == "events":
            if not args.items:
                sys.exit("recplugin load events: --items <item table> is required")
            items, events = pipeline.load_events(config, args.path, args.items)
        else:
            items, events = pipeline.load_dataset(config, args.dataset, Path(args.path))
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"recplugin load: {error}")
    print(f"{describe_data(config)}\nwritten: {events}, {items}\nload done in {time.monotonic() - began:.1f} s")


def cmd_apply(config: RecConfig, args: argparse.Namespace) -> None:
    from recplugin import pipeline
    from recplugin.stage_report import timed

    with timed("feast apply") as lines:
        rows = pipeline.apply(config)
        lines.append(f"user-state source: {rows:,} rows (one per user and event time); registered recplugin's entities, "
                     f"feature views, push source and feature services in project {config.feast.project!r}")


def cmd_materialize(config: RecConfig, args: argparse.Namespace) -> None:
    from recplugin import pipeline
    from recplugin.features.store import repo_config
    from recplugin.stage_report import describe_materialized, timed

    with timed("materialize") as lines:
        pipeline.materialize(config)
        lines.append(describe_materialized(config, repo_config(config).online_store.type))


def cmd_build_training_set(config: RecConfig, args: argparse.Namespace) -> None:
    from recplugin import pipeline
    from recplugin.stage_report import describe_snapshot, timed

    with timed("build-training-set") as lines:
        lines += [f"training snapshot: {pipeline.build_training_set(config)}", describe_snapshot(config)]


def cmd_train(config: RecConfig, args: argparse.Namespace) -> None:
    from recplugin import pipeline
    from recplugin.stage_report import timed

    with timed("train") as lines:
        result = pipeline.train(config)
        lines += [f"\ntest split (full ranking, seen items excluded):\n{result.table}\n",
                  f"model version {result.version} -> {result.artifact_dir}", *result.verdict.lines()]


def cmd_register(config: RecConfig, args: argparse.Namespace) -> None:
    from pathlib import Path

    from recplugin import pipeline

    try:
        version = pipeline.register_artifact(config, Path(args.artifact))
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"recplugin register: {error}")
    print(f"registered model version {version}; next: recplugin index --version {version}")


def cmd_index(config: RecConfig, args: argparse.Namespace) -> None:
    from recplugin import pipeline

    began = time.monotonic()
    try:
        name = pipeline.index(config, args.version, force=args.force, serve=not args.candidate)
    except pipeline.WorseThanPopularity as error:
        sys.exit(f"recplugin index: {error}")
    role = "a candidate: `recplugin rollout VERSION --share N`" if args.candidate else "it is now the serving collection"
    print(f"indexed into {name} on {config.milvus_uri}; {role}\n"
          f"index done in {time.monotonic() - began:.1f} s")


def cmd_evaluate(config: RecConfig, args: argparse.Namespace) -> None:
    from recplugin.registry.models import ModelRegistry
    from recplugin.training.evaluate import markdown_table

    registry = ModelRegistry(config.registry_sqlalchemy_url)
    entry = registry.get(args.version) if args.version else registry.latest()
    print(f"model version {entry.version} (test split, full ranking, seen items excluded)\n")
    print(json.dumps(entry.metrics, indent=2) if args.json else markdown_table(entry.metrics))


def cmd_serve(config: RecConfig, args: argparse.Namespace) -> None:
    from recplugin import pipeline

    import signal
    import threading

    from recplugin.registry.models import ModelRegistry

    try:
        ModelRegistry(config.registry_sqlalchemy_url).latest(status="serving")
    except UnknownVersion:
        print("recplugin serve: no model version is serving yet (run `recplugin index`); /readyz answers 503 until one is",
              file=sys.stderr, flush=True)
    process = pipeline.start_service(config, args.port or config.serving.port, log_path=args.log_file)

    received: list[int] = []

    def forward(signum, _frame) -> None:  # stop `bentoml serve` and its workers too: nothing is left orphaned
        received.append(signum)
        process.terminate()  # the main thread's wait() below then returns; kill it if it has not stopped in 30 s
        threading.Timer(30, lambda: process.poll() is None and process.kill()).start()

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = process.wait()
    if received:
        sys.stdout.flush()
        os._exit(128 + received[0])  # as `entry` does: skip the interpreter finalisation that duckdb's bindings stall
    sys.exit(code)


def cmd_milvus_server(config: RecConfig, args: argparse.Namespace) -> None:
    import signal
    import time

    from milvus_lite.server import Server
    from pymilvus import MilvusException

    from recplugin.index import lite_guard

    if "://" in config.index.uri:
        sys.exit(f"recplugin milvus-server: index.uri is already a server ({config.index.uri}); it serves a Milvus Lite file")
    try:
        lite_guard.hold(config.milvus_uri)
    except MilvusException as error:
        sys.exit(f"recplugin milvus-server: {error.message}")
    server = Server(config.milvus_uri, address=args.address)
    if not server.init() or not server.start():
        sys.exit(f"recplugin milvus-server: could not serve {config.milvus_uri} (is another process holding it?)")
    lite_guard.advertise(config.milvus_uri, f"http://{args.address}")  # a CLI command on the file uses this server
    print(f"Milvus Lite {config.milvus_uri} at http://{args.address}; point every process at it with "
          f"index.uri: http://{args.address}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.stop()


def cmd_models(config: RecConfig, args: argparse.Namespace) -> None:
    from recplugin.registry.models import ModelRegistry

    for entry in ModelRegistry(config.registry_sqlalchemy_url).list():
        print(f"{entry.version}  {entry.status:8s}  {entry.created_at:%Y-%m-%d %H:%M:%S}  {entry.collection or '-'}  {entry.artifact_uri}")


def cmd_demo(config: RecConfig, args: argparse.Namespace) -> None:
    from recplugin.demo import run_demo

    run_demo(config, fresh=not args.keep)


COMMANDS = {
    "generate": (cmd_generate, "generate a seeded cross-scenario dataset (items + events parquet)"),
    "load": (cmd_load, "load your own event and item tables (`load events`), or a public dataset (ml-1m, amazon-food-kitchen)"),
    "apply": (cmd_apply, "build the user-state source and register Feast entities, views and services"),
    "materialize": (cmd_materialize, "load the latest features into the Feast online store"),
    "build-training-set": (cmd_build_training_set, "point-in-time join of labels with Feast histories -> parquet"),
    "train": (cmd_train, "train the item and user towers, evaluate, register the model version"),
    "register": (cmd_register, "register an artifact trained elsewhere (python -m recplugin.training on a GPU box)"),
    "index": (cmd_index, "index a model version's items in a new Milvus collection and make it the served one"),
    "evaluate": (cmd_evaluate, "print a registered version's metrics table (model vs popularity)"),
    "serve": (cmd_serve, "run the BentoML service (POST /recommend, POST /events, GET /readyz)"),
    "milvus-server": (cmd_milvus_server, "serve the workdir's Milvus Lite file over gRPC so several processes (workers) share it"),
    "models": (cmd_models, "list registered model versions"),
    "promote": (cmd_promote, "serve an indexed version (its collection still kept) on every worker, without a restart"),
    "rollback": (cmd_promote, "serve again the version that served before the current one"),
    "refresh": (cmd_refresh, "retrain from the serving version on the newest data; serve it only if it is not worse (cron)"),
    "rollout": (cmd_promote, "answer a share of users with a candidate version beside the serving one (online A/B)"),
    "experiments": (cmd_experiments, "per model version online: answers, attributed events, CTR@10 and its interval vs the serving one"),
    "items": (cmd_items, "add new items while serving (load), hide items from every answer (out of stock, a takedown), "
                         "unhide them, or list the hidden ones"),
    "demo": (cmd_demo, "run every stage on generated data, query the live service, print results"),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="recplugin", description="Cross-scenario two-tower recommendations on Feast, Milvus and BentoML.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-c", "--config", help="YAML config file (default: $RECPLUGIN_CONFIG, else built-in defaults)")
    common.add_argument("-w", "--workdir", help="override the config's workdir (where data, stores and models go)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        command = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        if name in ("index", "evaluate"):
            command.add_argument("--version", help="model version (default: the newest)")
        if name == "index":
            command.add_argument("--force", action="store_true", help="serve a version that does not beat popularity")
            command.add_argument("--candidate", action="store_true", help="build its collection only (for a rollout)")
        if name == "evaluate":
            command.add_argument("--json", action="store_true", help="print JSON instead of a table")
        if name == "serve":
            command.add_argument("--port", type=int, help="port (default: serving.port from the config)")
            command.add_argument("--log-file", help="append the service's log here (default: this command's stdout/stderr)")
        if name == "milvus-server":
            command.add_argument("--address", default="127.0.0.1:19530", help="host:port to listen on (default 127.0.0.1:19530)")
        if name == "register":
            command.add_argument("artifact", help="the artifact folder that python -m recplugin.training wrote")
        if name == "load":
            command.add_argument("dataset", choices=["events", "ml-1m", "amazon-food-kitchen"],
                                 help="events: your own event table (config `source` maps its columns); or a public dataset")
            command.add_argument("path", help="events: a CSV/parquet file, glob or folder; a dataset: its folder, e.g. ../shared/data/ml-1m")
            command.add_argument("--items", help="events: your item table (CSV/parquet file, glob or folder)")
        if name in ("promote", "rollout"):
            command.add_argument("version", help="a registered version whose Milvus collection is kept")
        if name == "rollout":
            command.add_argument("--share", type=float, required=True, help="percent of users it answers (0 ends it)")
        if name in ("experiments", "items"):
            command.add_argument("--url", help="the service (default: http://serving.host:serving.port)")
        if name == "items":
            command.add_argument("action", choices=["load", "hide", "unhide", "hidden"])
            command.add_argument("item_ids", nargs="*", help="item ids (the team's own with source.string_ids); "
                                                             "load: an item table mapped by the config's `source.items`")
        if name == "demo":
            command.add_argument("--keep", action="store_true", help="keep an existing workdir instead of starting fresh")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `recplugin` command."""
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.captureWarnings(True)  # Feast re-enables DeprecationWarnings when it is imported; they go to a muted logger
    logging.getLogger("py.warnings").setLevel(logging.ERROR)
    if not sys.stdout.isatty():  # Feast prints colour codes; a log file or a pipe gets plain text
        import colorama

        colorama.init(strip=True)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        config = _config(args)
    except (ConfigError, OSError, yaml.YAMLError) as error:
        sys.exit(f"recplugin: bad config: {' '.join(str(error).split())}")
    try:
        COMMANDS[args.command][0](config, args)
    except (FileNotFoundError, UnknownVersion, UntrustedArtifact) as error:  # a user's mistake: one line, no traceback
        sys.exit(f"recplugin {args.command}: {error}")
    except sqlalchemy.exc.OperationalError as error:
        sys.exit(f"recplugin {args.command}: cannot open the model registry {config.registry_sqlalchemy_url} "
                 f"({str(error.orig).splitlines()[0]}); does the workdir {config.workdir} exist (run the earlier stages)?")


def entry() -> None:
    """Console-script entry: run the command, then skip interpreter finalisation, where duckdb's
    bindings print pages of harmless "nanobind: leaked instance" reports after Feast has used them."""
    main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    entry()

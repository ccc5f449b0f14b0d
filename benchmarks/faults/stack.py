"""The production-style stack the fault matrix breaks: its own Redis (AOF, fsync always), PostgreSQL behind a proxy that
can drop, a Milvus standalone, the data folder on a small tmpfs (so a full disk is safe to make), 2 BentoML workers."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from recplugin import pipeline
from recplugin.config import RecConfig, from_dict
from recplugin.index import standalone
from tests.support.proxy import HangingProxy

POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:{port}"
TMPFS_MIB = 64


def tiny_stack_config(workdir: Path, redis_port: int, postgres_url: str, milvus_uri: str) -> RecConfig:
    """A small generated dataset and model: the faults are about the service, not the model."""
    tag = uuid.uuid4().hex[:8]
    return from_dict({
        "workdir": str(workdir), "registry_url": postgres_url,
        "generator": {"num_users": 300, "num_items": 500, "events_per_user": 20, "seed": 5},
        "feast": {"store_yaml": "feature_store.production.yaml", "project": f"recplugin_faults_{tag}",
                  "redis": f"127.0.0.1:{redis_port}", "postgres_url": postgres_url, "history_length": 20,
                  "online_timeout_s": 1.0},
        "model": {"embedding_dim": 32, "user_dim": 32, "user_layers": 1, "max_sequence_length": 30},
        "training": {"epochs": 2, "batch_size": 64, "random_negatives": 128},
        "index": {"uri": milvus_uri, "collection_prefix": f"faults_{tag}", "alias": f"faults_{tag}_current",
                  "rpc_timeout_s": 2.0, "drop_grace_s": 0.0},
        "serving": {"workers": 2, "ready_timeout_s": 2.0, "reload_interval_s": 5.0},
    })


@dataclass
class Redis:
    """A redis-server of our own (killable), appending every write to its AOF before acknowledging it."""

    port: int
    folder: Path
    process: subprocess.Popen | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder), "--save", "",
             "--appendonly", "yes", "--appendfsync", "always"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.2)

    def signal(self, number: int) -> None:
        self.process.send_signal(number)
        if number == signal.SIGKILL:
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            self.process.wait(timeout=30)


@dataclass
class Stack:
    """Everything the fault matrix needs a handle on."""

    workdir: Path
    redis: Redis
    postgres: HangingProxy
    milvus: standalone.StandaloneServer
    tmpfs: Path | None
    config: RecConfig | None = None
    service: subprocess.Popen | None = None
    base: str = ""
    notes: list[str] = field(default_factory=list)

    def start_service(self) -> None:
        port = pipeline.free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.service = pipeline.start_service(self.config, port, log_path=self.workdir / "service.log")
        pipeline.wait_ready(self.base, self.service)

    def close(self) -> None:
        if self.service:
            pipeline.stop_service(self.service)
        self.postgres.resume()
        self.milvus.stop()
        self.redis.stop()
        self.postgres.close()
        if self.tmpfs:
            subprocess.run(["umount", "-l", str(self.tmpfs)], check=False)


def mount_tmpfs(folder: Path) -> bool:
    """A small tmpfs at `folder` (root only); False, with nothing mounted, where this is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MIB}m", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


def build(workdir: Path, database_url: str) -> Stack:
    """Start the dependencies, run every offline stage through them, start the service."""
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data"
    on_tmpfs = mount_tmpfs(data)
    redis = Redis(standalone.free_port(), data / "redis")
    redis.start()
    server, database = database_url.rsplit("/", 1)
    postgres = HangingProxy("127.0.0.1", int(server.rsplit(":", 1)[1]))
    milvus = standalone.start(workdir / "milvus")
    stack = Stack(workdir, redis, postgres, milvus, data if on_tmpfs else None)
    if not on_tmpfs:
        stack.notes.append("no tmpfs could be mounted (not root?): the full-disk fault is skipped")
    proxied = f"{POSTGRES_SERVER.format(port=postgres.port)}/{database}"
    stack.config = config = tiny_stack_config(workdir, redis.port, proxied, milvus.uri)
    pipeline.generate(config, progress=False)
    pipeline.apply(config, progress=False)
    pipeline.materialize(config)
    pipeline.build_training_set(config)
    pipeline.train(config, progress=False)
    pipeline.index(config, progress=False)
    pipeline.save_config(config, pipeline.workdir_config_path(config))
    stack.start_service()
    return stack

"""A local Milvus standalone server from the `milvus` PyPI package (embedded etcd, local storage), for tests and benchmarks.

Every port is a free loopback port and every role advertises 127.0.0.1, so several instances coexist with each other and
with a Milvus the machine already runs; the server stops on SIGINT to its `milvus-server` wrapper (it ignores SIGTERM).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


ROLES = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexNode", "dataCoord", "dataNode")
PORT_FLAGS = ("--proxy-port", "--proxy-internal-port", "--root-coord-port", "--query-coord-port", "--query-node-port",
              "--index-coord-port", "--index-node-port", "--data-coord-port", "--data-node-port")


def free_port() -> int:
    """An unused TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    """True when the loopback port can be bound without SO_REUSEADDR (nothing listening, nothing in TIME_WAIT)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class StandaloneUnavailable(RuntimeError):
    """The `milvus` package (a Linux x86_64 / macOS wheel) is not installed here."""


@dataclass
class StandaloneServer:
    """A running Milvus standalone: its gRPC URI, data folder and process (the `milvus-server` wrapper)."""

    uri: str
    data_dir: Path
    process: subprocess.Popen
    command: list[str]
    env: dict[str, str]

    @property
    def log_path(self) -> Path:
        return self.data_dir / "logs" / "milvus-stdout.log"

    def pause(self) -> None:
        """SIGSTOP every process of the server (a hung dependency, for fault tests)."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after `pause`."""
        os.killpg(self.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL every process of the server (a crash, for fault runs); `restart` brings it back on the same ports."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def restart(self, timeout: float = 180.0) -> None:
        """Start the same server again (same data, ports and URI) and wait until it answers. The wrapper binds its ports
        without SO_REUSEADDR and moves to another port if one is still in TIME_WAIT, so wait for them to be free first."""
        ports = [int(self.command[i + 1]) for i, part in enumerate(self.command) if part in PORT_FLAGS]
        deadline = time.monotonic() + timeout
        while not all(port_is_free(port) for port in ports) and time.monotonic() < deadline:
            time.sleep(1.0)
        with open(self.data_dir / "wrapper.log", "a") as log:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        wait_healthy(self, timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGINT to the wrapper, which stops the server; SIGKILL to the whole group if it does not within `timeout`."""
        if self.process.poll() is not None:
            return
        self.resume()
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # the milvus child, if the wrapper left it behind
        except ProcessLookupError:
            pass


def executable() -> str:
    """The `milvus-server` script next to this interpreter, or StandaloneUnavailable."""
    found = shutil.which("milvus-server", path=str(Path(sys.executable).parent)) or shutil.which("milvus-server")
    if found is None:
        raise StandaloneUnavailable("the `milvus` package is not installed (pip install 'recplugin[dev]'; wheels exist for "
                                    "Linux x86_64 and macOS only)")
    return found


def _etcd_config(data_dir: Path) -> tuple[Path, int]:
    """Embedded etcd on free loopback client and peer ports (its peer port is otherwise fixed at 2380)."""
    client, peer = free_port(), free_port()
    path = data_dir / "embedded-etcd.yaml"
    path.write_text("\n".join([
        "name: recplugin-standalone", f"data-dir: {data_dir / 'etcd.data'}",
        f"listen-client-urls: http://127.0.0.1:{client}", f"advertise-client-urls: http://127.0.0.1:{client}",
        f"listen-peer-urls: http://127.0.0.1:{peer}", f"initial-advertise-peer-urls: http://127.0.0.1:{peer}",
        f"initial-cluster: recplugin-standalone=http://127.0.0.1:{peer}", ""]))
    return path, client


class PortTaken(RuntimeError):
    """A port picked as free was bound by something else before the server bound it."""


def start(data_dir: Path, timeout: float = 180.0, attempts: int = 3) -> StandaloneServer:
    """Start a server with its data in `data_dir`; return once it answers a client call. A free port can be taken by
    another process before the server binds it (its role then panics and the server never gets healthy): it starts
    again on other ports, up to `attempts` times."""
    data_dir = Path(data_dir).resolve()
    for attempt in range(attempts):
        try:
            return _start(data_dir, timeout)
        except PortTaken:
            if attempt == attempts - 1:
                raise
            shutil.rmtree(data_dir)  # a server that never got healthy holds nothing: start clean
    raise AssertionError("unreachable")


def _start(data_dir: Path, timeout: float) -> StandaloneServer:
    """One start on freshly picked ports."""
    data_dir.mkdir(parents=True, exist_ok=True)
    etcd_yaml, etcd_port = _etcd_config(data_dir)
    ports = {flag: free_port() for flag in PORT_FLAGS}
    command = [executable(), "--data", str(data_dir), "--etcd-port", str(etcd_port)]
    for flag, port in ports.items():
        command += [flag, str(port)]
    for role in ROLES:
        command += ["--extra-config", f"{role}.ip=127.0.0.1"]
    env = {**os.environ, "ETCD_CONFIG_PATH": str(etcd_yaml)}
    with open(data_dir / "wrapper.log", "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = StandaloneServer(f"http://127.0.0.1:{ports['--proxy-port']}", data_dir, process, command, env)
    try:
        wait_healthy(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def wait_healthy(server: StandaloneServer, timeout: float) -> None:
    """Poll until the server lists collections, or raise with the tail of its log."""
    from pymilvus import MilvusClient

    deadline = time.monotonic() + timeout
    stderr = server.data_dir / "logs" / "milvus-stderr.log"
    while time.monotonic() < deadline:
        if stderr.exists() and "address already in use" in stderr.read_text(errors="replace"):
            raise PortTaken(f"Milvus standalone at {server.uri}: a port was taken meanwhile: {_tail(server)}")
        if server.process.poll() is not None:
            raise RuntimeError(f"milvus-server exited with code {server.process.returncode}: {_tail(server)}")
        try:
            client = MilvusClient(server.uri, timeout=5)
            client.list_collections(timeout=5)
            client.close()
            return
        except Exception:
            time.sleep(1.0)
    raise TimeoutError(f"Milvus standalone at {server.uri} not healthy within {timeout:.0f} s: {_tail(server)}")


def _tail(server: StandaloneServer, lines: int = 15) -> str:
    """The last lines of the server's logs, for error messages."""
    texts = []
    for path in (server.data_dir / "wrapper.log", server.log_path, server.data_dir / "logs" / "milvus-stderr.log"):
        if path.exists():
            texts += path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(texts)

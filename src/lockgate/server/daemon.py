"""``lockgate up``: one daemon per platform home.

It holds ``run/daemon.lock`` (an advisory lock the kernel drops when the process dies, so a
``kill -9`` leaves nothing to clean up), writes ``run/daemon.json`` (pid and URLs), and runs:

* the control-plane API on ``[daemon] bind_host:port`` (default 127.0.0.1:19700);
* one gateway per environment on its network policy's ``bind_host`` and the first port of its
  ``port_range``;
* the endpoint controller, the event worker, the batch-job worker, the scheduler of pipeline
  runs and the runner of detached pipeline executions (it also adopts one whose orchestrator
  died), in threads.

SIGTERM or Ctrl-C stops it gracefully: the servers stop accepting, endpoints drain, the files go.
Endpoints are rows in the stores, so the next ``lockgate up`` serves them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from ipaddress import IPv6Address
from pathlib import Path
from typing import IO, Any

from lockgate.config.daemon_files import INFO_FILE, LOCK_FILE, running
from lockgate.config.home import Home
from lockgate.errors import ConfigError, ConflictError
from lockgate.ids import isoformat, utcnow
from lockgate.platform import Platform

log = logging.getLogger("lockgate.daemon")


@contextlib.contextmanager
def _home_lock(home: Home) -> Iterator[IO[str]]:
    home.run_dir.mkdir(parents=True, exist_ok=True)
    handle = (home.run_dir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        info = running(home) or {}
        raise ConflictError(
            f"a daemon already runs for {home.root} (pid {info.get('pid')}, {info.get('api_url', 'starting')}).",
            hint="Stop it with `lockgate down`, or use it as it is.",
        ) from None
    try:
        yield handle
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _url(host: Any, port: int) -> str:
    shown = f"[{host}]" if isinstance(host, IPv6Address) else str(host)
    return f"http://{shown}:{port}"


def _listen(host: Any, port: int, what: str) -> socket.socket:
    family = socket.AF_INET6 if isinstance(host, IPv6Address) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((str(host), port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {_url(host, port)} for {what}: {exc.strerror}.",
            hint="Another program holds the port: stop it, or change the port in platform.toml.",
        ) from exc
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def serve(platform: Platform, *, on_ready: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Run the daemon in this process until SIGTERM or SIGINT."""
    import uvicorn

    from lockgate.automation.worker import Worker
    from lockgate.server.api import build_app
    from lockgate.serving.access import Access
    from lockgate.serving.controller import EndpointController
    from lockgate.serving.gateway import Gateway
    from lockgate.serving.routes import Routes

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # the daemon handles the signals for all of its servers

    home = platform.home
    with _home_lock(home):
        for name in platform.env_names:
            platform.ready(name)  # every store at the newest schema, or a clear error now
        routes = Routes()
        controller = EndpointController(platform, routes, home.run_dir)
        spec = platform.spec
        listeners: list[tuple[socket.socket, Any]] = []
        gateways: dict[str, Gateway] = {}
        gateway_urls: dict[str, str] = {}
        try:
            api_socket = _listen(spec.daemon.bind_host, spec.daemon.port, "the control-plane API")
            for name in platform.env_names:
                network = platform.env(name).spec.network
                port = network.port_range[0]
                gateways[name] = Gateway(
                    name, routes, list(network.allowed_clients), Access(platform, name)
                )
                listeners.append(
                    (_listen(network.bind_host, port, f"the {name} gateway"), gateways[name])
                )
                gateway_urls[name] = _url(network.bind_host, port)
        except ConfigError:
            for sock, _ in listeners:
                sock.close()
            raise
        controller.gateways = gateway_urls
        info = {
            "pid": os.getpid(),
            "home": str(home.root),
            "api_url": _url(spec.daemon.bind_host, spec.daemon.port),
            "gateways": gateway_urls,
            "started_at": isoformat(utcnow()),
        }
        app = build_app(platform, gateways, info)
        servers = [(Server(_config(app)), api_socket)] + [
            (Server(_config(gw)), sock) for sock, gw in listeners
        ]
        from lockgate.projects import ci

        stop = threading.Event()
        worker = Worker(platform, platform.env_names)
        threads = [
            threading.Thread(target=controller.run, args=(stop,), name="endpoint-controller"),
            threading.Thread(target=worker.run, args=(stop,), name="event-worker"),
            threading.Thread(target=_batch_worker, args=(platform, stop), name="batch-worker"),
            threading.Thread(
                target=_pipeline_runner, args=(platform, stop), name="pipeline-runner"
            ),
            threading.Thread(target=_scheduler, args=(platform, stop), name="scheduler"),
            threading.Thread(target=ci.worker, args=(platform, stop), name="ci-worker"),
        ]
        try:
            _event_loop_run(_run_servers(servers, threads, home, info, on_ready))
        finally:
            stop.set()
            for thread in threads:
                if thread.is_alive():
                    thread.join()
            controller.shutdown()
            (home.run_dir / INFO_FILE).unlink(missing_ok=True)


def start_detached(platform: Platform, *, timeout: float) -> dict[str, Any]:
    """Start ``lockgate up`` in the background (logs to ``run/daemon.log``); its ``daemon.json``
    once it serves, or a :class:`ConfigError` with the last lines it logged."""
    import subprocess
    import sys
    import time

    from lockgate.config.daemon_files import LOG_FILE
    from lockgate.serving.fleet import log_tail

    home = platform.home
    already = running(home)
    if already:
        raise ConflictError(
            f"a daemon already runs for {home.root} (pid {already.get('pid')}).",
            hint="Stop it with `lockgate down`.",
        )
    home.run_dir.mkdir(parents=True, exist_ok=True)
    log_path = home.run_dir / LOG_FILE
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "lockgate", "up", "--home", str(home.root)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = running(home)
        if info and info.get("pid") == process.pid:
            return info
        if process.poll() is not None:
            raise ConfigError(
                f"the daemon exited with status {process.returncode} while starting:\n{log_tail(log_path, 8)}"
            )
        time.sleep(0.1)
    process.terminate()
    raise ConfigError(f"the daemon did not start within {timeout:.0f} s; see {log_path}.")


def _batch_worker(platform: Platform, stop: threading.Event) -> None:
    """Run batch jobs left to the daemon (`batch run --detach`) or whose driver died."""
    import time

    from lockgate.auth.principal import local_principal
    from lockgate.serving import batch_service
    from lockgate.store import batch as jobs

    owner = local_principal()
    while not stop.wait(0.5):
        for name in platform.env_names:
            env = platform.env(name)
            with env.store.read() as session:
                job = jobs.claimable(session, time.time())
            if job is not None:
                log.info("batch job %s in %s: running", job.id, name)
                done = batch_service.drive(platform, owner, job.id, env=name)
                log.info("batch job %s in %s: %s", job.id, name, done.status)


#: Seconds a pending execution without a driver waits before the daemon drives it (a foreground
#: `pipeline run` takes its lease within milliseconds of creating it).
PENDING_GRACE_S = 3.0
#: Executions the daemon drives at once.
MAX_EXECUTIONS = 4


def _pipeline_runner(platform: Platform, stop: threading.Event) -> None:
    """Drive detached executions, and adopt those whose orchestrator died (lease lapsed)."""
    import time
    from datetime import datetime

    from lockgate.auth.principal import local_principal
    from lockgate.errors import LockgateError
    from lockgate.pipelines import service
    from lockgate.pipelines.leases import owner_is_gone
    from lockgate.store import pipelines as db

    owner = local_principal()
    drivers: dict[str, threading.Thread] = {}

    def drive(execution_id: str, env: str) -> None:
        try:
            done = service.drive(platform, owner, execution_id, env=env)
            log.info("execution %s in %s: %s", execution_id, env, done.status)
        except LockgateError as exc:  # e.g. another driver took it first: nothing to do
            log.info("execution %s in %s not driven here: %s", execution_id, env, exc.message)

    while not stop.wait(1.0):
        drivers = {k: t for k, t in drivers.items() if t.is_alive()}
        now = time.time()
        for name in platform.env_names:
            with platform.env(name).store.read() as session:
                active = db.active_executions(session)
            for e in active:
                if e.id in drivers or len(drivers) >= MAX_EXECUTIONS:
                    continue
                created = datetime.fromisoformat(e.created_at.replace("Z", "+00:00")).timestamp()
                waiting = (
                    e.status == "pending"
                    and e.lease_owner is None
                    and now - created > PENDING_GRACE_S
                )
                orphaned = e.lease_owner is not None and (
                    (e.lease_expires_at or 0) < now or owner_is_gone(e.lease_owner)
                )
                if waiting or orphaned:
                    log.info("execution %s in %s: driving it", e.id, name)
                    thread = threading.Thread(target=drive, args=(e.id, name), daemon=True)
                    drivers[e.id] = thread
                    thread.start()


def _scheduler(platform: Platform, stop: threading.Event) -> None:
    """Start scheduled pipeline runs when their slot comes (the runner then drives them)."""
    from lockgate.pipelines import schedules

    while not stop.wait(5.0):
        for fired in schedules.tick(platform):
            if fired.execution is not None:
                log.info(
                    "schedule %s in %s: slot %s → execution %s",
                    fired.schedule,
                    fired.environment,
                    fired.slot,
                    fired.execution.id,
                )


def _event_loop_run(main: Any) -> None:
    """Run ``main`` on uvloop where it exists (it halves the gateway's per-request cost)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def _config(app: Any) -> Any:
    import uvicorn

    return uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=30,
    )


async def _run_servers(
    servers: list[tuple[Any, socket.socket]],
    threads: list[threading.Thread],
    home: Home,
    info: dict[str, Any],
    on_ready: Callable[[dict[str, Any]], None] | None,
) -> None:
    loop = asyncio.get_running_loop()

    def shut_down() -> None:
        for server, _ in servers:
            server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, shut_down)
    tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in servers]
    while not all(server.started for server, _ in servers):
        if any(task.done() for task in tasks):
            break
        await asyncio.sleep(0.01)
    else:
        for thread in threads:
            thread.start()
        _write_info(home.run_dir / INFO_FILE, info)
        log.info("daemon ready: %s", info["api_url"])
        if on_ready is not None:
            on_ready(info)
    await asyncio.gather(*tasks)


def _write_info(path: Path, info: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, path)

"""The OpenAI-compatible server on Ray Serve replicas: one server per replica, one store.

```bash
langchain-pad serve --replicas 2 --profiles postgresql://pad@db/pad   # a local Ray
langchain-pad serve --replicas 8 --ray-address ray://head:10001 --profiles postgresql://...
```

```python
from langchain_pad.integrations.ray_serve import ReplicaOptions, serve_replicas
from langchain_pad.integrations.server import ServerSettings

serve_replicas(ServerSettings(), profiles="postgresql://pad@db/pad",
               options=ReplicaOptions(replicas=2))   # until Ctrl-C
```

Why Ray Serve: it already does what a scale-out needs and we should not write by hand
(replica placement over a cluster, an HTTP proxy that routes each request to a replica
with room, health checks, and a replica started in place of one that died). Each replica
is the single-process server unchanged: :class:`PADReplica` builds its app with
:func:`~langchain_pad.integrations.server.create_app`, so every route, limit and
error of ``langchain-pad serve`` is the same behind the proxy, and each replica owns one
:class:`~langchain_pad.runtime.PADRuntime` whose decoding thread batches the requests
routed to it. Replicas share nothing but the profile store, which must therefore be a
server all of them reach (PostgreSQL): a SQLite file is refused for more than one
replica (several processes, possibly on several machines, writing one file). A
feedback write through one replica is one PostgreSQL transaction, and the next request
on any replica reads the profile from PostgreSQL.

A replica that dies (killed, out of memory) is replaced by Serve. Requests it was
decoding fail: the client gets an error status from the proxy (5xx; OpenAI clients
retry those by themselves, and a completion may be retried, it writes nothing), while
a profile write is a PostgreSQL transaction that either committed before the reply or
left nothing behind. Every response names its replica in the ``x-pad-replica``
header (the Ray actor's name), so operators and tests can tell replicas apart.

Needs the ``ray`` extra (``pip install 'langchain-pad[ray]'``). On a cluster
(``ray_address``) every node needs langchain-pad installed and the model files (or
their cache directory) where the replicas run.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

try:
    import ray
    from ray import serve
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "langchain_pad.integrations.ray_serve needs the ray extra: pip install 'langchain-pad[ray]'"
    ) from exc

from .server import ServerSettings, create_app

if TYPE_CHECKING:
    from fastapi import FastAPI, Request, Response
    from ray.serve.handle import DeploymentHandle

__all__ = [
    "APP_NAME",
    "PROXY_CALLBACK",
    "REPLICA_HEADER",
    "PADReplica",
    "ReplicaOptions",
    "build_application",
    "check_profiles",
    "serve_replicas",
    "start_ray",
]

APP_NAME = "langchain-pad"
"""The Serve application's name (and its deployment's: ``PADReplica``)."""
PROXY_CALLBACK = "langchain_pad.integrations.ray_serve_proxy:middlewares"
"""Installed in Serve's proxy: retries completions a dead replica held, and answers
other requests it lost with a clear 503 (see ``ray_serve_proxy``)."""
REPLICA_HEADER = "x-pad-replica"
"""Response header naming the replica that answered (its Ray actor's name)."""


@dataclass(frozen=True)
class ReplicaOptions:
    """How many replicas, and what each may use of a machine."""

    replicas: int = 2
    cpus_per_replica: float = 1.0
    """Ray CPUs each replica reserves (fractional is allowed): Ray places replicas by
    it, so e.g. 0.5 packs two replicas on one reserved core."""
    threads_per_replica: int = 1
    """torch / OpenMP threads each replica decodes with. Their product with the
    replicas on a machine should not exceed its cores (the threads would fight)."""
    max_ongoing_requests: int | None = None
    """Requests the proxy sends one replica at once (Serve's default is 5, too few to
    fill a batch); None: the server's ``max_batch_size`` times its ``max_waves``."""
    health_check_period: float = 10.0
    """Seconds between Serve's health checks of each replica."""

    def __post_init__(self) -> None:
        if not isinstance(self.replicas, int) or self.replicas < 1:
            raise ValueError(f"replicas must be an integer >= 1, got {self.replicas!r}")
        if not self.cpus_per_replica > 0:
            raise ValueError(
                f"cpus_per_replica must be a number > 0 (fractional allowed), "
                f"got {self.cpus_per_replica!r}"
            )
        if not isinstance(self.threads_per_replica, int) or self.threads_per_replica < 1:
            raise ValueError(
                f"threads_per_replica must be an integer >= 1, got {self.threads_per_replica!r}"
            )
        ongoing = self.max_ongoing_requests
        if ongoing is not None and (not isinstance(ongoing, int) or ongoing < 1):
            raise ValueError(
                f"max_ongoing_requests must be an integer >= 1 or None, got {ongoing!r}"
            )


def check_profiles(profiles: str | None, replicas: int) -> None:
    """Refuse a profile store the replicas cannot share.

    Several replicas are several processes (on several machines, with a cluster): a
    SQLite file written by all of them is a file lock contest where it works and a
    split store where the file is not shared, so more than one replica needs a
    PostgreSQL store, which every replica reaches and which serializes writes per user.
    """
    if profiles is None or replicas <= 1:
        return
    if not profiles.startswith(("postgresql://", "postgres://")):
        raise ValueError(
            f"profiles={profiles!r}: {replicas} replicas are {replicas} processes, and a "
            "SQLite file cannot be one store for several processes (or machines); pass a "
            "PostgreSQL URL (postgresql://user@host/db), or serve one replica"
        )


def _open_store(profiles: str, reward_model: str | None) -> Any:
    """The replica's own connection to the shared store (each replica opens one)."""
    if profiles.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresProfileStore

        return PostgresProfileStore(profiles, reward_model=reward_model)
    from langchain_pad.profiles import SQLiteProfileStore  # one replica only

    return SQLiteProfileStore(profiles, reward_model=reward_model)


@serve.ingress()
class PADReplica:
    """One Serve replica: the single-process server, with its own runtime and store
    connection. Built from plain values (a ``ServerSettings`` without live objects and
    the store's location) so Ray can ship it to any node."""

    def __init__(self, settings: ServerSettings, profiles: str | None, threads: int) -> None:
        import torch

        # this process is the replica's own: its thread count is the replica's setting
        torch.set_num_threads(threads)
        store = None if profiles is None else _open_store(profiles, settings.reward_model)
        self._settings = dataclasses.replace(settings, profile_store=store)
        self._name = serve.get_replica_context().replica_id.to_full_id_str()

    def __serve_build_asgi_app__(self) -> FastAPI:
        app = create_app(self._settings)
        name = self._name

        @app.middleware("http")
        async def name_the_replica(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            response = await call_next(request)
            response.headers[REPLICA_HEADER] = name
            return response

        return app


def build_application(
    settings: ServerSettings, *, profiles: str | None, options: ReplicaOptions
) -> Any:
    """The Serve application (``serve.run`` it): ``options.replicas`` copies of
    :class:`PADReplica`."""
    if settings.profile_store is not None or settings.runtime is not None:
        raise ValueError(
            "settings.profile_store / settings.runtime are objects of this process and "
            "cannot travel to the replicas: leave them None and pass profiles= (the "
            "store's URL); each replica builds its own runtime"
        )
    check_profiles(profiles, options.replicas)
    ongoing = options.max_ongoing_requests or settings.max_batch_size * settings.max_waves
    threads = str(options.threads_per_replica)
    deployment = serve.deployment(
        name="PADReplica",
        num_replicas=options.replicas,
        max_ongoing_requests=ongoing,
        health_check_period_s=options.health_check_period,
        ray_actor_options={
            "num_cpus": options.cpus_per_replica,
            # read by OpenMP / MKL as the replica's process starts
            "runtime_env": {"env_vars": {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}},
        },
    )(PADReplica)
    return deployment.bind(settings, profiles, options.threads_per_replica)


def start_ray(address: str | None, options: ReplicaOptions, *, out: TextIO = sys.stderr) -> None:
    """Join the cluster at ``address``, or start a local Ray sized for the replicas.

    The local instance has no dashboard and exactly the CPUs the replicas reserve
    (``ceil(replicas * cpus_per_replica)``), so it never schedules more work than was
    asked for on a small machine.
    """
    # Ray's workers inherit a local instance's environment (PYTHONPATH included) and the
    # driver's working directory on their import path; a cluster's nodes need the package
    if address is not None:
        print(f"joining the Ray cluster at {address} ...", file=out, flush=True)
        ray.init(address=address, logging_level=logging.WARNING)
        return
    cpus = math.ceil(options.replicas * options.cpus_per_replica)
    print(f"starting a local Ray instance ({cpus} CPUs, no dashboard) ...", file=out, flush=True)
    ray.init(
        num_cpus=cpus,
        include_dashboard=False,
        logging_level=logging.WARNING,
    )


class _Progress(threading.Thread):
    """Prints the replicas' states while Serve starts them (each loads the model)."""

    def __init__(self, out: TextIO) -> None:
        super().__init__(name="pad-ray-progress", daemon=True)
        self.out = out
        self.done = threading.Event()

    def run(self) -> None:
        last = ""
        started = time.monotonic()
        while not self.done.wait(2.0):
            try:
                app = serve.status().applications.get(APP_NAME)
            except Exception:  # progress only: serve.run reports what failed
                continue
            if app is None:
                continue
            states = {
                str(state).rsplit(".", 1)[-1].lower(): n
                for d in app.deployments.values()
                for state, n in d.replica_states.items()
            }
            line = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
            if line and line != last:
                elapsed = time.monotonic() - started
                print(f"  replicas after {elapsed:.0f} s: {line}", file=self.out, flush=True)
                last = line


def deploy(
    settings: ServerSettings,
    *,
    profiles: str | None,
    options: ReplicaOptions,
    host: str = "127.0.0.1",
    port: int = 8000,
    out: TextIO = sys.stderr,
) -> DeploymentHandle[Any]:
    """Start Serve's proxy on ``host:port`` and the replicas; return when all answer."""
    application = build_application(settings, profiles=profiles, options=options)
    # the proxy's answer to a replica lost under a request (ray_serve_proxy); like
    # http_options, it applies where this call starts Serve, not to a running one
    callback = {"RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": PROXY_CALLBACK}
    serve.start(
        http_options={"host": host, "port": port},
        controller_options={"runtime_env": {"env_vars": callback}},
    )
    print(
        f"starting {options.replicas} replica(s) ({options.cpus_per_replica:g} CPU, "
        f"{options.threads_per_replica} thread(s) each; each loads the model) ...",
        file=out,
        flush=True,
    )
    progress = _Progress(out)
    progress.start()
    try:
        handle = serve.run(application, name=APP_NAME, route_prefix="/")
    finally:
        progress.done.set()
    print(f"ready: http://{host}:{port}/v1 ({options.replicas} replicas)", file=out, flush=True)
    return handle


def serve_replicas(
    settings: ServerSettings,
    *,
    profiles: str | None,
    options: ReplicaOptions,
    ray_address: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    allow_unauthenticated_remote: bool = False,
    out: TextIO = sys.stderr,
) -> None:
    """Run the replicated server until Ctrl-C (or SIGTERM), then take it down.

    A local Ray instance is shut down with it; on a cluster only this application is
    deleted (the cluster and its other applications stay). The proxy's ``host`` obeys
    the single-process server's rule: without ``settings.api_keys`` a non-loopback
    address is refused (``ValueError``) unless ``allow_unauthenticated_remote``.
    """
    from .server_auth import check_bind

    check_bind(
        host,
        keyed=settings.api_keys is not None,
        allow_unauthenticated_remote=allow_unauthenticated_remote,
    )
    check_profiles(profiles, options.replicas)
    start_ray(ray_address, options, out=out)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    previous_int = signal.getsignal(signal.SIGINT)
    try:
        deploy(settings, profiles=profiles, options=options, host=host, port=port, out=out)
        print(f"Ray address: {ray.get_runtime_context().gcs_address}", file=out, flush=True)
        while not stop.wait(0.5):
            # Ctrl-C sets the event as SIGTERM does. Ray's driver swaps SIGINT handlers
            # around some of its calls (DeferSigint); once, at the end of a loaded test
            # suite, Ctrl-C then reached a deferring handler and the service never
            # stopped. Only this loop runs on the main thread now, so it owns SIGINT.
            if signal.getsignal(signal.SIGINT) is not on_signal:
                signal.signal(signal.SIGINT, on_signal)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        print("shutting down ...", file=out, flush=True)
        if ray_address is None:
            serve.shutdown()  # type: ignore[no-untyped-call]
        else:
            serve.delete(APP_NAME)
        ray.shutdown()
        print("stopped", file=out, flush=True)

"""`deita serve`: load the models once, print the URL, serve until SIGINT or SIGTERM, then finish the
requests in flight and exit 0."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from deita.errors import DeitaError

log = logging.getLogger(__name__)


def load_select_config(config_file: Path | None, preset: str | None, device: str | None, run: Any = None) -> Any:
    """The service's `SelectConfig`: the YAML file and preset as `deita select` reads them; with neither, the
    config of the loaded run (so `--selection OUTPUT` alone serves with the run's own models)."""
    from deita.config_layers import Layer
    from deita.select_config import SelectConfig

    if config_file is None and preset is None and run is not None:
        config = run.config
        if device is not None:
            config = dataclasses.replace(config, **{name: dataclasses.replace(getattr(config, name), device=device)
                                                    for name in ("complexity", "quality", "embed")})
        return config
    data = SelectConfig.from_yaml(config_file) if config_file else {}
    flags = Layer("", {"preset": preset} if preset is not None else {}, lambda _: "--preset")
    return SelectConfig.build(data, str(config_file) if config_file else "options", flags, device)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, bound before the models load, so that a taken port fails at once."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as err:
        raise DeitaError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def graceful_server_class() -> type:
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """uvicorn's server, which on SIGINT/SIGTERM stops accepting, finishes the requests in flight and
        returns (uvicorn itself raises the signal again afterwards, which would end the process by it)."""

        stopped_by: int | None = None

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            handled = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

        def handle_exit(self, sig: int, frame: Any) -> None:
            self.stopped_by = self.stopped_by or sig
            super().handle_exit(sig, frame)

    return GracefulServer


SERVE_PACKAGES = ("fastapi", "uvicorn", "prometheus_client")


def require_serve_extra() -> None:
    """The web stack is an extra: say how to install it rather than fail on an import."""
    import importlib

    for name in SERVE_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            raise DeitaError(f"deita serve needs the serve extra ({name} is not installed): "
                             "pip install -e '.[serve]'") from None


def serve(config: Any, options: Any, run: Any = None) -> None:
    """Bind, load, serve; returns after a clean stop."""
    require_serve_extra()
    import uvicorn

    from deita.serve.app import build_app
    from deita.serve.service import Service

    if not options.loopback and not options.api_key_env:
        click.echo(f"warning: listening on {options.host} without an API key: anyone who can reach this address "
                   "can use the service; set --api-key-env NAME", err=True)
    sock = listen(options.host, options.port)
    try:
        service = Service.load(config, options, run)
        app = build_app(service)
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        logging.getLogger("uvicorn.access").setLevel(logging.INFO if options.access_log else logging.WARNING)
        server = graceful_server_class()(uvicorn.Config(app, log_config=None, access_log=options.access_log,
                                                        timeout_graceful_shutdown=options.shutdown_timeout,
                                                        lifespan="on"))
        url = url_of(sock)
        models = ", ".join(f"{m['role']} {m['model']}" for m in service.engine.models())
        click.echo(f"loaded {models}" + (f"; pool of {len(service.pool):,} records from {run.output}"
                                         if service.pool is not None else ""))
        click.echo(f"serving on {url}  (page {url}/, API docs {url}/docs); stop with Ctrl+C or SIGTERM", err=False)
        server.run(sockets=[sock])
    finally:
        sock.close()
    name = signal.Signals(server.stopped_by).name if server.stopped_by else "shutdown"
    click.echo(f"stopped ({name}): the requests in flight were answered")


def serve_command() -> click.Command:
    from deita.cli.flags import build_config, command, config_flags
    from deita.runtime.devices import DEVICE_HELP
    from deita.serve.config import ServeConfig
    from deita.workflow import DEFAULT_PRESET, PRESETS, SECTIONS

    serve_flags = config_flags(ServeConfig)
    config_file = click.Option(["--config", "config_file"], type=click.Path(path_type=Path),
                               help=f"The YAML `deita select` reads (sections {', '.join(SECTIONS)}): its scorers, "
                                    "embedder, threshold and sort key. Default: the --selection run's own config.")
    preset = click.Option(["--preset"], help=f"{', '.join(PRESETS)} (as for `deita select`).  [default: the "
                          f"--selection run's, else {DEFAULT_PRESET}]")
    device = click.Option(["--device"], help=f"{DEVICE_HELP} For the scorers and the embedder.")

    def run(config_file: Path | None, preset: str | None, device: str | None, **values: Any) -> None:
        from deita.serve.selection import FinishedRun

        options = build_config(ServeConfig, serve_flags, values)
        finished = FinishedRun(options.selection) if options.selection else None
        serve(load_select_config(config_file, preset, device, finished), options, finished)

    return command("serve", "Serve the scorers and the embedder over HTTP, with a page to try them: paste a "
                   "record, see its per-turn scores, its record score and, with --selection, its rank and nearest "
                   "neighbours in a finished selection.\n\nConcurrent requests are merged into the engine's "
                   "batches. API: POST /v1/score, /v1/neighbors, /v1/embeddings (OpenAI format); GET /v1/info, "
                   "/healthz, /metrics (Prometheus), /docs.\n\nExamples:\n\n  deita serve --preset offline\n\n  "
                   "deita serve --selection out/selected.jsonl --port 8080", [config_file, preset, device], run,
                   (serve_flags,))

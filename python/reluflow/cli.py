"""The ``reluflow`` command (and ``python -m reluflow``): run a TOML experiment into a results store,
say what this machine has. A bad config exits with status 2 and one line naming the key path."""
from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from ._version import __version__
from .experiments import ConfigError, load_config, plot_store, plot_sweep, run_config, run_sweep
from .registry import backends, core

try:
    import typer
except ImportError:  # pragma: no cover - the cli extra
    typer = None

__all__ = ["main", "app"]


def _info() -> None:
    print(f"reluflow {__version__}, Python {platform.python_version()}, numpy {np.__version__}")
    core_, _ = core()
    if core_ is not None:
        print(f"cpu: SIMD path {core_.simd_path()}, {core_.max_threads()} OpenMP thread(s)")
    listing = backends()
    for info in listing.values():
        print(f"  {info!r}")
    cuda = listing["cuda"]
    print(f"GPU: {'CUDA kernels available' if cuda.available else cuda.detail}")


def _run(file: Path, out: Optional[Path], force: bool, quiet: bool) -> None:
    try:
        cfg = load_config(file)
        path = run_config(cfg, out, force=force, quiet=quiet or None)
    except ConfigError as exc:
        print(f"{file}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted: the store keeps every finished segment; run the same command again to resume",
              file=sys.stderr)
        raise SystemExit(130) from None
    if not quiet:
        print(f"results: {path}")


if typer is not None:
    app = typer.Typer(add_completion=False, no_args_is_help=True,
                      help="reluflow: risk and gradient flows of ReLU networks, from TOML experiments.")

    @app.command()
    def run(file: Path = typer.Argument(..., help="the experiment's TOML file"),
            out: Optional[Path] = typer.Option(None, "--out", help="results store (default results/<name>.zarr)"),
            force: bool = typer.Option(False, "--force", help="recompute a finished run"),
            quiet: bool = typer.Option(False, "--quiet", help="no progress bar, no summary")) -> None:
        """Run FILE into a Zarr store; a killed run resumes from its last checkpoint when run again."""
        _run(file, out, force, quiet)

    @app.command()
    def sweep(file: Path = typer.Argument(..., help="the sweep's TOML file (base + [sweep] of dotted paths)"),
              out: Optional[Path] = typer.Option(None, "--out", help="results store (default results/<name>.zarr)"),
              scheduler: Optional[str] = typer.Option(None, "--scheduler", help="a dask scheduler, tcp://host:port"),
              workers: Optional[int] = typer.Option(None, "--workers", help="local workers (default: one per core)"),
              force: bool = typer.Option(False, "--force", help="recompute finished points"),
              quiet: bool = typer.Option(False, "--quiet", help="no per-point lines")) -> None:
        """Run every point of FILE on dask.distributed, one group per point; finished points are
        skipped when run again, interrupted ones resume. Exit status 1 if a point failed."""
        try:
            path, failed = run_sweep(file, out, scheduler, workers, force, quiet)
        except ConfigError as exc:
            print(f"{file}: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        if not quiet:
            print(f"results: {path}")
        if failed:
            raise SystemExit(1)

    @app.command()
    def plot(store: Path = typer.Argument(..., help="a run's results store (.zarr)"),
             out: Optional[Path] = typer.Option(None, "--out", help="folder (default <store>-plots/)"),
             threshold: float = typer.Option(1e-3, "--threshold", help="sweeps: success = final risk below")) -> None:
        """A run: risk against steps (median and band over initializations), final-risk histogram, and in
        1-D the best realizations against the target. A sweep: success fraction and best/median final
        risk against the first sweep axis. PNG and PDF."""
        if (store / "checkpoint.json").exists():
            paths = plot_store(store, out)
        elif (store / "zarr.json").exists():
            paths = plot_sweep(store, out, threshold)
        else:
            print(f"store: {store} is not a reluflow results store", file=sys.stderr)
            raise SystemExit(2)
        for p in paths:
            print(p)

    @app.command()
    def info() -> None:
        """Version, backends (and why not), SIMD path, threads."""
        _info()
else:  # pragma: no cover
    app = None


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``reluflow`` console script."""
    if app is None:
        print("the reluflow command needs typer: pip install \"reluflow[cli]\"", file=sys.stderr)
        raise SystemExit(1)
    app(args=argv, prog_name="reluflow")

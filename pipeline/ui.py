"""`make ui`: the MLflow UI on this repository's store, bound to 127.0.0.1, with the link that
opens the experiment's runs as charts (a fresh browser otherwise lands in MLflow's GenAI view).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from pipeline.cli import run_cli
from pipeline.params import load_params
from pipeline.store import tracking_uri

# MLflow's job runner (eight processes for GenAI jobs) does nothing for this project's runs; every
# server the docs start, and `make ui`, go without it.
NO_JOB_RUNNER = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def runs_link(base: str, experiment_id: str | None) -> str:
    """The page that lists the experiment's runs with their charts."""
    if experiment_id is None:
        return base
    return f"{base}/#/experiments/{experiment_id}/runs?compareRunsMode=CHART"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    import mlflow

    experiment = load_params(args.params).mlflow.experiment
    uri = tracking_uri()
    server = uri.startswith(("http://", "https://"))
    found = mlflow.MlflowClient(tracking_uri=uri).get_experiment_by_name(experiment)
    base = uri.rstrip("/") if server else f"http://127.0.0.1:{args.port}"
    link = runs_link(base, found and found.experiment_id)
    print(f"open {link}" + ("" if found else f" (no runs of {experiment!r} yet)"), flush=True)
    if server:  # MLFLOW_TRACKING_URI names a server: it serves the UI itself
        return
    mlflow_cli = os.path.join(os.path.dirname(sys.executable), "mlflow")
    command = ["mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1"]
    env = NO_JOB_RUNNER | dict(os.environ)  # unless the user set it
    os.execve(mlflow_cli, [*command, "--port", str(args.port)], env)


if __name__ == "__main__":
    sys.exit(run_cli(main))

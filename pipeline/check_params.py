"""Stage `check_params`: every param validated before any other stage runs.

DVC deletes a stage's outputs just before it runs the stage, so a wrong value found by the
stage itself would cost the outputs of the last good run (models, and the committed results
that `dvc checkout` cannot restore). Every other stage depends on this one's output, so DVC
runs it first whenever any param changes, and a refused value stops `dvc repro` before anything
is deleted. The output's content never changes, so passing the check reruns nothing downstream;
it is `persist`ed, so a failed check does not delete it either. It logs no MLflow run: it
computes nothing to track. With a tracking server it also checks that the account may log to
`mlflow.experiment` there, for the same reason: a stage refused by the server would come too
late.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from pipeline import cli
from pipeline.files import atomic_path

# Constant on purpose: stages downstream see an unchanged dependency.
STAMP = "params.yaml passed every check (stage check_params)\n"


def main(argv: Sequence[str] | None = None) -> None:
    args, params = cli.parse_stage(cli.stage_parser(__doc__, "output"), argv)
    if os.environ.get("MLFLOW_TRACKING_URI", "").startswith(("http://", "https://")):
        from pipeline import tracking  # MLflow's import costs seconds; a local store needs none

        tracking.check_can_log(params.mlflow.experiment)
    if not (args.output.is_file() and args.output.read_text() == STAMP):
        with atomic_path(args.output) as tmp:
            tmp.write_text(STAMP)
    print(f"{args.params}: every param is valid")


if __name__ == "__main__":
    sys.exit(cli.run_cli(main))

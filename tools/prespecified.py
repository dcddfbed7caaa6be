"""The claims study judged twice: by the analysis as committed before its first results, and by
today's, side by side.

    python tools/prespecified.py     # writes reports/studies/claims/prespecified.{md,json}

The decision rule, every smallest effect and a first set of comparisons per claim were committed
(`--commit`, by default e8e2425) before any cell of the study had finished; parts of claims and
the rule's count of split seeds were added later, after results had been seen. This reads the
committed study with today's code, judges it with today's claims module and with the one at
`--commit` (taken from git history, so run it in a clone), and writes both verdicts per claim
(prespecified.md) and the earlier ones for the report (prespecified.json).
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import claims, report, studies  # noqa: E402
from pipeline.decide import Comparison  # noqa: E402

BEFORE = "e8e2425"


def swap_package(path: str | None) -> dict:
    """Forget every loaded `pipeline` module; import it from `path` next (None: from ROOT)."""
    gone = {n: sys.modules.pop(n) for n in list(sys.modules) if n.split(".")[0] == "pipeline"}
    sys.path[0] = path or str(ROOT)
    return gone


def judged_at(commit: str, study, timing) -> list:
    """The claims as the claims module of `commit` judges today's study files."""
    archive = subprocess.run(
        ["git", "archive", commit, "pipeline"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        today = swap_package(tmp)
        try:
            old = importlib.import_module("pipeline.claims")
            judge = getattr(old, "settle", None) or old.judge_tutorial_claims
            return judge(study, timing) + old.further(study)
        finally:
            swap_package(None)
            sys.modules.update(today)


def parts(claim) -> str:
    """Each comparison of an earlier claim, its numbers printed as today's report prints them;
    claim 6's "seeds" are timing samples."""
    shown = []
    for p in claim.parts:
        c = p.comparison
        numbers = Comparison(c.label, c.measure, dict(c.differences)).format()
        if claim.key == "6":
            numbers = numbers.replace("seeds", "timing samples")
        shown.append(f"{c.label} ({c.measure.name}): {numbers}, {p.verdict}")
    return "; ".join(shown)


def table(commit: str, before: list, now: list) -> str:
    rows = [
        "| claim | before the results | its comparisons then | reported now |",
        "| --- | --- | --- | --- |",
    ]
    earlier = {c.key: c for c in before}
    for c in now:
        then = earlier.get(c.key)
        rows.append(
            f"| {c.key} | {then.verdict if then else '(no such claim)'} | "
            f"{parts(then) if then else ''} | {c.verdict} |"
        )
    return (
        f"# The claims as judged by the analysis of commit `{commit}`\n\n"
        "Written by `tools/prespecified.py` from the committed study: the verdicts of the "
        f"claims module as it stood at `{commit}`, before any cell of the study had finished, "
        "beside the report's. Both read the same files; only the analysis differs. The earlier "
        "comparisons' numbers are printed as the report prints them (their 'points' are "
        "percentage points); the study's README lists what changed after the results and "
        "why.\n\n" + "\n".join(rows) + "\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit", default=BEFORE)
    parser.add_argument("--study", type=Path, default=ROOT / "reports/studies/claims")
    parser.add_argument("--output", type=Path, help="the folder to write to (default: --study)")
    args = parser.parse_args(argv)
    output = args.output or args.study
    study = studies.read_study(args.study)
    timing = report.read_study_file(args.study, report.TIMING)
    now = claims.judge_tutorial_claims(study, timing) + claims.further(study)
    before = judged_at(args.commit, study, timing)
    (output / "prespecified.md").write_text(table(args.commit, before, now))
    # What the report reads: the verdict of each claim under the earlier analysis.
    verdicts = {"commit": args.commit, "verdicts": {c.key: c.verdict for c in before}}
    (output / report.PRESPECIFIED).write_text(json.dumps(verdicts, indent=2) + "\n")


if __name__ == "__main__":
    main()

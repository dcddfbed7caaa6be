"""The results contract: the committed files read back and written again are the same bytes."""

import json
from pathlib import Path

import pytest

from pipeline.results import ScoresOnTestSet, TrainingSummary

PROJECT = Path(__file__).resolve().parents[2]
# This run's results and every committed study cell's.
FOLDERS = [PROJECT / "results", *sorted(PROJECT.glob("reports/studies/*/*/results"))]


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: str(f.relative_to(PROJECT)))
def test_committed_results_are_written_back_byte_for_byte(folder, tmp_path):
    ScoresOnTestSet.read(folder).write(tmp_path)
    names = ["test_metrics.json", "evaluation.json"]
    for summary in sorted(folder.glob("curves/*/train.json")):
        name = str(summary.relative_to(folder))
        TrainingSummary.model_validate_json(summary.read_bytes()).write(tmp_path / name)
        names.append(name)
    assert len(names) > 2
    for name in names:
        assert (tmp_path / name).read_bytes() == (folder / name).read_bytes(), name


def test_files_from_before_the_paired_gaps_and_the_step_curve_still_read(tmp_path):
    results = PROJECT / "results"
    evaluation = json.loads((results / "evaluation.json").read_text())
    del evaluation["relu_minus_sigmoid"]
    (tmp_path / "evaluation.json").write_text(json.dumps(evaluation))
    (tmp_path / "test_metrics.json").write_bytes((results / "test_metrics.json").read_bytes())
    assert ScoresOnTestSet.read(tmp_path).paired == {}

    summary = json.loads((results / "curves/relu/train.json").read_text())
    for key in ("escape_step_per_seed", "steps_per_epoch", "step_curve_images"):
        del summary[key]
    old = TrainingSummary.model_validate(summary)
    assert old.escape_step_per_seed == {} and old.steps_per_epoch is None
    assert old.escape_epoch_per_seed == {
        int(s): e for s, e in summary["escape_epoch_per_seed"].items()
    }

"""A study folder read back as the report reads it: cells, arms, per-seed numbers, the summary."""

import json

import pandas as pd
import yaml
from results_records import model_details

from pipeline.results import MeanTestMetrics, ScoresOnTestSet
from pipeline.studies import budget_table, read_study, summary_table

PARAMS = {
    "data": {"url": "a.tar.gz", "sha256": "0" * 64, "val_size": 10, "train_limit": 0, "seed": 42},
    "model": {
        "conv_filters": 32,
        "kernel_size": 3,
        "pool_size": 2,
        "dense_units": 128,
        "conv_blocks": 1,
        "dense_layers": 1,
        "batch_norm": False,
        "initializer": "glorot_uniform",
    },
    "train": {
        "epochs": 2,
        "batch_size": 64,
        "learning_rate": 0.001,
        "seeds": [42, 43],
        "distribution": "none",
        "extra_activations": [],
    },
    "evaluate": {"n_examples": 0},
    "mlflow": {"experiment": "x"},
}


def write_cell(folder, accuracy, stuck_seed=None):
    """A finished cell as tools/study.py copies it: params.yaml, results/, wall_seconds.json."""
    folder.mkdir(parents=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    (folder / "wall_seconds.json").write_text(json.dumps({"wall_seconds": 600}))
    results = folder / "results"
    details = {}
    for activation, base in accuracy.items():
        for seed in (42, 43):
            run = results / "train" / activation / f"seed{seed}"
            run.mkdir(parents=True)
            val = [0.1, 0.1] if seed == stuck_seed and activation == "sigmoid" else [0.3, 0.4]
            pd.DataFrame(
                {
                    "epoch": [1, 2],
                    "loss": 1.0,
                    "accuracy": val,
                    "val_loss": 1.0,
                    "val_accuracy": val,
                }
            ).to_csv(run / "history.csv", index=False)
            pd.DataFrame({"epoch": [0, 1, 2], "mean_slope/dense": 0.2}).to_csv(
                run / "diagnostics.csv", index=False
            )
            pd.DataFrame({"step": [0, 5, 10], "val_accuracy": [0.1, val[0], val[1]]}).to_csv(
                run / "steps.csv", index=False
            )
            (run / "train.json").write_text(
                json.dumps({"steps_per_epoch": 10, "train_seconds": 100.0 + seed})
            )
        details[activation] = model_details({s: base + 0.01 * (s - 42) for s in (42, 43)})
    scores = {
        a: MeanTestMetrics.over_seeds(
            {
                s: {
                    k: 0.5
                    for k in (
                        "test_accuracy",
                        "test_loss",
                        "macro_precision",
                        "macro_recall",
                        "macro_f1",
                        "majority_share",
                    )
                }
                for s in (42, 43)
            }
        )
        for a in accuracy
    }
    ScoresOnTestSet(
        class_names=list("abcdefghij"), seeds=[42, 43], scores=scores, details=details
    ).write(results)


def test_a_study_reads_back_its_finished_cells_only(tmp_path):
    write_cell(tmp_path / "baseline", {"sigmoid": 0.45, "relu": 0.62}, stuck_seed=43)
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    study = read_study(tmp_path)
    assert list(study) == ["baseline"]
    sigmoid = study["baseline"]["sigmoid"]
    assert sigmoid.seeds == [42, 43] and sigmoid.total_steps == 20
    assert sigmoid.test == {42: {"test_accuracy": 0.45}, 43: {"test_accuracy": 0.46}}
    assert sigmoid.stuck() == {42: False, 43: True}
    # Seed 42 left chance at step 5 (two checks in a row above 0.15); seed 43 never: the run's length.
    assert sigmoid.steps_to_leave_chance() == {42: 5.0, 43: 20.0}
    cells = row(summary_table(study), 0)
    assert cells == ["baseline", "sigmoid", "2", "0.4550 [0.4500, 0.4600]", "1", "5, never"]


def row(table: str, index: int) -> list[str]:
    """One body row of a markdown table, its cells stripped."""
    return [cell.strip() for cell in table.splitlines()[2 + index].strip("|").split("|")]


def test_budget_reads_each_cells_wall_time_and_training_times(tmp_path):
    write_cell(tmp_path / "baseline", {"sigmoid": 0.45, "relu": 0.62})
    table = budget_table(tmp_path, read_study(tmp_path))
    assert row(table, 0) == [
        "baseline",
        "4",
        "142 s [142, 143]",
        "10 min",
        "not recorded (the study's README)",
    ]
    machine = {"cpu": "Intel(R) Xeon(R) Processor", "vector_extensions": "AVX-512"}
    (tmp_path / "baseline" / "machine.json").write_text(json.dumps(machine))
    table = budget_table(tmp_path, read_study(tmp_path))
    assert row(table, 0)[-1] == "Intel(R) Xeon(R) Processor, AVX-512"

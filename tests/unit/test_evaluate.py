"""evaluate's aggregation over seeds and its note on models no longer selected."""

import pandas as pd
import pytest

from pipeline.evaluate import long_format, mean_over_seeds, training_summary, unselected
from pipeline.results import ScoresOnTestSet


def trained(val_accuracy, seconds=10.0):
    history = pd.DataFrame(
        {
            "epoch": [1, 2],
            "loss": [2.0, 1.0],
            "accuracy": [0.2, 0.5],
            "val_loss": [2.1, 1.2],
            "val_accuracy": val_accuracy,
        }
    )
    # The step curve: out of chance by step 32 when the first epoch is; stuck otherwise.
    steps = pd.DataFrame(
        {
            "step": [0, 32, 64],
            "val_accuracy": [0.1, *([0.3, 0.4] if val_accuracy[0] > 0.15 else [0.1, 0.1])],
        }
    )
    summary = {
        "steps_per_epoch": 64,
        "step_curve_images": 50,
        "parameters": 7,
        "train_seconds": seconds,
        "diagnostics_seconds": 1.0,
    }
    return {"history": history, "steps": steps, "summary": summary}


def test_seed_means_and_the_summary_of_several_seeds():
    per_seed = {42: trained([0.1, 0.4]), 43: trained([0.3, 0.6], seconds=20.0)}
    mean = mean_over_seeds([t["history"] for t in per_seed.values()])
    assert mean["val_accuracy"].tolist() == pytest.approx([0.2, 0.5])
    summary = training_summary(per_seed)
    assert summary.val_accuracy == pytest.approx(0.5) and summary.seeds == 2
    assert summary.escape_epoch == 1  # of the mean curve: 0.2 > 0.15
    assert summary.escape_epoch_per_seed == {42: 2, 43: 1}
    assert summary.escape_step_per_seed == {42: None, 43: 32}
    assert summary.steps_per_epoch == 64
    assert summary.train_seconds == pytest.approx(30.0)
    stacked = long_format({s: t["history"] for s, t in per_seed.items()})
    assert stacked.columns[0] == "seed" and stacked["seed"].tolist() == [42, 42, 43, 43]


def test_models_the_params_no_longer_select_are_named(tmp_path):
    models, results = tmp_path / "models", tmp_path / "results"
    for activation, seed in (("relu", 42), ("relu", 43), ("tanh", 42)):
        (models / activation).mkdir(parents=True, exist_ok=True)
        (models / activation / f"seed{seed}.keras").write_bytes(b"")
        (results / activation / f"seed{seed}").mkdir(parents=True)
    left = unselected(models, results, ["sigmoid", "relu"], [42])
    assert [p.relative_to(tmp_path).as_posix() for p in left] == [
        "models/relu/seed43.keras",
        "models/tanh/seed42.keras",
        "results/relu/seed43",
        "results/tanh/seed42",
    ]


def test_the_newest_training_run_names_the_model_to_register():
    from types import SimpleNamespace as Run

    def run(start, model_ids):
        outputs = Run(model_outputs=[Run(model_id=m) for m in model_ids])
        return Run(info=Run(start_time=start), outputs=outputs)

    from pipeline.serving import logged_model_id

    assert logged_model_id([run(1, ["m-old"]), run(2, ["m-new"])]) == "m-new"
    assert logged_model_id([run(1, ["m-old"]), run(2, [])]) == "m-old"
    assert logged_model_id([]) is None  # trained against another store: evaluate logs it


def test_compute_scores_models_without_files_or_a_tracking_store(tmp_path, monkeypatch):
    import numpy as np

    from pipeline import evaluate
    from pipeline.model import TUTORIAL, build_cnn

    store = tmp_path / "never.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    small = TUTORIAL.model_copy(update={"conv_filters": 2, "dense_units": 4})
    models = {(a, s): build_cnn(a, small) for a in ("sigmoid", "relu") for s in (42, 43)}
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 30)
    evaluated = evaluate.compute(models, images, labels, [f"c{i}" for i in range(10)], 5)
    scored = evaluated.scored
    assert list(scored.scores) == ["sigmoid", "relu"] and scored.seeds == [42, 43]
    assert scored.scores["relu"].seeds == 2
    per_seed = {a: scored.details[a].accuracy_per_seed for a in ("sigmoid", "relu")}
    assert set(per_seed["sigmoid"]) == {42, 43}
    assert scored.scores["relu"].accuracy.mean == pytest.approx(
        np.mean([*per_seed["relu"].values()])
    )
    assert len(evaluated.examples) == 5 and set(evaluated.primary) == {"sigmoid", "relu"}
    assert scored.paired["test_accuracy"].difference.mean == pytest.approx(
        np.mean([per_seed["relu"][s] - per_seed["sigmoid"][s] for s in (42, 43)])
    )
    assert not store.exists()

    # What evaluate writes, the report reads back as the very same object.
    scored.write(tmp_path)
    assert ScoresOnTestSet.read(tmp_path) == scored


def answering(activation, small, predicted_class):
    """A small network that answers `predicted_class` for every image."""
    import numpy as np

    from pipeline.model import build_cnn

    model = build_cnn(activation, small)
    out = model.layers[-1]
    kernel, bias = out.get_weights()
    out.set_weights([np.zeros_like(kernel), 20.0 * np.eye(len(bias))[predicted_class]])
    return model


def test_the_first_seed_is_the_primary_and_the_champion_has_the_best_mean():
    """Seeds given as (43, 42): 43 is the primary, whose model gives the per-class detail, the
    examples and the registered model. Each model answers one class, so every number is known."""
    import numpy as np

    from pipeline import evaluate
    from pipeline.model import TUTORIAL

    small = TUTORIAL.model_copy(update={"conv_filters": 2, "dense_units": 4})
    answers = {("sigmoid", 43): 3, ("sigmoid", 42): 5, ("relu", 43): 2, ("relu", 42): 6}
    models = {pair: answering(pair[0], small, c) for pair, c in answers.items()}
    labels = np.repeat([3, 2, 6, 1], [12, 8, 8, 2])  # class 5 never occurs
    images = np.zeros((len(labels), 32, 32, 3), dtype=np.uint8)
    names = [f"c{i}" for i in range(10)]
    evaluated = evaluate.compute(models, images, labels, names, 4)
    scored = evaluated.scored
    assert scored.seeds == [43, 42]
    for activation in ("sigmoid", "relu"):
        assert evaluated.primary[activation] is models[activation, 43]
        shown = evaluated.examples[f"{activation}_predicted"].tolist()
        assert shown == [f"c{answers[activation, 43]}"] * 4
    assert scored.details["sigmoid"].accuracy == pytest.approx(12 / 30)
    assert scored.details["relu"].accuracy == pytest.approx(8 / 30)
    confusion = np.array(scored.details["relu"].confusion)
    assert confusion[:, 2].tolist() == np.bincount(labels, minlength=10).tolist()
    assert scored.details["sigmoid"].accuracy_per_seed == pytest.approx({43: 12 / 30, 42: 0.0})
    # The best mean over seeds (relu: 8/30 against 6/30), not the best primary model (sigmoid).
    assert scored.champion == "relu"

"""Stage `preprocess`: archive → uint8 arrays for train, validation and test, plus class names.

Images stay uint8 (a quarter of float32's size); the model scales them to [0, 1] itself.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pipeline import cli, outage, tracking
from pipeline.cifar import read_cifar10
from pipeline.errors import PipelineError
from pipeline.params import STAGE_PARAMS, logged_params
from pipeline.splits import class_counts, keep_classes, split_dataset, write_splits


def main(argv: Sequence[str] | None = None) -> None:
    args, params = cli.parse_stage(cli.stage_parser(__doc__, "archive", "output"), argv)
    if not args.archive.is_file():
        raise PipelineError(f"{args.archive} not found; run `dvc repro download` first")
    with tracking.stage_run(
        "preprocess", params.mlflow.experiment, logged_params(params, STAGE_PARAMS["preprocess"])
    ):
        with open(args.archive, "rb") as handle:
            cifar = read_cifar10(handle)
        names, classes = cifar.class_names, params.data.classes
        train = keep_classes(cifar.train_images, cifar.train_labels, names, classes)
        splits = split_dataset(*train, params.data)
        test = keep_classes(cifar.test_images, cifar.test_labels, names, classes)
        # val_size 0 reproduces the tutorial: it validated on the test set.
        if params.data.val_size == 0:
            splits["validation"] = test
        splits["test"] = test
        meta = {
            "class_names": list(classes or names),
            "validation_source": "test" if params.data.val_size == 0 else "train",
            "sizes": {name: len(labels) for name, (_, labels) in splits.items()},
            "class_counts": {
                name: class_counts(labels, len(classes or names))
                for name, (_, labels) in splits.items()
            },
        }
        write_splits(args.output, splits, meta)
        counts = {f"{name}_images": size for name, size in meta["sizes"].items()}
        steps = [
            ("the split sizes", lambda: tracking.log_metrics(counts)),
            ("meta.json", lambda: tracking.log_dict(meta, "meta.json")),
        ]
        outage.run_logging_steps("preprocess", steps)
    sizes = ", ".join(f"{k} {v:,}" for k, v in meta["sizes"].items())
    print(f"wrote {args.output}: {sizes} (validation from {meta['validation_source']})")


if __name__ == "__main__":
    sys.exit(cli.run_cli(main))

"""`make activation-cost`: what sigmoid and ReLU cost to compute in the tutorial's network.

A developer's tool, not a pipeline stage:

    python tools/activation_cost.py --output reports/studies/claims/activation-cost.json

It times, on the network's own tensor shapes at batch 64, each activation alone (forward, and
forward with its gradient) and the whole training step with each, sigmoid and ReLU taking turns
going first so that a machine slowing down or speeding up hits both alike. Every sample is kept
in the JSON beside the summary. Run it on an otherwise idle machine: a busy one makes the times
noisy, and a load that comes and goes can still favour one side within a pair.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from pipeline.cli import run_cli
from pipeline.errors import PipelineError
from pipeline.files import write_json
from pipeline.manifest import cpu_model, package_versions
from pipeline.stats import summarize_values

ACTIVATIONS = ("sigmoid", "relu")
BATCH = 64
# The hidden layers' pre-activations of the tutorial's network (pipeline.model.TUTORIAL) at
# batch 64: Conv2D(32, 3x3) on 32x32 images gives 30x30x32, the dense layer 128 units.
SHAPES = {"conv": (BATCH, 30, 30, 32), "dense": (BATCH, 128)}
STEP = "train_step"
PROBES = (
    "conv_forward",
    "conv_forward_backward",
    "dense_forward",
    "dense_forward_backward",
    STEP,
)
# Activations applied one after another in each turn of the timing loop, so the loop's own
# cost per turn (tens of microseconds) stays small beside the dense layer's activation.
UNROLL = 10
CONFIDENCE = 0.95
INTERVAL_METHOD = (
    "Student t on the logs of the per-sample ratios, back-transformed: an interval for the "
    "geometric mean ratio; differences: Student t on the per-sample differences (their mean)"
)
SHARE_FORMULA = (
    "(conv forward_backward + dense forward_backward) per call / train_step per step, "
    "each a median over the samples"
)


# --- pure functions ---------------------------------------------------------------------------


def pair_order(n: int, names: Sequence[str] = ACTIVATIONS) -> list[str]:
    """Which of the two goes first in each of `n` samples: alternating, starting with names[0]."""
    return [names[i % 2] for i in range(n)]


def loops_for(seconds_per_loop: float, target: float) -> int:
    """Loops whose total time reaches `target` seconds, given one loop's time."""
    if seconds_per_loop <= 0:
        return 1
    return max(1, math.ceil(target / seconds_per_loop))


def paired_summary(
    a_samples: Sequence[float],
    b_samples: Sequence[float],
    a_first: Sequence[bool] | None = None,
    confidence: float = CONFIDENCE,
) -> dict:
    """a against b over paired samples (a[i] and b[i] taken back to back): medians, the
    ratio a/b per sample with its median, geometric mean and interval, the difference a - b, and
    how often each went first (`a_first[i]`: a was timed before b in pair i).

    The order is "balanced" when each side went first in half the pairs (one more for an odd
    count); otherwise a drift or warm-up effect can lean on one side, and a warning says so.
    """
    a, b = np.asarray(a_samples, dtype=float), np.asarray(b_samples, dtype=float)
    if len(a) != len(b):
        raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
    if len(a) < 2:
        raise ValueError("a paired summary needs at least two pairs")
    if (a <= 0).any() or (b <= 0).any():
        raise ValueError("times must be positive")
    log_ratios = np.log(a / b)
    logs = summarize_values(log_ratios, confidence)
    diff = summarize_values(a - b, confidence)
    summary = {
        "n": len(a),
        "a_median": float(np.median(a)),
        "b_median": float(np.median(b)),
        "ratio": {
            "per_sample": (a / b).tolist(),
            "median": float(np.median(a / b)),
            "geometric_mean": math.exp(logs["mean"]),
            "ci_low": math.exp(logs["ci_low"]),
            "ci_high": math.exp(logs["ci_high"]),
        },
        "difference": {
            "median": float(np.median(a - b)),
            "mean": diff["mean"],
            "ci_low": diff["ci_low"],
            "ci_high": diff["ci_high"],
        },
        "confidence": confidence,
    }
    if a_first is not None:
        summary["order"] = pairing_balance(log_ratios, a_first)
    return summary


def pairing_balance(log_ratios: np.ndarray, a_first: Sequence[bool]) -> dict:
    """How often a went first, and the geometric mean ratio a/b in each order: a gap between
    the two is what going first or second does, which a balanced order cancels."""
    first = np.asarray(a_first, dtype=bool)
    if len(first) != len(log_ratios):
        raise ValueError(f"{len(first)} orders for {len(log_ratios)} pairs")
    n_a = int(first.sum())
    n_b = len(first) - n_a
    order = {
        "a_first": n_a,
        "b_first": n_b,
        "balanced": abs(n_a - n_b) <= 1,
        "ratio_when_a_first": math.exp(log_ratios[first].mean()) if n_a else None,
        "ratio_when_b_first": math.exp(log_ratios[~first].mean()) if n_b else None,
    }
    if not order["balanced"]:
        order["warning"] = (
            f"uneven order: a went first in {n_a} of {len(first)} pairs; a drift or warm-up "
            "effect is not cancelled"
        )
    return order


def summarize(raw: dict) -> dict:
    """The summary of a measurement's raw samples: per probe, sigmoid against ReLU per call;
    the activations' share of a training step; the step's difference and what the two
    activations' own costs predict of it."""
    first = raw["first"]
    sig, relu = ACTIVATIONS
    probes = {}
    for name, probe in raw["probes"].items():
        calls = probe["calls_per_sample"]
        per_call = {act: [s / calls for s in probe["seconds"][act]] for act in ACTIVATIONS}
        paired = paired_summary(per_call[sig], per_call[relu], [f == sig for f in first])
        probes[name] = {
            "seconds_per_call": {sig: paired.pop("a_median"), relu: paired.pop("b_median")},
            f"{sig}/{relu}": paired,
        }
    step = probes[STEP]["seconds_per_call"]
    activation = {
        act: sum(probes[f"{layer}_forward_backward"]["seconds_per_call"][act] for layer in SHAPES)
        for act in ACTIVATIONS
    }
    return {
        "probes": probes,
        "share_of_step": {act: activation[act] / step[act] for act in ACTIVATIONS},
        "share_formula": SHARE_FORMULA,
        "step_difference_seconds": probes[STEP][f"{sig}/{relu}"]["difference"],
        "step_difference_predicted_seconds": activation[sig] - activation[relu],
        "interval_method": INTERVAL_METHOD,
    }


def summary_lines(summary: dict) -> list[str]:
    """The summary in a few lines for the terminal."""
    sig, relu = ACTIVATIONS
    lines = []
    for name, probe in summary["probes"].items():
        times = probe["seconds_per_call"]
        ratio = probe[f"{sig}/{relu}"]["ratio"]
        lines.append(
            f"{name:24s} {sig} {times[sig] * 1e6:9.1f} us, {relu} {times[relu] * 1e6:9.1f} us, "
            f"ratio median {ratio['median']:.2f} (95% CI of the geometric mean "
            f"{ratio['ci_low']:.2f}-{ratio['ci_high']:.2f})"
        )
    share = summary["share_of_step"]
    lines.append(f"activations' share of a step: {sig} {share[sig]:.1%}, {relu} {share[relu]:.1%}")
    diff = summary["step_difference_seconds"]
    lines.append(
        f"step time {sig} - {relu}: mean {diff['mean'] * 1e3:.2f} ms "
        f"(95% CI {diff['ci_low'] * 1e3:.2f} to {diff['ci_high'] * 1e3:.2f}); the activations' "
        f"own costs predict {summary['step_difference_predicted_seconds'] * 1e3:.2f} ms"
    )
    return lines


# --- timing -----------------------------------------------------------------------------------


def activation_probe(name: str, shape: tuple[int, ...], backward: bool) -> Callable:
    """A compiled loop applying activation `name` UNROLL times per turn to a tensor of `shape`,
    with its gradient when `backward`. Each application takes the last one's result, so nothing
    can be computed once and reused, and the loop runs its turns one after another as a network's
    layers do."""
    import keras
    import tensorflow as tf

    function = keras.activations.get(name)
    start = tf.random.stateless_normal(shape, seed=(1, 2))
    upstream = tf.random.stateless_normal(shape, seed=(3, 4))  # the gradient from above

    def once(x):
        if not backward:
            return function(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = function(x)
        return tape.gradient(y, x, output_gradients=upstream)

    @tf.function
    def run(loops):
        x = start
        for _ in tf.range(loops):
            for _ in range(UNROLL):
                x = once(x)
        return tf.reshape(x, [-1])[0]  # one number to fetch, which waits for the whole loop

    return run


def step_probe(name: str, seed: int) -> Callable:
    """A compiled loop of the tutorial network's training steps on one fixed uint8 batch."""
    import keras
    import tensorflow as tf

    from pipeline.cifar import IMAGE_SHAPE, N_CLASSES
    from pipeline.model import TUTORIAL, build_cnn, compile_model

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (BATCH, *IMAGE_SHAPE), dtype=np.uint8)
    y = keras.utils.to_categorical(rng.integers(0, N_CLASSES, BATCH), N_CLASSES)
    keras.utils.set_random_seed(seed)  # the same initial weights for either activation
    model = build_cnn(name, TUTORIAL)
    compile_model(model, learning_rate=1e-3)
    model.train_on_batch(x, y)  # builds the optimizer's variables outside the loop
    batch = (tf.constant(x), tf.constant(y))

    @tf.function
    def run(loops):
        for _ in tf.range(loops):
            model.train_step(batch)
        return model.optimizer.iterations + 0

    return run


def timed(run: Callable, loops) -> float:
    start = time.perf_counter()
    run(loops).numpy()
    return time.perf_counter() - start


def build_probes(seed: int) -> dict[str, tuple[tuple[int, ...], dict[str, Callable]]]:
    """Each probe's input shape and its compiled loop per activation."""
    from pipeline.cifar import IMAGE_SHAPE

    probes = {}
    for layer, shape in SHAPES.items():
        for backward in (False, True):
            name = f"{layer}_forward_backward" if backward else f"{layer}_forward"
            probes[name] = (
                shape,
                {act: activation_probe(act, shape, backward) for act in ACTIVATIONS},
            )
    probes[STEP] = (BATCH, *IMAGE_SHAPE), {act: step_probe(act, seed) for act in ACTIVATIONS}
    return probes


def calibrate(runs: dict[str, Callable], target: float) -> int:
    """Loops per sample so that each activation's sample takes at least `target` seconds. The
    first calls trace and warm up each loop; a second estimate, from a run near the target,
    leaves out most of a call's fixed cost, which one loop alone would count many times over."""
    import tensorflow as tf

    def fastest(run: Callable, loops: int) -> float:
        return min(timed(run, tf.constant(loops)) for _ in range(3))

    needed = []
    for run in runs.values():
        run(tf.constant(1))
        guess = loops_for(fastest(run, 1), target)
        needed.append(loops_for(fastest(run, guess) / guess, target))
    return max(needed)


def measure(samples: int, target: float, loops: int, seed: int, log=print) -> dict:
    """Every probe's samples, sigmoid and ReLU paired and in alternating order."""
    import tensorflow as tf

    probes = build_probes(seed)
    raw: dict = {"first": pair_order(samples), "probes": {}}
    counts = {}
    for name, (shape, runs) in probes.items():
        if loops:
            for run in runs.values():
                run(tf.constant(1))  # trace and warm up
        counts[name] = loops or calibrate(runs, target)
        calls = counts[name] * (1 if name == STEP else UNROLL)
        raw["probes"][name] = {
            "shape": list(shape),
            "loops_per_sample": counts[name],
            "calls_per_sample": calls,
            "seconds": {act: [] for act in ACTIVATIONS},
        }
        log(f"{name}: {calls} calls per sample")
    for i, first in enumerate(raw["first"]):
        order = ACTIVATIONS if first == ACTIVATIONS[0] else ACTIVATIONS[::-1]
        for name, (_, runs) in probes.items():
            n = tf.constant(counts[name])
            for act in order:
                raw["probes"][name]["seconds"][act].append(timed(runs[act], n))
        log(f"sample {i + 1}/{samples} done")
    return raw


def vector_units() -> str:
    """The widest vector instructions the CPU has, which decide how fast (and how exactly alike)
    TensorFlow's kernels run: 'AVX-512', 'AVX2' or 'neither'."""
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text().split() if cpuinfo.exists() else []
    return "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "neither"


def machine() -> dict:
    import tensorflow as tf

    env = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
    return {
        "cpu": cpu_model(),
        "vector_units": vector_units(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "tensorflow": tf.__version__,
        "versions": package_versions(),
        # 0 means TensorFlow's default: as many threads as cores.
        "threads": {
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
            **{name: os.environ.get(name) for name in env},
        },
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
    }


def check_writable(output: Path) -> None:
    """Fail before the measurement, not after it, when the output cannot be written."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with open(output.parent / f".{output.name}.check", "w"):
            pass
        (output.parent / f".{output.name}.check").unlink()
    except OSError as exc:
        raise PipelineError(
            f"cannot write {output}: {exc.strerror}; pass a writable path to --output"
        ) from None
    if output.is_dir():
        raise PipelineError(f"{output} is a folder; pass a file path to --output")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="the JSON file to write")
    parser.add_argument("--samples", type=int, default=30, help="paired samples per probe")
    parser.add_argument(
        "--target-seconds", type=float, default=0.1, help="the least time of one sample"
    )
    parser.add_argument(
        "--loops", type=int, default=0, help="loops per sample for every probe; 0 = calibrate"
    )
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    if args.samples < 2:
        raise PipelineError(f"--samples {args.samples}: an interval needs at least 2 samples")
    if args.loops < 0:
        raise PipelineError(f"--loops {args.loops}: give 0 (calibrate) or a positive count")
    if args.target_seconds <= 0:
        raise PipelineError(f"--target-seconds {args.target_seconds}: give a positive time")
    check_writable(args.output)

    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # one traced loop per probe trips the retracing notice
    about = machine()
    print(f"machine: {about['cpu']}, {about['cores']} cores, TensorFlow {tf.__version__}")
    started = time.time()
    raw = measure(args.samples, args.target_seconds, args.loops, args.seed)
    summary = summarize(raw)
    for line in summary_lines(summary):
        print(line)
    write_json(
        args.output,
        {
            "claim": "ReLU is cheaper to compute than sigmoid",
            "machine": about,
            "settings": {
                "samples": args.samples,
                "target_seconds": args.target_seconds,
                "loops": args.loops,
                "unroll": UNROLL,
                "batch_size": BATCH,
                "seed": args.seed,
                "wall_seconds": round(time.time() - started, 1),
            },
            "raw": raw,
            "summary": summary,
        },
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    sys.exit(run_cli(main))

"""Each claim's verdict and each piece of advice follow the numbers: flip the numbers and they flip."""

import numpy as np
import pandas as pd
import pytest

from pipeline import advice, claims
from pipeline.decide import MIXED, NOT_RUN, NOT_SETTLED, NOT_SUPPORTED, SUPPORTED, paired
from pipeline.model import TUTORIAL
from pipeline.params import DataParams, EvaluateParams, MlflowParams, Params, TrainParams
from pipeline.studies import Arm

SEEDS = (42, 43, 44, 45, 46)
EPOCHS, PER_EPOCH = 4, 10


def params(seeds=SEEDS, classes=()):
    return Params(
        data=DataParams(
            url="a.tar.gz", sha256="0" * 64, val_size=10, train_limit=0, seed=42, classes=classes
        ),
        model=TUTORIAL,
        train=TrainParams(
            epochs=EPOCHS,
            batch_size=64,
            learning_rate=0.001,
            seeds=seeds,
            distribution="none",
            extra_activations=(),
        ),
        evaluate=EvaluateParams(n_examples=0),
        mlflow=MlflowParams(experiment="x"),
    )


def arm(
    cell,
    activation,
    accuracy,
    *,
    val=(0.3, 0.4, 0.45, 0.5),
    train=None,
    val_loss=(1.5, 1.3, 1.2, 1.25),
    grad=0.1,
    out=1.0,
    flat=0.5,
    seeds=SEEDS,
    classes=(),
):
    """An arm whose seeds differ a little (so intervals are finite), around the given numbers."""
    wobble = dict(zip(seeds, np.linspace(-0.004, 0.004, len(seeds)), strict=True))
    histories, diagnostics, steps = {}, {}, {}
    for seed in seeds:
        w = wobble[seed]
        valid = [v + w for v in val]
        histories[seed] = pd.DataFrame(
            {
                "epoch": range(1, EPOCHS + 1),
                "loss": 1.0,
                "accuracy": [t + w for t in (train or valid)],
                "val_loss": [v + w for v in val_loss],
                "val_accuracy": valid,
            }
        )
        diagnostics[seed] = pd.DataFrame(
            {
                "epoch": range(EPOCHS + 1),
                "grad_norm/conv2d/kernel": grad * (1 + w),
                "grad_norm/dense_1/kernel": out,
                "mean_slope/dense": 0.5,
                "saturated_fraction/dense": flat,
                "dead_fraction/dense": 0.0,
            }
        )
        steps[seed] = pd.DataFrame({"step": [0, 10, 20], "val_accuracy": [0.1, valid[0], valid[0]]})
    return Arm(
        cell=cell,
        activation=activation,
        params=params(seeds, classes),
        histories=histories,
        diagnostics=diagnostics,
        steps=steps,
        summaries={s: {"steps_per_epoch": PER_EPOCH} for s in seeds},
        test={
            s: {
                "test_accuracy": accuracy + wobble[s],
                "test_loss": 2 - accuracy,
                "majority_share": 0.15,
            }
            for s in seeds
        },
    )


STUCK = {"val": (0.1, 0.1, 0.1, 0.1), "train": [0.1] * 4}


def baseline(sigmoid=0.45, relu=0.62, **sigmoid_kwargs):
    return {
        "sigmoid": arm("baseline", "sigmoid", sigmoid, grad=0.01, **sigmoid_kwargs),
        "relu": arm("baseline", "relu", relu, train=[0.6, 0.75, 0.85, 0.95], grad=0.1),
    }


def test_a_claim_with_no_arms_is_not_settled_and_says_what_is_missing():
    claim = claims.generalises({})
    assert claim.verdict == NOT_RUN and claim.missing.startswith("The study's cell `baseline`")


def test_generalisation_verdict_flips_with_the_numbers():
    # ReLU tests better but overfits more: one part supported, one not: mixed.
    # Sigmoid's training accuracy ends lower (0.5 against ReLU's 0.95): it underfits.
    claim = claims.generalises({"baseline": baseline()})
    assert [p.verdict for p in claim.parts] == [SUPPORTED, NOT_SUPPORTED, SUPPORTED]
    assert claim.verdict == MIXED and "sigmoid underfits, and ReLU overfits more" in claim.evidence
    assert "confound" not in claim.evidence  # every sigmoid seed left chance in epoch 1
    # A gap between two accuracies is in percentage points, an accuracy in per cent.
    assert "ReLU 45.0 percentage points on every seed" in claim.evidence
    assert "ReLU median 95.0% (range 94.6% to 95.4%" in claim.evidence
    flipped = claims.generalises({"baseline": baseline(sigmoid=0.62, relu=0.45)})
    assert flipped.parts[0].verdict == NOT_SUPPORTED
    fits = claims.generalises({"baseline": baseline(train=[0.6, 0.75, 0.85, 0.97])})
    assert fits.parts[2].verdict == NOT_SUPPORTED  # sigmoid fits its training images as well
    assert "sigmoid underfits" not in fits.evidence
    late = claims.generalises({"baseline": baseline(val=(0.1, 0.1, 0.3, 0.4))}).evidence
    assert "A confound: 5 of 5 sigmoid seeds left chance only in epochs 3, 3, 3, 3, 3, so" in late


def test_hidden_layer_advice_reverses_when_the_numbers_do():
    better = advice.for_hidden_layers({"5": claims.generalises({"baseline": baseline()})})
    assert better.startswith(
        "**Hidden layers: ReLU over sigmoid.** ReLU − sigmoid test accuracy: +17"
    )
    worse = advice.for_hidden_layers(
        {"5": claims.generalises({"baseline": baseline(sigmoid=0.62, relu=0.45)})}
    )
    assert worse.startswith("**Hidden layers: sigmoid over ReLU.**")
    even = advice.for_hidden_layers(
        {"5": claims.generalises({"baseline": baseline(sigmoid=0.62, relu=0.621)})}
    )
    assert even.startswith("**Hidden layers: either.**")


def test_the_table_names_each_part_where_the_parts_disagree():
    claim = claims.generalises({"baseline": baseline()})
    assert claim.verdict_by_part == (
        "mixed (generalises better: supported; a smaller gap: not supported; sigmoid "
        "underfits: supported)"
    )
    agreed = claims.starts_faster({"baseline": baseline(val=(0.1, 0.1, 0.3, 0.4))})
    assert [p.verdict for p in agreed.parts] == [SUPPORTED, SUPPORTED]
    assert agreed.verdict_by_part == SUPPORTED


def test_too_few_seeds_settle_nothing():
    few = {
        "sigmoid": arm("baseline", "sigmoid", 0.45, seeds=(42, 43, 44)),
        "relu": arm("baseline", "relu", 0.62, seeds=(42, 43, 44)),
    }
    assert claims.generalises({"baseline": few}).verdict == NOT_SETTLED


def test_the_vanishing_gradient_claim_reads_the_gradient_ratio():
    assert claims.vanishing_gradient({"baseline": baseline()}).verdict == SUPPORTED  # 10×
    same = baseline()
    same["sigmoid"] = arm("baseline", "sigmoid", 0.45, grad=0.1)
    assert claims.vanishing_gradient({"baseline": same}).verdict == NOT_SUPPORTED


def test_the_gradient_ratio_is_taken_apart_by_layer():
    first_only = claims.vanishing_gradient({"baseline": baseline()})
    assert (
        "the first layer's own gradient was larger with ReLU by 10.000× [10.000×, 10.000×] (5 seeds); "
        "the output layer's was within a factor of 2.00 with both: the ratio is the first layer's."
    ) in first_only.evidence
    assert first_only.verdict_by_part == SUPPORTED  # both parts: no list of parts
    study = baseline(out=5.0)  # sigmoid's output layer: 5 against ReLU's 1
    both = claims.vanishing_gradient({"baseline": study})
    assert (
        "the output layer's was larger with sigmoid by a median 5.0×: so part of" in both.evidence
    )
    assert both.verdict == SUPPORTED  # 10× at the first layer on its own
    # A ratio of 10× made mostly at the output: the first layer's own 2× is not enough.
    study["sigmoid"] = arm("baseline", "sigmoid", 0.45, grad=0.05, out=5.0)
    output = claims.vanishing_gradient({"baseline": study})
    assert output.parts[0].verdict == SUPPORTED
    assert output.verdict != SUPPORTED
    assert output.verdict_by_part.startswith(
        f"{output.verdict} (the share that reaches the first layer: supported; the first "
        "layer's own gradient: "
    )


def test_a_comparison_after_epoch_1_counts_only_seeds_split_by_then():
    study = {"baseline": baseline(val=(0.1, 0.1, 0.3, 0.4))}  # every sigmoid seed late
    sigmoid = study["baseline"]["sigmoid"]
    stuck = {**sigmoid.histories, 46: sigmoid.histories[46].assign(val_accuracy=0.1)}
    study["baseline"]["sigmoid"] = Arm(**{**sigmoid.__dict__, "histories": stuck})
    sooner, after_one = (p.comparison for p in claims.starts_faster(study).parts)
    assert sooner.split  # over the whole run, one seed never left chance
    assert not after_one.split  # after epoch 1, none had: a mean and an interval
    assert "[" in after_one.format()
    evidence = claims.starts_faster(study).evidence
    assert "past step 20, where the step-by-step curve ends" in evidence  # late: epoch ends
    assert "curve ends" not in claims.starts_faster({"baseline": baseline()}).evidence


def test_claim_3_is_also_read_where_both_networks_learn():
    study = {"baseline": baseline()}  # ReLU's first layer 10× sigmoid's, every epoch
    said = claims.relu_keeps_gradient(study).evidence
    assert "at the last epoch on the 5 seeds where sigmoid had left chance too" in said
    assert "ReLU's first layer still got the larger share" in said
    study["baseline"]["sigmoid"] = arm("baseline", "sigmoid", 0.45, grad=1.0)
    assert "sigmoid's first layer got the larger share" in (
        claims.relu_keeps_gradient(study).evidence
    )
    study["baseline"]["sigmoid"] = arm("baseline", "sigmoid", 0.45, **STUCK)
    assert "matched state" not in claims.relu_keeps_gradient(study).evidence  # none learned


def test_the_centred_sigmoid_says_whether_the_offset_or_the_slope_loses_the_gradient():
    def evidence(centred_grad):
        cell = {claims.CENTRED: arm("centring-slope", claims.CENTRED, 0.6, grad=centred_grad)}
        return claims.vanishing_gradient({"baseline": baseline(), "centring-slope": cell}).evidence

    assert "so the lost gradient comes mostly from sigmoid's offset" in evidence(
        0.1
    )  # 10× sigmoid's 0.01
    assert "so the lost gradient comes with the slope's ceiling of ¼" in evidence(0.01)
    assert "σ − ½" not in claims.vanishing_gradient({"baseline": baseline()}).evidence
    after_one = {"baseline": baseline(), "centring-slope": {}}
    after_one["centring-slope"][claims.CENTRED] = arm("centring-slope", claims.CENTRED, 0.6)
    kept = claims.relu_keeps_gradient(after_one).evidence
    assert "sigmoid's offset" in kept  # epoch 1 too, both having left chance in epoch 1
    assert "part of it is the difference between learning" not in kept
    # Sigmoid still at chance after epoch 1, σ − ½ learning: no cause read from the ratio.
    late = {"baseline": baseline(val=(0.1, 0.1, 0.3, 0.4)), "centring-slope": {}}
    late["centring-slope"][claims.CENTRED] = arm("centring-slope", claims.CENTRED, 0.6)
    unlike = claims.relu_keeps_gradient(late).evidence
    assert "σ − ½ had left chance on 5 of 5 seeds and σ on 0: a network that learns" in unlike
    assert "sigmoid's offset" not in unlike and "slope's ceiling" not in unlike
    assert "ReLU had left chance on 5 of 5 seeds and sigmoid on 0: the ratio" in unlike


def centring_cell(centred_gain, slow_uncentred=False):
    late = {"val": (0.1, 0.1, 0.3, 0.4)} if slow_uncentred else {}  # epoch 3 against step 10
    cell = {
        "sigmoid": arm("centring-slope", "sigmoid", 0.45, **late),
        claims.CENTRED: arm("centring-slope", claims.CENTRED, 0.45 + centred_gain),
        claims.STEEP: arm("centring-slope", claims.STEEP, 0.58, **late),
        claims.STEEP_CENTRED: arm("centring-slope", claims.STEEP_CENTRED, 0.58 + centred_gain),
    }
    return {"centring-slope": cell}


def test_centring_verdict_and_advice_follow_the_centred_arms():
    helps = claims.not_zero_centred(centring_cell(0.05, slow_uncentred=True))
    assert [p.verdict for p in helps.parts] == [SUPPORTED] * 4 and helps.verdict == SUPPORTED
    said = advice.shape({"2": helps})
    assert said.startswith("**Need an S-shaped, bounded activation? Centre")
    assert "raised test accuracy at both slopes, and it left chance sooner at both" in said
    # More accurate but no sooner: the speed parts fail, so the claim is mixed.
    accurate = claims.not_zero_centred(centring_cell(0.05))
    assert [p.verdict for p in accurate.parts] == [SUPPORTED] * 2 + [NOT_SUPPORTED] * 2
    assert accurate.verdict == MIXED
    assert "though it did not clearly leave chance sooner" in advice.shape({"2": accurate})
    idle = claims.not_zero_centred(centring_cell(0.0))
    assert idle.verdict == NOT_SUPPORTED
    assert advice.shape({"2": idle}).startswith("**Centring on zero is not what sigmoid lacks")
    assert "steeper slope helps: supported" in idle.evidence  # 4σ beat σ by 13 points, both pairs
    # No arm split, so every comparison has an interval, not a count of seeds.
    assert not any(p.comparison.split for p in helps.parts)


def test_a_comparison_splits_only_when_its_own_arms_do():
    cell = centring_cell(0.05)["centring-slope"]
    steep = cell[claims.STEEP]
    # 4σ stuck on one seed: the comparisons with 4σ count seeds, the others keep intervals.
    stuck = {**steep.histories, 46: steep.histories[46].assign(val_accuracy=0.1)}
    cell[claims.STEEP] = Arm(**{**steep.__dict__, "histories": stuck})
    claim = claims.not_zero_centred({"centring-slope": cell})
    centred, steep_centred, *_ = (p.comparison for p in claim.parts)
    assert not centred.split and steep_centred.split  # σ − ½ − σ; (4σ − 2) − 4σ


def test_a_measure_taken_before_any_seed_left_chance_keeps_its_interval():
    study = {"baseline": baseline()}
    sigmoid = study["baseline"]["sigmoid"]
    stuck = {**sigmoid.histories, 46: sigmoid.histories[46].assign(val_accuracy=0.1)}
    study["baseline"]["sigmoid"] = Arm(**{**sigmoid.__dict__, "histories": stuck})
    assert claims.generalises(study).parts[0].comparison.split  # the run's end: split
    assert not claims.vanishing_gradient(study).parts[0].comparison.split  # at initialisation


def sparsity_cell(cousin_rise):
    relu = arm("sparsity", "relu", 0.6, val_loss=(1.5, 1.2, 1.3, 1.4), flat=0.6)
    cell = {"relu": relu}
    for cousin in claims.COUSINS:
        rising = (1.5, 1.2, 1.3 + cousin_rise / 2, 1.4 + cousin_rise)
        wider = [v + cousin_rise for v in (0.3, 0.4, 0.45, 0.5)]  # its train − val gap, too
        cell[cousin] = arm("sparsity", cousin, 0.6, val_loss=rising, train=wider, flat=0.05)
    return {"sparsity": cell}


def test_sparsity_claim_and_advice_compare_relu_with_its_cousins():
    curbs = claims.sparsity(sparsity_cell(0.2))
    assert curbs.verdict == SUPPORTED and "ReLU 60%, leaky ReLU 5%" in curbs.evidence
    assert advice.family({"7": curbs}).startswith("**Prefer ReLU to its non-sparse cousins")
    no = claims.sparsity(sparsity_cell(0.0))
    assert no.verdict == NOT_SUPPORTED
    assert advice.family({"7": no}).startswith("**Sparsity is no reason")
    assert len(curbs.parts) == 6  # loss rise and accuracy gap, each cousin against ReLU
    assert "training − validation accuracy at the last epoch, leaky ReLU − ReLU +20.0" in (
        curbs.evidence
    )
    # Loss rises as expected but the gaps do not differ: the two measures disagree.
    split_measures = sparsity_cell(0.2)
    for cousin in claims.COUSINS:
        cell = split_measures["sparsity"]
        rising = cell[cousin].histories
        cell[cousin] = Arm(
            **{
                **cell[cousin].__dict__,
                "histories": {s: h.assign(accuracy=h["val_accuracy"]) for s, h in rising.items()},
            }
        )
    assert claims.sparsity(split_measures).verdict == MIXED


def test_sparsity_as_the_cause_is_read_as_a_dose_among_the_cousins():
    def evidence(elu_gap):
        study = sparsity_cell(0.05)
        cell = study["sparsity"]
        cell["elu"] = arm(
            "sparsity",
            "elu",
            0.6,
            val_loss=(1.5, 1.2, 1.325, 1.45),
            train=[v + elu_gap for v in (0.3, 0.4, 0.45, 0.5)],
            flat=0.3,
        )
        return claims.sparsity(study).evidence

    # leaky ReLU and softplus flat 5% of the time, ELU 30%: does ELU overfit less?
    assert "the flatter one overfitted less, as sparsity as the cause" in evidence(0.0)
    assert "the flatter one did not overfit less, so the comparison does not single" in (
        evidence(0.05)
    )
    assert "As a dose" not in claims.sparsity(sparsity_cell(0.05)).evidence  # all equally flat


def test_a_cousin_that_never_learned_is_left_out_of_the_overfitting_comparison():
    study = sparsity_cell(0.2)
    study["sparsity"]["softplus"] = arm("sparsity", "softplus", 0.1, **STUCK)
    claim = claims.sparsity(study)
    assert [p.comparison.label for p in claim.parts] == [
        "leaky ReLU − ReLU",
        "ELU − ReLU",
        "leaky ReLU − ReLU",
        "ELU − ReLU",
    ]
    assert claim.verdict == SUPPORTED  # judged on the two that learned
    assert "softplus is left out: all 5 seeds stuck at chance" in claim.evidence
    said = advice.family({"7": claim})
    assert said.startswith("**Prefer ReLU to its non-sparse cousins when overfitting is the worry")
    assert "leaky ReLU and ELU each overfitted more" in said and "softplus" not in said


def test_depth_claim_needs_a_small_shallow_gap_and_a_widening_one():
    def study(shallow_gap, deep_gap):
        return {
            "baseline": {
                "sigmoid": arm("baseline", "sigmoid", 0.6 - shallow_gap),
                "relu": arm("baseline", "relu", 0.6),
            },
            "depth3": {
                "sigmoid": arm("depth3", "sigmoid", 0.6 - deep_gap),
                "relu": arm("depth3", "relu", 0.6),
            },
        }

    assert claims.depth(study(0.0, 0.2)).verdict == SUPPORTED
    assert claims.depth(study(0.17, 0.175)).verdict == NOT_SUPPORTED  # behind already, no growth
    assert claims.depth(study(0.0, 0.0)).verdict == MIXED  # fine when shallow, but no growth
    grows, flat = study(0.0, 0.2), study(0.1, 0.1)
    assert advice.deeper({"8": claims.depth(grows)}, grows).startswith("**The deeper")
    assert advice.deeper({"8": claims.depth(flat)}, flat).startswith("**Depth alone did not")
    assert "at chance" not in advice.deeper({"8": claims.depth(flat)}, flat)  # none stuck


def test_depth_advice_counts_the_sigmoid_seeds_each_depth_left_at_chance():
    def study(shallow_stuck, deep_stuck):
        def sigmoid(cell, stuck):
            learned = arm(cell, "sigmoid", 0.45)
            at_chance = arm(cell, "sigmoid", 0.1, **STUCK)
            per_seed = ("histories", "diagnostics", "steps", "summaries", "test")
            return Arm(
                **{
                    **learned.__dict__,
                    **{
                        field: {
                            s: getattr(at_chance if s in stuck else learned, field)[s]
                            for s in learned.seeds
                        }
                        for field in per_seed
                    },
                }
            )

        return {
            "baseline": {
                "sigmoid": sigmoid("baseline", shallow_stuck),
                "relu": arm("baseline", "relu", 0.6),
            },
            "depth3": {
                "sigmoid": sigmoid("depth3", deep_stuck),
                "relu": arm("depth3", "relu", 0.6),
            },
        }

    deeper_stuck = study({46}, set(SEEDS))
    claim = claims.depth(deeper_stuck)
    assert "On seed 46 sigmoid stayed at chance with one layer and with three" in claim.evidence
    assert "a tie at the floor" in claim.evidence  # seed 46 is the one whose gap did not grow
    line = advice.deeper({"8": claim}, deeper_stuck)
    assert line.startswith("**Avoid stacking sigmoid hidden layers:**")
    assert "on 5 of 5 seeds, with one on 1 of 5" in line
    assert "the other seed had sigmoid at chance at both depths" in line
    shallower_stuck = study(set(SEEDS), {46})  # the numbers turned round: the advice turns too
    line = advice.deeper({"8": claims.depth(shallower_stuck)}, shallower_stuck)
    assert line.startswith("**Depth did not leave sigmoid at chance more often:**")
    assert "on 1 of 5 seeds, with one on 5 of 5" in line


def test_steep_uncentred_sigmoid_that_never_learned_is_warned_against():
    study = centring_cell(0.05)
    helps = claims.not_zero_centred(study)
    assert "Do not make an uncentred sigmoid steeper" not in advice.shape({"2": helps}, study)
    steep = study["centring-slope"][claims.STEEP]
    never = {s: h.assign(val_accuracy=0.1) for s, h in steep.histories.items()}
    study["centring-slope"][claims.STEEP] = Arm(**{**steep.__dict__, "histories": never})
    line = advice.shape({"2": claims.not_zero_centred(study)}, study)
    assert "4σ never left chance on any of its 5 seeds" in line


@pytest.mark.parametrize(
    "relu, advised",
    [
        (0.50, "**A sigmoid centred on zero, σ − ½, matched ReLU** to within 1 percentage point"),
        (0.60, "**ReLU still beat a sigmoid centred on zero"),
        (0.40, "**A sigmoid centred on zero, σ − ½, beat ReLU**"),
    ],
)
def test_centred_sigmoid_against_relu_advice_follows_the_numbers(relu, advised):
    study = centring_cell(0.05)  # σ − ½ at 0.50
    study["centring-slope"]["relu"] = arm("centring-slope", "relu", relu)
    said = advice.centred_sigmoid(study)
    assert said.startswith(advised)
    # The advice quotes the number claim 2's evidence gives.
    beside = claims.relu_against_centred(study).format()
    assert beside in said and beside in claims.not_zero_centred(study).evidence
    assert advice.centred_sigmoid(centring_cell(0.05)) is None  # no ReLU arm: nothing said


def test_keeping_sigmoid_advice_counts_the_stuck_seeds():
    stuck = baseline(**STUCK)
    assert advice.keeping_sigmoid({"baseline": stuck}).startswith(
        "**Sigmoid in hidden layers needs far more steps"
    )
    assert advice.keeping_sigmoid({"baseline": baseline()}) is None  # nothing to warn about
    split = baseline()
    sigmoid = split["sigmoid"]
    frozen = {**sigmoid.histories, 46: sigmoid.histories[46].assign(val_accuracy=0.1, loss=2.3)}
    split["sigmoid"] = Arm(**{**sigmoid.__dict__, "histories": frozen})
    line = advice.keeping_sigmoid({"baseline": split})
    assert "1 of 5 seeds stayed at chance through all 40 training steps; the others left it" in line


def test_split_seeds_are_described_by_counts_and_medians():
    study = {"baseline": baseline()}
    mixed = dict(study["baseline"]["sigmoid"].histories)
    for seed in (42, 43):
        mixed[seed] = mixed[seed].assign(val_accuracy=0.1)
    sigmoid = study["baseline"]["sigmoid"]
    split = Arm(**{**sigmoid.__dict__, "histories": mixed})
    assert sum(split.stuck().values()) == 2
    text = claims.describe(split, claims.test_accuracy(split), claims.points)
    assert text.startswith("2 of 5 seeds stuck at chance; the other 3: median 45.2%")


def timing(activation, step):
    """The timing experiment's file, as tools/activation_cost.py writes it (seconds per sample)."""

    def probe(sigmoid, calls):
        return {"calls_per_sample": calls, "seconds": {"sigmoid": sigmoid, "relu": [calls] * 5}}

    return {
        "machine": {"cpu": "a CPU", "vector_units": "AVX2", "cores": 2},
        "raw": {
            "probes": {
                "conv_forward_backward": probe([10 * a for a in activation], 10),
                "dense_forward_backward": probe([20 * a for a in activation], 20),
                "train_step": probe([4 * s for s in step], 4),
            }
        },
        "summary": {"share_of_step": {"sigmoid": 0.2, "relu": 0.1}},
    }


def test_cost_claim_reads_paired_timing_samples():
    twice, same = [2.0, 2.1, 1.9, 2.0, 2.05], [1.01, 0.99, 1.0, 1.02, 1.0]
    claim = claims.cheaper(timing(twice, same))
    assert [p.verdict for p in claim.parts] == [SUPPORTED, NOT_SUPPORTED]
    assert (
        claim.verdict == MIXED and "took 2.01× [1.92×, 2.10×] (5 paired samples)" in claim.evidence
    )
    assert advice.speed({"6": claim}).startswith("**Do not choose on speed:**")
    slower = claims.cheaper(timing(twice, [1.5, 1.52, 1.49, 1.5, 1.51]))
    assert advice.speed({"6": slower}).startswith("**ReLU also trains faster")
    unclear = claims.cheaper(timing(twice, [1.0, 1.15, 1.02, 1.12, 0.99]))
    assert unclear.parts[1].verdict == MIXED
    said = advice.speed({"6": unclear})
    assert said.startswith(
        "**Speed is no clear reason to choose:** sigmoid's own forward and backward pass took 2.01×"
    )
    assert "not clearly slower by a factor of 1.05 or more" in said
    quicker = claims.cheaper(timing(twice, [0.8, 0.81, 0.79, 0.8, 0.8]))
    assert advice.speed({"6": quicker}).startswith("**Sigmoid trains faster:**")
    equal_alone = claims.cheaper(timing([1.0] * 5, [1.0, 1.15, 1.02, 1.12, 0.99]))
    assert "sigmoid itself" not in advice.speed({"6": equal_alone})
    assert claims.cheaper(None).verdict == NOT_RUN


@pytest.mark.parametrize(
    "gain, verdict, advised",
    [
        (0.0, SUPPORTED, "**Two classes: one sigmoid output with binary cross-entropy** did no"),
        # The sigmoid output ahead, but by less than the smallest effect: no worse, not better.
        (0.008, SUPPORTED, "**Two classes: one sigmoid output with binary cross-entropy** did no"),
        (0.05, SUPPORTED, "**Two classes: one sigmoid output with binary cross-entropy** did bet"),
        (-0.05, NOT_SUPPORTED, "**Two classes: a two-way softmax did better**"),
    ],
)
def test_output_layer_claim_holds_when_the_sigmoid_output_does_no_worse(gain, verdict, advised):
    two = {"classes": ("cat", "dog"), "val": (0.6, 0.7, 0.75, 0.8)}  # chance is 0.5 here
    study = {
        "two-class-softmax": {"relu": arm("two-class-softmax", "relu", 0.8, **two)},
        "two-class-sigmoid-output": {
            "relu": arm("two-class-sigmoid-output", "relu", 0.8 + gain, **two)
        },
    }
    claim = claims.output_layer(study)
    assert claim.verdict == verdict and claim.arms.startswith("cat against dog (CIFAR-10)")
    assert not claim.parts[0].comparison.split  # every seed left two classes' chance
    assert advice.output({"9": claim}).startswith(advised)
    assert claim.verdict_by_part == f"{verdict} (read as: does no worse)"


def test_two_classes_at_ten_classes_chance_still_count_as_stuck():
    """0.3 would have left ten classes' chance; with two classes it is below chance itself."""
    low = {"classes": ("cat", "dog")}  # the default val curve: 0.3 to 0.5
    assert all(arm("two-class-softmax", "relu", 0.5, **low).stuck().values())
    assert not any(arm("baseline", "relu", 0.5).stuck().values())


def test_a_seed_stuck_at_chance_turns_a_comparison_into_a_count():
    study = {"baseline": baseline()}
    sigmoid = study["baseline"]["sigmoid"]
    stuck = {**sigmoid.histories, 46: sigmoid.histories[46].assign(val_accuracy=0.1)}
    study["baseline"]["sigmoid"] = Arm(**{**sigmoid.__dict__, "histories": stuck})
    claim = claims.generalises(study)
    better = claim.parts[0].comparison
    assert better.split and better.verdict == SUPPORTED  # every seed: ReLU ahead by ~17 points
    assert better.format().startswith("median +17.0 percentage points, 5 of 5 seeds above 1")


def test_initialisation_claim_reads_each_larger_initialiser_against_glorot():
    late = {"val": (0.1, 0.1, 0.3, 0.4)}  # leaves chance in epoch 3, not in its first steps
    study = {
        "baseline": baseline(),
        "init-glorot-uniform": {"sigmoid": arm("init-glorot-uniform", "sigmoid", 0.45)},
        "init-he-normal": {"sigmoid": arm("init-he-normal", "sigmoid", 0.45)},
        "init-random-normal": {"sigmoid": arm("init-random-normal", "sigmoid", 0.45, **late)},
    }
    claim = claims.initialisation(study)
    assert [p.verdict for p in claim.parts] == [NOT_SUPPORTED, SUPPORTED]
    assert claim.verdict == MIXED
    assert "(random normal − Glorot): +20 steps on every seed (5 seeds)" in claim.evidence
    # He normal as Glorot, random normal 20 steps later: keep the default.
    said = advice.initialisation({"init": claims.initialisation(study)}, study)
    assert said.startswith("**With sigmoid, avoid random normal (standard deviation 0.05):**")
    assert "(He normal) did not change, to within one epoch of steps, its plateau" in said
    assert "smaller convolution weights (random normal) lengthened its plateau" in said
    study["init-he-normal"] = {"sigmoid": arm("init-he-normal", "sigmoid", 0.45, **late)}
    assert claims.initialisation(study).verdict == SUPPORTED
    assert (
        "The CPU alone moved no seed by the smallest effect or more"
        in claims.initialisation(study).evidence
    )
    # The numbers reversed (Glorot late, both larger initialisers early): the advice reverses.
    reversed_study = {
        "init-glorot-uniform": {"sigmoid": arm("init-glorot-uniform", "sigmoid", 0.45, **late)},
        "init-he-normal": {"sigmoid": arm("init-he-normal", "sigmoid", 0.45)},
        "init-random-normal": {"sigmoid": arm("init-random-normal", "sigmoid", 0.45)},
    }
    said = advice.initialisation({"init": claims.initialisation(reversed_study)}, reversed_study)
    assert said.startswith(
        "**With sigmoid, larger initial weights helped it leave chance sooner:**"
    )
    assert said.count("shortened its plateau") == 2
    # Sigmoid's escape against the baseline's, trained on another CPU: no control.
    study["baseline"]["sigmoid"] = arm("baseline", "sigmoid", 0.45, **late)
    moved = claims.initialisation(study)
    assert moved.verdict == SUPPORTED
    assert (
        "The CPU alone moved a seed by up to 20 steps, more than the smallest effect of 10"
        in moved.evidence
    )
    del study["init-glorot-uniform"]
    assert advice.initialisation({"init": claims.initialisation(study)}, study) is None
    no_control = claims.initialisation(study)
    assert no_control.verdict == NOT_RUN and "`init-glorot-uniform`" in no_control.missing
    assert no_control.missing.startswith("The study's cell `init-glorot-uniform` is not")
    del study["init-random-normal"]
    missing = claims.initialisation(study)
    assert missing.verdict == NOT_RUN and "`init-random-normal`" in missing.missing


def test_an_initialiser_that_keeps_every_seed_at_chance_is_read_past_a_tie_at_the_floor():
    glorot = arm("init-glorot-uniform", "sigmoid", 0.45)
    stuck = {**glorot.histories, 46: glorot.histories[46].assign(val_accuracy=0.1)}
    flat = {**glorot.steps, 46: glorot.steps[46].assign(val_accuracy=0.1)}  # step curve too
    study = {
        "init-glorot-uniform": {
            "sigmoid": Arm(**{**glorot.__dict__, "histories": stuck, "steps": flat})
        },
        "init-he-normal": {"sigmoid": arm("init-he-normal", "sigmoid", 0.45)},
        "init-random-normal": {"sigmoid": arm("init-random-normal", "sigmoid", 0.1, **STUCK)},
    }
    claim = claims.initialisation(study)
    assert claim.parts[1].verdict == MIXED  # seed 46: at chance under both, a difference of 0
    assert "Under random normal, the only seed 46 short of the smallest effect never left" in (
        claim.evidence
    )
    said = advice.initialisation({"init": claim}, study)
    assert said.startswith("**With sigmoid, avoid random normal (standard deviation 0.05):**")
    assert "smaller convolution weights (random normal) lengthened its plateau" in said
    assert "at chance for the whole run on 5 of 5 seeds, Glorot on 1" in said
    # He normal: seed 46 left chance under it only; no clear effect, and which way the seeds went.
    assert (
        "(He normal) had no clear effect on its plateau (median +0 steps, 0 of 5 seeds above 10 "
        "steps against Glorot; at chance for the whole run on 0 of 5 seeds, Glorot on 1; sooner "
        "by more than 10 steps on 1 of 5 seeds, later on 0)" in said
    )


def test_the_claims_table_marks_a_half_no_comparison_measures():
    from pipeline.report import claims_table

    study = {"baseline": baseline()}
    sooner = claims.starts_faster(study)
    table = claims_table([sooner, claims.depth(study)])
    assert f"{sooner.verdict}, for the part tested; 'converges faster' is not judged" in table
    assert "not run yet" in table and "not run yet (" not in table  # missing: nothing to mark
    assert not sooner.no_worse


@pytest.mark.parametrize(
    "bn_train, bn_val, rescued, unsteady",
    [
        # Sigmoid trains to 0.82 with BN (0.46 without); ReLU's validation swings ±0.10.
        ((0.3, 0.6, 0.75, 0.82), (0.50, 0.40, 0.55, 0.45), SUPPORTED, SUPPORTED),
        # The numbers turned round: no rescue, and a validation curve as steady as without.
        ((0.3, 0.35, 0.4, 0.40), (0.30, 0.40, 0.45, 0.50), NOT_SUPPORTED, NOT_SUPPORTED),
    ],
)
def test_batch_norm_verdicts_and_advice_follow_the_numbers(bn_train, bn_val, rescued, unsteady):
    plain_train = (0.3, 0.4, 0.44, 0.46)
    study = {
        "baseline": {
            "sigmoid": arm("baseline", "sigmoid", 0.45, train=list(plain_train)),
            "relu": arm("baseline", "relu", 0.6),  # validation 0.30 → 0.50 in even steps
        },
        "batchnorm": {
            "sigmoid": arm("batchnorm", "sigmoid", 0.45, train=list(bn_train)),
            "relu": arm("batchnorm", "relu", 0.55, val=bn_val),
        },
    }
    rescue, swing = claims.batchnorm_rescues(study), claims.batchnorm_unsteady(study)
    assert (rescue.verdict, swing.verdict) == (rescued, unsteady)
    assert "at the best epoch and at the last, median over seeds: without 50.0% and 50.0%" in (
        swing.evidence
    )
    # Where ReLU's test accuracy went: means on validation, so the parts add up.
    drop = swing.evidence.split("ReLU's test accuracy, with − without: −5")[1]
    assert "Its test loss, median over seeds: 1.45 with, 1.40 without" in drop
    if unsteady == SUPPORTED:  # best 0.55 against 0.50; last 0.45, 10 points below its best
        assert (
            "the last epoch scored 5.0 percentage points lower with batch normalisation: −5.0 "
            "from a lower best epoch, 10.0 from a last epoch further below its best (10.0 below "
            "with, 0.0 without)" in drop
        )
    else:
        assert "scored 0.0 percentage points lower with batch normalisation: 0.0 from" in drop
    lines = advice.batch_norm({"BN-1": rescue, "BN-2": swing}, study)
    # The same test accuracy (0.45) with and without: the advice says so, not that it rose.
    assert "Test accuracy, with − without (not part of the claim" in rescue.evidence
    if rescued == SUPPORTED:
        assert "its test accuracy, with − without: +0 percentage points on every seed" in lines[0]
        worse = {**study, "batchnorm": {**study["batchnorm"]}}
        worse["batchnorm"]["sigmoid"] = arm("batchnorm", "sigmoid", 0.40, train=list(bn_train))
        fell = advice.batch_norm({"BN-1": claims.batchnorm_rescues(worse)}, worse)[0]
        assert "yet its test accuracy fell (with − without: −5" in fell
    assert lines[0].startswith(
        "**Batch normalisation lets sigmoid train:**"
        if rescued == SUPPORTED
        else "**Batch normalisation did not clearly rescue"
    )
    assert any("keep the best epoch" in line for line in lines) == (unsteady == SUPPORTED)


def test_verdicts_held_together_are_judged_at_the_corrected_level():
    def claim(key, higher, split=False):
        lower = [0.1, 0.45, 0.1, 0.45, 0.45] if split else [0.45] * 5
        comparison = paired(
            "a − b",
            claims.ACCURACY,
            dict(zip(SEEDS, higher, strict=True)),
            dict(zip(SEEDS, lower, strict=True)),
            split,
        )
        return claims.Claim(key, "a claim", "two arms", (claims.Part(comparison),), "")

    steady = claim("1", [0.60, 0.61, 0.62, 0.61, 0.60])
    modest = claim("2", [0.47, 0.49, 0.48, 0.465, 0.495])
    counted = claim("3", [0.6] * 5, split=True)
    assert [c.verdict for c in (steady, modest, counted)] == [SUPPORTED] * 3
    said = claims.held_together([steady, modest, counted])
    assert "Held to 5% for all 3 claims together" in said
    assert "each t-interval at 98.33% instead of 95%" in said
    # Three claims: a level of 1/60 each, which six unanimous seeds reach and five do not.
    assert "a count of seeds then needs 6 seeds that all agree, where the study has 5" in said
    assert "| 2 | supported | mixed |" in said
    assert "| 3 | supported | not settled (a count needs 6 seeds) |" in said
    assert "| 1 |" not in said and "2 of the 3 verdicts change" in said
    assert claims.held_together([steady, claim("2", [0.60, 0.62, 0.61, 0.60, 0.61])]).endswith(
        "no verdict changes."
    )
    assert claims.held_together([steady]) == ""  # one comparison: nothing to correct


def test_verdicts_the_earlier_analysis_gave_otherwise_are_named():
    late = {"baseline": baseline(val=(0.1, 0.1, 0.3, 0.4))}  # sigmoid leaves chance late
    settled = [claims.generalises({"baseline": baseline()}), claims.starts_faster(late)]
    assert [c.verdict for c in settled] == [MIXED, SUPPORTED]
    then = {"commit": "abc1234", "verdicts": {"5": MIXED, "4": MIXED, "9": SUPPORTED}}
    said = claims.before_the_results(then, settled)
    assert "(commit `abc1234`)" in said
    assert "1 verdict differs (4: mixed, now supported), toward supporting the claim;" in said
    away = {"commit": "abc1234", "verdicts": {"5": SUPPORTED, "4": SUPPORTED}}
    assert "1 verdict differs (5: supported, now mixed), away from supporting the claim;" in (
        claims.before_the_results(away, settled)
    )
    same = {"commit": "abc1234", "verdicts": {"5": MIXED, "4": SUPPORTED}}
    assert claims.before_the_results(same, settled).endswith("every verdict is the same.")
    assert claims.before_the_results(None, settled) == ""

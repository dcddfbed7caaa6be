"""*When to use which*, written from the claims' verdicts and numbers: each sentence follows from a
comparison read by the decision rule (pipeline.decide.direction), so numbers that said the
opposite would give the opposite advice. Pure functions."""

from __future__ import annotations

from collections.abc import Mapping

from pipeline import claims as study_claims
from pipeline.claims import BASELINE, CENTRING, STEEP, Claim, Study
from pipeline.decide import (
    EQUAL,
    HIGHER,
    LOWER,
    NOT_SUPPORTED,
    SUPPORTED,
    UNCLEAR,
    UNSETTLED,
    Comparison,
    direction,
)


def _part(claims: Mapping[str, Claim], key: str, index: int = 0) -> Comparison | None:
    claim = claims.get(key)
    if claim is None or claim.missing or len(claim.parts) <= index:
        return None
    return claim.parts[index].comparison


def for_hidden_layers(claims: Mapping[str, Claim]) -> str | None:
    c = _part(claims, "5")  # test accuracy, ReLU − sigmoid
    if c is None:
        return None
    lean = direction(c)
    whole = claims["5"].verdict
    source = f"(claim 5, {c.measure.name}: {c.verdict}" + (
        f"; the claim as a whole: {whole})" if whole != c.verdict else ")"
    )
    if lean == HIGHER:
        return f"**Hidden layers: ReLU over sigmoid.** ReLU − sigmoid test accuracy: {c.format()} {source}."
    if lean == LOWER:
        return f"**Hidden layers: sigmoid over ReLU.** ReLU − sigmoid test accuracy: {c.format()} {source}."
    if lean == EQUAL:
        return f"**Hidden layers: either.** ReLU − sigmoid test accuracy was {c.format()}, within the smallest effect that matters {source}."
    return f"**Hidden layers: no clear choice yet.** ReLU − sigmoid test accuracy was {c.format()} {source}."


def centred_sigmoid(study: Study) -> str | None:
    """σ − ½ against ReLU, the two trained side by side in claim 2's cell, by the same rule."""
    c = study_claims.relu_against_centred(study)
    if c is None:
        return None
    lean = direction(c)
    if lean == EQUAL:
        return (
            "**A sigmoid centred on zero, σ − ½, matched ReLU** to within "
            f"{c.measure.smallest_text()} (ReLU − (σ − ½) test accuracy: {c.format()}): on this "
            "network, in this run's length, what held plain sigmoid back was its offset, not its "
            "S shape as such (claim 2)."
        )
    if lean == HIGHER:
        return (
            f"**ReLU still beat a sigmoid centred on zero, σ − ½** (ReLU − (σ − ½): {c.format()})."
        )
    if lean == LOWER:
        return f"**A sigmoid centred on zero, σ − ½, beat ReLU** (ReLU − (σ − ½): {c.format()})."
    return f"**σ − ½ against ReLU: not clear from these seeds** ({c.format()})."


def keeping_sigmoid(study: Study) -> str | None:
    arm = study.get(BASELINE, {}).get("sigmoid")
    if arm is None:
        return None
    stuck = arm.stuck()
    n, k = len(stuck), sum(stuck.values())
    steps = arm.total_steps
    if k == n:
        return (
            f"**Sigmoid in hidden layers needs far more steps than this.** It stayed at chance "
            f"for all {n} seeds through {steps:,} training steps."
        )
    if k:
        left = [v for s, v in arm.steps_to_leave_chance().items() if not stuck[s]]
        return (
            "**If you keep plain sigmoid in hidden layers, run several seeds:** "
            f"{k} of {n} seeds stayed at chance through all {steps:,} training steps; the others "
            f"left it after {min(left):,.0f} to {max(left):,.0f} steps (claims 4 and 5). Early "
            "on, a seed that will never learn and one that will learn late look the same: both "
            "sit at chance, and a seed may sit there for most of the run and still leave it."
        )
    return None  # every seed left chance: nothing to warn about


def shape(claims: Mapping[str, Claim], study: Study | None = None) -> str | None:
    """From claim 2's comparisons: does centring help, does the slope?"""
    claim = claims.get("2")
    if claim is None or claim.missing:
        return None
    # Parts: test accuracy at σ's slope and at 1, then steps to leave chance at each.
    centring = [direction(p.comparison) for p in claim.parts[:2]]
    sooner = (
        ", and it left chance sooner at both"
        if all(direction(p.comparison) == HIGHER for p in claim.parts[2:])
        else ", though it did not clearly leave chance sooner at both"
    )
    steep = (study or {}).get(CENTRING, {}).get(STEEP)
    never = steep is not None and all(steep.stuck().values())
    warning = (
        f" Do not make an uncentred sigmoid steeper: 4σ never left chance on any of its "
        f"{len(steep.seeds)} seeds."
        if never
        else ""
    )
    if all(d == HIGHER for d in centring):
        return (
            "**Need an S-shaped, bounded activation? Centre it on zero** (σ − ½, or 4σ − 2, "
            "which is 2·tanh(z/2): a tanh, scaled): centring alone raised test accuracy at both "
            f"slopes{sooner} (claim 2).{warning}"
        )
    if all(d in (EQUAL, LOWER) for d in centring):
        return (
            "**Centring on zero is not what sigmoid lacks here:** moving its outputs to be "
            "centred changed test accuracy by less than the smallest effect that matters, or "
            "lowered it (claim 2)."
        )
    return "**Whether centring on zero helps sigmoid is not clear from these seeds** (claim 2)."


def family(claims: Mapping[str, Claim]) -> str | None:
    claim = claims.get("7")
    if claim is None or claim.missing:
        return None
    overfit = [direction(p.comparison) for p in claim.parts]
    # The cousins compared, from the parts' labels ("leaky ReLU − ReLU").
    cousins = list(dict.fromkeys(p.comparison.label.removesuffix(" − ReLU") for p in claim.parts))
    named = " and ".join([", ".join(cousins[:-1]), cousins[-1]] if len(cousins) > 1 else cousins)
    if not overfit:
        return None
    if all(d == HIGHER for d in overfit):
        return (
            "**Prefer ReLU to its non-sparse cousins when overfitting is the worry:** "
            f"{named} each overfitted more, on both measures (claim 7)."
        )
    if all(d in (EQUAL, LOWER) for d in overfit):
        return (
            f"**Sparsity is no reason to pick ReLU over {named}:** ReLU overfitted no less than "
            "they did (claim 7)."
        )
    return f"**Among ReLU, {named}, these seeds do not tell which overfits less** (claim 7)."


def deeper(claims: Mapping[str, Claim], study: Study) -> str | None:
    c = _part(claims, "8", 1)  # growth of ReLU's lead with depth
    counts = study_claims.stuck_by_depth(study)
    if c is None or counts is None:
        return None
    lean = direction(c)
    if lean == HIGHER:
        growth = f"ReLU's lead in test accuracy grew by {c.format()} from one layer to three"
    elif lean in (EQUAL, LOWER):
        growth = f"ReLU's lead in test accuracy did not grow ({c.format()}) from one layer to three"
    else:
        growth = f"ReLU's lead in test accuracy changed by {c.format()} from one layer to three"
        ties = study_claims.floor_ties(study, c)
        if ties:
            growth += (
                f"; the other seed{'s' * (len(ties) > 1)} had sigmoid at chance at both "
                f"depths, so by the rule the growth is {c.verdict}"
            )
    (one, three), (relu_one, relu_three) = counts["sigmoid"], counts["relu"]
    n = len(c.differences)
    stuck = (
        f"with three hidden dense layers sigmoid stayed at chance for the whole run on {three} "
        f"of {n} seeds, with one on {one} of {n}"
    )
    relu = (
        "; ReLU left chance on every seed at both depths"
        if relu_one == relu_three == 0
        else f"; ReLU stayed at chance on {relu_three} with three, {relu_one} with one"
    )
    if three > one:
        return (
            f"**Avoid stacking sigmoid hidden layers:** {stuck}{relu}; whether a longer run "
            f"would free it was not tested. {growth[0].upper()}{growth[1:]} (claim 8)."
        )
    if three < one:
        return (
            f"**Depth did not leave sigmoid at chance more often:** {stuck}{relu}. "
            f"{growth[0].upper()}{growth[1:]} (claim 8)."
        )
    if lean == HIGHER:
        return f"**The deeper the network, the more sigmoid costs:** {growth} (claim 8)."
    if lean in (EQUAL, LOWER):
        return f"**Depth alone did not widen ReLU's lead:** {growth} (claim 8)."
    return (
        f"**Whether depth widens ReLU's lead is not clear from these seeds:** {growth} (claim 8)."
    )


def batch_norm(claims: Mapping[str, Claim], study: Study) -> list[str]:
    lines = []
    rescue, unsteady = _part(claims, "BN-1"), _part(claims, "BN-2")
    if rescue is not None and direction(rescue) == HIGHER:
        # BN-1 exists only with both sigmoid arms, so their test accuracies do too.
        tested = study_claims.batchnorm_test_accuracy(study)["sigmoid"]
        lean = direction(tested)
        if lean == HIGHER:
            after = f", and its test accuracy with it (with − without: {tested.format()})"
        elif lean == LOWER:
            after = (
                f", yet its test accuracy fell (with − without: {tested.format()}): it fitted "
                "the training images better, not the test images"
            )
        else:
            after = f"; its test accuracy, with − without: {tested.format()}"
        lines.append(
            f"**Batch normalisation lets sigmoid train:** its training accuracy rose by {rescue.format()}{after}."
        )
    elif rescue is not None and direction(rescue) != UNSETTLED:
        lines.append(
            f"**Batch normalisation did not clearly rescue sigmoid's training** ({rescue.format()})."
        )
    if unsteady is not None and direction(unsteady) == HIGHER:
        lines.append(
            "**With batch normalisation, keep the best epoch, not the last:** validation "
            f"accuracy jumped {unsteady.format()} more from epoch to epoch."
        )
    return lines


def initialisation(claims: Mapping[str, Claim], study: Study) -> str | None:
    """Sigmoid's plateau under larger initial weights, each against Glorot on the same CPU."""
    he, dense = _part(claims, "init", 0), _part(claims, "init", 1)
    counts = study_claims.stuck_by_initialiser(study)
    if he is None or dense is None or counts is None:
        return None
    glorot = study[study_claims.INIT_CONTROL]["sigmoid"]
    effects = {}
    for name, c, cell in (
        ("He normal", he, study_claims.INIT),
        ("random normal", dense, study_claims.INIT_DENSE),
    ):
        lean = direction(c)
        if lean == UNSETTLED:
            return None
        # Short of the effect only where both stayed at chance: longer, as far as the run shows.
        if lean == UNCLEAR and study_claims.ties_at_floor(c, glorot, study[cell]["sigmoid"]):
            lean = HIGHER
        effects[name] = (lean, c)
    verbs = {
        HIGHER: "lengthened",
        LOWER: "shortened",
        EQUAL: "did not change, to within one epoch of steps,",
        UNCLEAR: "had no clear effect on",
    }
    leans = {lean for lean, _ in effects.values()}
    longer = [name for name, (lean, _) in effects.items() if lean == HIGHER]
    if leans == {LOWER}:
        lead = "**With sigmoid, larger initial weights helped it leave chance sooner:**"
    elif leans == {HIGHER}:
        lead = "**With sigmoid, keep Keras' default initialisation (Glorot uniform):**"
    elif longer and LOWER not in leans:
        named = {"random normal": "random normal (standard deviation 0.05)"}
        lead = f"**With sigmoid, avoid {' and '.join(named.get(n, n) for n in longer)}:**"
    else:
        lead = "**Initialisation is no clear lever on sigmoid's plateau:**"
    stuck_glorot, n = counts["Glorot"]

    def said(name: str) -> str:
        lean, c = effects[name]
        stuck, _ = counts[name]
        notes = (
            f"; at chance for the whole run on {stuck} of {n} seeds, Glorot on {stuck_glorot}"
            if stuck != stuck_glorot
            else ""
        )
        if lean == UNCLEAR:  # say which way the seeds went
            sooner = sum(d < -c.threshold for d in c.differences.values())
            later = sum(d > c.threshold for d in c.differences.values())
            notes += (
                f"; sooner by more than {c.measure.smallest_text()} on {sooner} of {n} seeds, "
                f"later on {later}"
            )
        return f"({name}) {verbs[lean]} its plateau ({c.format()} against Glorot{notes})"

    return (
        f"{lead} larger convolution weights {said('He normal')}; larger dense and smaller "
        f"convolution weights {said('random normal')}."
    )


def speed(claims: Mapping[str, Claim]) -> str | None:
    own, c = _part(claims, "6", 0), _part(claims, "6", 1)  # the activation alone; a whole step
    if c is None:
        return None
    step = c.format().replace("seeds", "paired samples")
    lean = direction(c)
    if lean == HIGHER:
        return f"**ReLU also trains faster:** a training step took {step} as long with sigmoid."
    if lean == LOWER:
        return f"**Sigmoid trains faster:** a training step took {step} as long with sigmoid."
    if lean == EQUAL:
        return (
            f"**Do not choose on speed:** a whole training step took {step} as long with sigmoid "
            "as with ReLU."
        )
    if lean == UNCLEAR:
        alone = (
            "sigmoid's own forward and backward pass took "
            f"{own.format().replace('seeds', 'paired samples')} as long as ReLU's, yet "
            if own is not None and direction(own) == HIGHER
            else ""
        )
        return (
            f"**Speed is no clear reason to choose:** {alone}a whole training step took {step} "
            f"as long with sigmoid: not clearly slower by {c.measure.smallest_text()} or more."
        )
    return None


def output(claims: Mapping[str, Claim]) -> str:
    c = _part(claims, "9")  # softmax − sigmoid output
    if c is None:
        return (
            "**Output layer:** softmax for one class out of several, as every network here uses "
            "(a default, not a verdict: claim 9's cells are not run yet)."
        )
    # The claim's own one-sided rule: does the softmax beat the sigmoid output by the smallest
    # effect that matters? Not: the sigmoid output does no worse, and is the smaller layer.
    if direction(c) == LOWER:
        return (
            "**Two classes: one sigmoid output with binary cross-entropy** did better than a "
            f"two-way softmax (softmax − sigmoid: {c.format()}), with one output unit instead of two."
        )
    if c.verdict == NOT_SUPPORTED:
        return (
            "**Two classes: one sigmoid output with binary cross-entropy** did no worse than a "
            f"two-way softmax (softmax − sigmoid: {c.format()}), with one output unit instead of two."
        )
    if c.verdict == SUPPORTED:
        return (
            "**Two classes: a two-way softmax did better** than one sigmoid output (softmax − "
            f"sigmoid: {c.format()})."
        )
    return f"**Two classes: sigmoid or softmax output, not clear from these seeds** ({c.format()})."


def when_to_use(claims: Mapping[str, Claim], study: Study) -> list[str]:
    """The advice, in the order a reader needs it; sentences whose evidence is missing are left out."""
    lines = [
        for_hidden_layers(claims),
        centred_sigmoid(study),
        keeping_sigmoid(study),
        shape(claims, study),
        family(claims),
        deeper(claims, study),
        *batch_norm(claims, study),
        initialisation(claims, study),
        speed(claims),
        output(claims),
    ]
    return [line for line in lines if line]

"""The check_params stage: every param validated, its output constant and never deleted."""

import pytest
from project import write_params

from pipeline import check_params
from pipeline.params import ParamsError


def test_valid_params_write_the_constant_stamp(tmp_path):
    params = write_params(tmp_path / "params.yaml", train__epochs=3)
    output = tmp_path / "results" / "params.ok"
    check_params.main(["--params", str(params), "--output", str(output)])
    first = output.read_text()
    write_params(params, train__epochs=7, evaluate__n_examples=3)
    check_params.main(["--params", str(params), "--output", str(output)])
    assert output.read_text() == first == check_params.STAMP  # nothing downstream reruns


def test_a_refused_param_leaves_the_stamp_alone(tmp_path):
    output = tmp_path / "params.ok"
    output.write_text(check_params.STAMP)
    params = write_params(tmp_path / "params.yaml", train__epochs=0)
    with pytest.raises(ParamsError, match=r"train\.epochs"):
        check_params.main(["--params", str(params), "--output", str(output)])
    assert output.read_text() == check_params.STAMP

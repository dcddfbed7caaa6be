from pipeline.ui import runs_link


def test_the_link_opens_the_experiments_runs_as_charts():
    assert (
        runs_link("http://127.0.0.1:8080", "7")
        == "http://127.0.0.1:8080/#/experiments/7/runs?compareRunsMode=CHART"
    )
    assert runs_link("http://127.0.0.1:8080", None) == "http://127.0.0.1:8080"

"""The procedure's commands and its noise rule: the sweep machinery (sweep), the regularization ladder (ladder), the
data-size curve (data_curve), the seed spread (seed_spread), the rule that says what moved beyond noise (noise),
the article's claims read by it (claims) and a written sweep report judged again (rejudge).

Each runs the pipeline (`dvc exp run`, queued experiments) or reads what it wrote; none is a stage. Nothing here
can change a stage's output: no stage, and no module a stage runs, imports this package (tests/test_dvc_deps.py),
so dvc.yaml lists none of it and editing it retrains nothing. `python -m overfit_first` lists the commands.
"""

"""The procedure's commands and its noise rule: the sweep machinery (sweep: what a sweep is and its checks;
sweep_run: running it in DVC's queue; sweep_report: its report), the regularization ladder (ladder), the data-size
curve (data_curve), the seed spread (seed_spread), the rule that says what moved beyond noise (noise), the article's
claims read by it (claims), a written sweep report judged again (rejudge), and the one way all of them, and the
repository tools, run `dvc` and read the metrics it prints (dvc_client).

Each runs the pipeline (`dvc exp run`, queued experiments) or reads what it wrote; none is a stage. Nothing here
can change a stage's output: no stage, and no module a stage runs, imports this package (tests/test_dvc_deps.py),
so dvc.yaml lists none of it and editing it retrains nothing. `python -m overfit_first` lists the commands.
"""

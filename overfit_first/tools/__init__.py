"""Repository tools: params profiles (profiles), generated pipeline folders (pipelines), the pull-request comment
(pr_comment), the offline plots page (plots_html), the preview of an experiment (preview) and the article's runs
on one GPU without DVC (article_gpu).

They work around the pipeline (its params, its generated folders, its results, the article's runs outside it);
none can change what a stage writes: no stage, and no module a stage runs, imports this package
(tests/test_dvc_deps.py), so dvc.yaml lists none of it and editing it retrains nothing. `python -m overfit_first`
lists the commands.
"""

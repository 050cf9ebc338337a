"""Training: the prepared-data readers, examples, feature cache, trainer and resumable state.

Only the training loop lives here; data preparation is :mod:`e2llm_integrations.data`,
the ``e2llm train`` command :mod:`e2llm_integrations.cli.train`, the loss plot
:mod:`e2llm_integrations.eval.plots` and the sweep :mod:`e2llm_integrations.eval.sweep`.
Kept import-free so that ``e2llm`` subcommands load only the modules they run.
"""

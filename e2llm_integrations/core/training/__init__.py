"""Training: data preparation (``e2llm data prepare``), objectives and the trainer.

Kept import-free so that ``e2llm`` subcommands load only the modules they run.
"""

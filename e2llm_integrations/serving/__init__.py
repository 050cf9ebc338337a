"""Serving: the decoder of an E2LLM model in vLLM, and the merged-decoder export it loads.

* :mod:`.export`: ``e2llm export --merged-decoder DIR`` (LoRA merged into the decoder).
* :mod:`.vllm`: the vLLM decoder backend (an OpenAI-compatible server, or an engine in
  this process), fed E2LLM's input embeddings as ``prompt_embeds``.
* :mod:`.launch`: start and stop a local ``vllm serve`` (tests and benchmarks).

The interface they implement, and how a pipeline is given one, is in
:mod:`e2llm_integrations.core.backend`. Importing this package never imports vLLM.
"""

"""Answer questions through the in-process vLLM backend; print the answers as JSON.

Run by ``test_vllm_real.py`` with the vLLM environment's Python (vLLM and this library
installed together): ``python _vllm_in_process.py JOBS_JSON MAX_NEW_TOKENS``. The
``__main__`` guard is required: vLLM starts worker processes.
"""

from __future__ import annotations

import json
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor

from e2llm_integrations.core import GenerationConfig
from e2llm_integrations.core.backend import BackendOptions, backend_pipeline

MARK = "E2LLM_ANSWERS "
"""Starts the line with the answers (vLLM logs to stdout too)."""


def main() -> None:
    jobs, gen = json.loads(sys.argv[1]), GenerationConfig(max_new_tokens=int(sys.argv[2]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = backend_pipeline(device="cpu", backend=BackendOptions("vllm"))
    with ThreadPoolExecutor(len(jobs)) as pool:  # concurrent calls: batched by the engine
        answers = list(pool.map(lambda job: pipe.ask([job[0]], job[1], gen).text, jobs))
    assert pipe.model.backend is not None
    pipe.model.backend.close()
    print(MARK + json.dumps(answers), flush=True)


if __name__ == "__main__":
    main()

"""The vLLM backend against a real vLLM server on 127.0.0.1 (the bundled models).

The shipped checkpoint's decoder is exported merged (``e2llm export``), served by
``.venv-vllm`` (``make vllm-setup``: vLLM pins its own ``transformers``, so it lives in
its own environment) with ``--enable-prompt-embeds --dtype float32``, and must answer
the same greedy tokens as the library's own decoder from the same soft tokens.
Skipped only where ``.venv-vllm`` is missing; ``$E2LLM_VLLM_PYTHON`` names another
Python with vLLM.
"""

from __future__ import annotations

import json
import os
import subprocess
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from e2llm_integrations import cli
from e2llm_integrations.core import E2LLMPipeline, GenerationConfig
from e2llm_integrations.core.backend import BackendOptions, backend_pipeline
from e2llm_integrations.core.generation import eos_ids, sampled_ids
from e2llm_integrations.core.registry import get_pipeline
from e2llm_integrations.serving.export import export_merged_decoder
from e2llm_integrations.serving.launch import ServerSpec, vllm_server
from e2llm_integrations.serving.vllm import VLLMServerBackend

pytestmark = [pytest.mark.integration, pytest.mark.enable_socket]

ROOT = Path(__file__).resolve().parents[2]
VLLM_PYTHON = Path(os.environ.get("E2LLM_VLLM_PYTHON", ROOT / ".venv-vllm" / "bin" / "python"))
if not VLLM_PYTHON.exists():
    pytest.skip(
        f"no vLLM environment at {VLLM_PYTHON}: run `make vllm-setup` (or set E2LLM_VLLM_PYTHON)",
        allow_module_level=True,
    )

DOCS = {
    "harbour": "The committee met in the spring to review the harbour project. Engineers reported "
    "that the northern breakwater had settled by four centimetres since the previous survey. The "
    "finance officer noted that costs were eleven percent below the budget because steel prices "
    "had fallen during the winter.\n" * 6,
    "orchard": "The orchard on the hill grows seven kinds of apple. The oldest tree was planted "
    "in 1921 by a teacher named Ada Brook. Every October the village holds a cider fair, and the "
    "prize for the best cider is a copper kettle.\n" * 6,
    "observatory": "The observatory's main telescope has a mirror 2.4 metres wide. It was moved "
    "to the mountain in 1978 because the city lights had grown too bright. Astronomers there "
    "discovered a comet in 1994 and named it after the night porter.\n" * 6,
}
QUESTIONS = {
    "harbour": ["How much did the breakwater settle?", "Why were costs below budget?"],
    "orchard": ["Who planted the oldest tree?", "What is the prize at the cider fair?"],
    "observatory": ["How wide is the mirror?", "When was the telescope moved?"],
}
GEN = GenerationConfig(max_new_tokens=24)


@pytest.fixture(scope="module")
def local() -> E2LLMPipeline:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_pipeline(device="cpu")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("vllm")
    decoder = export_merged_decoder(None, root / "decoder")
    spec = ServerSpec(str(VLLM_PYTHON), str(decoder), max_model_len=8192)
    with vllm_server(spec, root / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def remote(server: str) -> E2LLMPipeline:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return backend_pipeline(device="cpu", backend=BackendOptions("vllm", base_url=server))


def _embeds(pipe: E2LLMPipeline, doc: str, question: str) -> torch.Tensor:
    corpus, _, kwargs = pipe.prepare(pipe.encode([doc]), question, GEN)
    with pipe.lock:
        inputs = pipe.model.decoder_inputs(corpus.features, corpus.mask, question, GEN, **kwargs)
    return inputs.embeds  # (1, P, d_dec)


def test_server_answers_the_local_greedy_tokens(local: E2LLMPipeline, server: str) -> None:
    backend = VLLMServerBackend(server)
    eos = set(eos_ids(local.model.decoder, local.model.tokenizer))
    compared = 0
    for name, questions in QUESTIONS.items():
        for question in questions:
            embeds = _embeds(local, DOCS[name], question)
            with local.lock:
                mine = list(sampled_ids(local.model.decoder, embeds, GEN))
            theirs = list(backend.token_ids(embeds[0], GEN))
            cut = next((i for i, t in enumerate(mine) if t in eos), len(mine))
            assert theirs[:cut] == mine[:cut], (name, question)
            compared += cut
    assert compared >= 6  # real answers, not empty ones


def test_pipeline_answers_match_and_report_usage(
    local: E2LLMPipeline, remote: E2LLMPipeline
) -> None:
    for name in DOCS:
        question = QUESTIONS[name][0]
        mine = local.ask(local.encode([DOCS[name]]), question, GEN)
        theirs = remote.ask(remote.encode([DOCS[name]]), question, GEN)
        assert theirs.text == mine.text and theirs.text.strip()
        assert theirs.finish_reason == mine.finish_reason
        assert theirs.usage.to_dict() == mine.usage.to_dict()
        assert [s.chunk_index for s in theirs.sources] == [s.chunk_index for s in mine.sources]


def test_cli_asks_through_the_server(
    local: E2LLMPipeline, server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = tmp_path / "orchard.txt"
    doc.write_text(DOCS["orchard"], encoding="utf-8")
    question = QUESTIONS["orchard"][0]
    argv = ["ask", "--docs", str(doc), "--backend", "vllm", "--base-url", server, "--json"]
    argv += ["--max-new-tokens", str(GEN.max_new_tokens), "--device", "cpu", "--", question]
    assert cli.main(argv) == 0
    got = json.loads(capsys.readouterr().out)
    want = local.ask([doc], question, GEN)
    assert got["answer"] == want.text and want.text.strip()
    assert got["usage"] == want.usage.to_dict()


def test_concurrent_questions_over_different_documents(
    local: E2LLMPipeline, remote: E2LLMPipeline
) -> None:
    jobs = [(name, q) for name, qs in QUESTIONS.items() for q in qs]
    want = [local.ask([DOCS[n]], q, GEN).text for n, q in jobs]
    with ThreadPoolExecutor(len(jobs)) as pool:
        got = list(pool.map(lambda job: remote.ask([DOCS[job[0]]], job[1], GEN).text, jobs))
    assert got == want


def test_chat_models_stream_with_usage(local: E2LLMPipeline, server: str) -> None:
    from langchain_core.messages import HumanMessage

    from e2llm_integrations.langchain import E2LLMChat
    from e2llm_integrations.llama_index import E2LLM

    content = [
        {"type": "text-plain", "mime_type": "text/plain", "text": DOCS["orchard"]},
        {"type": "text", "text": QUESTIONS["orchard"][0]},
    ]
    message = HumanMessage(content=content)
    here = E2LLMChat(pipeline=local, max_tokens=24).invoke([message])
    chat = E2LLMChat(backend="vllm", base_url=server, device="cpu", max_tokens=24)
    chunks = list(chat.stream([message]))
    assert "".join(str(c.content) for c in chunks) == here.content
    assert chunks[0].usage_metadata is not None
    assert chunks[0].usage_metadata["input_tokens"] == here.usage_metadata["input_tokens"]
    assert chunks[-1].usage_metadata["output_tokens"] == here.usage_metadata["output_tokens"]
    llm = E2LLM(backend="vllm", base_url=server, device="cpu", max_new_tokens=24)
    prompt = f"{DOCS['orchard']}\n\n{QUESTIONS['orchard'][0]}"
    streamed = "".join(r.delta or "" for r in llm.stream_complete(prompt))
    assert streamed == E2LLM.from_pipeline(local, max_new_tokens=24).complete(prompt).text
    assert llm.last_usage is not None and llm.last_usage.output_tokens > 0


def test_in_process_engine_answers_the_local_tokens(local: E2LLMPipeline, tmp_path: Path) -> None:
    """``vllm.LLM`` inside a script run by the vLLM environment (if it has this library)."""
    probe = subprocess.run(
        [str(VLLM_PYTHON), "-c", "import e2llm_integrations"], capture_output=True
    )
    if probe.returncode != 0:
        pytest.skip("the vLLM environment lacks this library: `make vllm-setup` installs it")
    jobs = [(DOCS[n], qs[0]) for n, qs in QUESTIONS.items()]
    want = [local.ask([doc], q, GEN).text for doc, q in jobs]
    script = Path(__file__).with_name("_vllm_in_process.py")
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [str(VLLM_PYTHON), str(script), json.dumps(jobs), str(GEN.max_new_tokens)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("E2LLM_ANSWERS "))
    assert json.loads(line.split(" ", 1)[1]) == want

"""``e2llm ask --expand K --json``: the sources ``pipe.ask`` reports, as one JSON object."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from e2llm_integrations import cli
from e2llm_integrations.core import E2LLMPipeline, GenerationConfig
from e2llm_integrations.core.expansion import DEFAULT_EXPAND_TOP_K

DOCS = {
    "bridge.txt": "The Jade Bridge was opened in 1931 by the river authority. It spans 240 "
    "metres. Its architect, Mara Voss, also designed the northern lighthouse. The bridge was "
    "repainted green in 1978, which gave it its present name.",
    "market.txt": "Ferries stopped running once the bridge opened, and the old quay became a "
    "market. The market hall burned down in 1952 and was rebuilt in brick two years later. "
    "Today about sixty traders rent stalls there from the harbour board.",
    "river.txt": "In winter the river freezes near the delta. Skaters gather under the bridge, "
    "and the town council hires guards to test the ice each week. A race over eleven "
    "kilometres is held whenever the ice is thick enough.",
}
QUESTION = "Who was the architect of the bridge?"
NEW_TOKENS = 4


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    paths = []
    for name, text in DOCS.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        paths.append(tmp_path / name)
    return paths


@pytest.fixture
def tiny_cli(tiny_pipeline: E2LLMPipeline, monkeypatch: pytest.MonkeyPatch) -> E2LLMPipeline:
    """``e2llm ask`` over the tiny pipeline instead of the shipped checkpoint."""

    def from_pretrained(
        checkpoint: Any = None, device: Any = None, config: Any = None, autocast: Any = "auto"
    ) -> Any:
        assert autocast == "auto"  # the CLI passes the core default through
        return tiny_pipeline

    monkeypatch.setattr(E2LLMPipeline, "from_pretrained", staticmethod(from_pretrained))
    return tiny_pipeline


def _ask(files: list[Path], *extra: str) -> list[str]:
    docs = [str(f) for f in files]
    return ["ask", "--docs", *docs, "--max-new-tokens", str(NEW_TOKENS), *extra, "--", QUESTION]


def _run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict[str, Any]:
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1, "--json prints exactly one line: one JSON object"
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.mark.parametrize("k", [1, 3])
def test_json_reports_what_the_pipeline_expands(
    tiny_cli: E2LLMPipeline, files: list[Path], capsys: pytest.CaptureFixture[str], k: int
) -> None:
    got = _run_json(capsys, _ask(files, "--expand", str(k), "--json"))
    corpus = tiny_cli.encode(files)
    want = tiny_cli.ask(
        corpus, QUESTION, GenerationConfig(max_new_tokens=NEW_TOKENS), expand_top_k=k
    )
    assert set(got) == {"answer", "usage", "sources", "finish_reason"}
    assert got["sources"] == [s.to_dict() for s in want.sources] and len(want.sources) == k
    assert got["usage"] == want.usage.to_dict() and got["usage"]["expanded_chunks"] == k
    assert (got["answer"], got["finish_reason"]) == (want.text, want.finish_reason)
    for s in got["sources"]:  # doc ids are the file paths, spans index into the files
        assert s["doc_id"] in {str(f) for f in files}
        assert Path(s["doc_id"]).read_text(encoding="utf-8")[s["start"] : s["end"]] == s["text"]


def test_default_and_soft_only(
    tiny_cli: E2LLMPipeline, files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert len(tiny_cli.encode(files)) > DEFAULT_EXPAND_TOP_K
    default = _run_json(capsys, _ask(files, "--json"))
    soft = _run_json(capsys, _ask(files, "--expand", "0", "--json"))
    assert len(default["sources"]) == default["usage"]["expanded_chunks"] == DEFAULT_EXPAND_TOP_K
    assert soft["sources"] == [] and soft["usage"]["expanded_chunks"] == 0
    assert soft["usage"]["n_chunks"] == default["usage"]["n_chunks"]
    n_soft = soft["usage"]["soft_tokens"]
    assert soft["usage"]["input_positions"] == len(tiny_cli.model.prompt(QUESTION)) + n_soft
    assert soft["usage"]["input_positions"] < default["usage"]["input_positions"]


def test_text_and_stream_output_log_the_sources(
    tiny_cli: E2LLMPipeline,
    files: list[Path],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="e2llm")
    want = tiny_cli.ask(
        tiny_cli.encode(files),
        QUESTION,
        GenerationConfig(max_new_tokens=NEW_TOKENS),
        expand_top_k=2,
    )
    lines = [
        f"source {i}: {s.doc_id} [{s.start}:{s.end}] (chunk {s.chunk_index}, score {s.score:.3f})"
        for i, s in enumerate(want.sources, 1)
    ]
    for mode in ([], ["--stream"]):
        caplog.clear()
        assert cli.main(_ask(files, "--expand", "2", *mode)) == 0
        assert capsys.readouterr().out == want.text + "\n"  # stdout: the answer only
        logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("source ")]
        assert logged == lines


@pytest.mark.parametrize("value", ["-1", "2.5", "two"])
def test_bad_expand_exits_2_with_a_message(
    tiny_cli: E2LLMPipeline, files: list[Path], capsys: pytest.CaptureFixture[str], value: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(_ask(files, f"--expand={value}", "--json"))
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--expand" in captured.err and ">= 0" in captured.err and repr(value) in captured.err


def test_json_and_stream_do_not_mix(
    tiny_cli: E2LLMPipeline, files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(_ask(files, "--json", "--stream")) == cli.EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == "" and "--json" in captured.err and "--stream" in captured.err


def test_base_url_needs_the_vllm_backend(
    tiny_cli: E2LLMPipeline, files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(_ask(files, "--base-url", "http://127.0.0.1:8000")) != 0
    captured = capsys.readouterr()
    assert captured.out == "" and "backend='vllm'" in captured.err

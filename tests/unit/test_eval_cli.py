"""`e2llm eval niah|qa|report` and `e2llm bench` end to end on the tiny models (--model-config)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from e2llm_integrations.cli import main
from e2llm_integrations.eval.cli import command_line

from ..conftest import tiny_config
from .eval_support import write_data


@pytest.fixture(scope="module")
def setup(tiny_model_dirs, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("evalcli")
    config = root / "tiny.json"
    config.write_text(tiny_config(tiny_model_dirs).to_json())
    write_data(root / "data")
    return {"config": str(config), "data": str(root / "data"), "out": str(root / "results")}


def _run(setup: dict[str, str], *argv: str) -> int:
    common = ["--model-config", setup["config"], "--data-dir", setup["data"],
              "--out-dir", setup["out"], "--threads", "1"]  # fmt: skip
    return main([*argv, *common])


@pytest.fixture(scope="module")
def niah_result(setup: dict[str, str]) -> dict:  # type: ignore[type-arg]
    assert _run(setup, "eval", "niah", "--quick", "--lengths", "200,300", "--depths", "0,100",
                "--max-new-tokens", "2", "--full-max-length", "200") == 0  # fmt: skip
    return json.loads((Path(setup["out"]) / "niah.json").read_text())


def test_niah_writes_cells_summary_and_heatmaps(setup, niah_result, capsys) -> None:  # type: ignore[no-untyped-def]
    cells = niah_result["cells"]
    # quick: 1 needle; full stops at 200 tokens; the five others run at both lengths
    assert len(cells) == 2 * 2 * 5 + 2 * 1
    assert {c["system"] for c in cells} == {"e2llm", "e2llm@0", "full", "rag@2", "rag@4", "rag@8"}
    assert all(c["score"] in (0.0, 1.0) for c in cells)
    meta = niah_result["meta"]
    assert meta["trained"] is False and "untrained" in meta["model"]
    assert meta["command"].startswith("e2llm eval niah --model-config")
    assert "--quick" in meta["command"] and meta["machine"]["cpu_count"]
    for system in ("e2llm", "e2llm_k0", "full", "rag_k2", "rag_k4", "rag_k8"):
        png = Path(setup["out"]) / f"niah_{system}.png"
        assert png.read_bytes()[:4] == b"\x89PNG"
    assert all("expanded" in c for c in cells if c["system"] == "e2llm")
    assert not any("expanded" in c for c in cells if c["system"] == "e2llm@0")


def test_niah_paraphrase_variant_writes_its_own_file(setup) -> None:  # type: ignore[no-untyped-def]
    assert _run(setup, "eval", "niah", "--quick", "--lengths", "200", "--depths", "50",
                "--variant", "paraphrase", "--systems", "e2llm,rag@2",
                "--max-new-tokens", "2") == 0  # fmt: skip
    result = json.loads((Path(setup["out"]) / "niah_paraphrase.json").read_text())
    assert result["meta"]["config"]["variant"] == "paraphrase"
    assert len(result["cells"]) == 2 and (Path(setup["out"]) / "niah_paraphrase_rag_k2.png").is_file()


def test_qa_writes_f1_em_per_cell_and_prints_table(setup, capsys) -> None:  # type: ignore[no-untyped-def]
    assert _run(setup, "eval", "qa", "--quick", "--lengths", "250", "--n", "2",
                "--systems", "e2llm,full", "--max-new-tokens", "2") == 0  # fmt: skip
    table = capsys.readouterr().out
    assert "| e2llm |" in table and "multi_doc 250 F1 / EM" in table
    result = json.loads((Path(setup["out"]) / "qa.json").read_text())
    assert len(result["cells"]) == 2 * 2 * 2
    assert {c["task"] for c in result["cells"]} == {"single_doc", "multi_doc"}
    assert result["summary"]["full"]["single_doc"]["250"]["n"] == 2


def test_bench_in_process_writes_rows_and_plot(setup, capsys) -> None:  # type: ignore[no-untyped-def]
    assert _run(setup, "bench", "--quick", "--in-process", "--lengths", "150,700",
                "--systems", "e2llm_warm,full", "--new-tokens", "2") == 0  # fmt: skip
    assert "TTFT" in capsys.readouterr().out
    result = json.loads((Path(setup["out"]) / "bench.json").read_text())
    rows = {(r["system"], r["length"]): r for r in result["rows"]}
    assert len(rows) == 2 * 2
    assert rows[("full", 700)]["skipped"]  # over the tiny decoder's 512 window
    assert rows[("e2llm_warm", 150)]["ttft_speedup"] > 0
    assert (Path(setup["out"]) / "bench.png").is_file()


def test_report_renders_every_result_with_its_command(setup, niah_result, tmp_path) -> None:  # type: ignore[no-untyped-def]
    doc = tmp_path / "docs" / "RESULTS.md"
    assert main(["eval", "report", "--results-dir", setup["out"], "--out", str(doc)]) == 0
    text = doc.read_text()
    assert niah_result["meta"]["command"] in text
    assert "untrained: scores are noise" in text
    assert "niah_e2llm.png" in text and "| system |" in text


def test_report_keeps_what_follows_the_hand_written_marker(setup, niah_result, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from e2llm_integrations.eval.report import HAND_WRITTEN

    doc = tmp_path / "RESULTS.md"
    doc.write_text(f"# stale tables\n\nold numbers\n\n{HAND_WRITTEN}\n\n## Probe\n\nkept 0.245\n")
    assert main(["eval", "report", "--results-dir", setup["out"], "--out", str(doc)]) == 0
    text = doc.read_text()
    assert "old numbers" not in text and niah_result["meta"]["command"] in text
    assert text.index(niah_result["meta"]["command"]) < text.index(HAND_WRITTEN)
    assert text.endswith(f"{HAND_WRITTEN}\n\n## Probe\n\nkept 0.245\n")
    assert main(["eval", "report", "--results-dir", setup["out"], "--out", str(doc)]) == 0
    assert doc.read_text() == text  # rendering again changes nothing


def test_bad_options_exit_with_usage_error(setup, capsys) -> None:  # type: ignore[no-untyped-def]
    assert _run(setup, "eval", "niah", "--systems", "e2llm,gpt4") == 2
    assert "Unknown system" in capsys.readouterr().err
    assert _run(setup, "eval", "qa", "--lengths", "2x") == 2
    assert main(["eval", "niah", "--checkpoint", "a", "--model-config", "b"]) == 2


def test_command_line_lists_only_changed_options() -> None:
    from e2llm_integrations.cli import build_parser

    args = build_parser().parse_args(["eval", "qa", "--n", "5", "--quick"])
    assert command_line(args) == "e2llm eval qa --quick --n 5"


def test_checkpoint_label_names_path_and_digest(tiny_pipeline, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from e2llm_integrations.core.checkpoint import CONFIG_NAME
    from e2llm_integrations.eval.common import ModelSource, checkpoint_digest

    path = tiny_pipeline.model.save_pretrained(tmp_path / "ckpt")
    digest = checkpoint_digest(path)
    assert ModelSource(checkpoint=str(path)).label() == f"checkpoint {path} (sha256 {digest})"
    (path / CONFIG_NAME).write_text((path / CONFIG_NAME).read_text() + " ")
    assert checkpoint_digest(path) != digest
    assert "untrained" in ModelSource(model_config="x.json").label()

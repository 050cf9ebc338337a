"""The vLLM backend without vLLM: wire format, SSE parsing, the HTTP client, the wiring.

A stdlib HTTP server on 127.0.0.1 plays a vLLM server (SSE over a Completions route);
a backend that replays the tiny decoder stands in for the engine, so the remote path
(input built under the lock, decoding without it) is checked against the local one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import torch

from e2llm_integrations.core import E2LLMPipeline, GenerationConfig
from e2llm_integrations.core.backend import BackendOptions, DecoderBackend
from e2llm_integrations.core.generation import sampled_ids
from e2llm_integrations.serving.vllm import (
    VLLMServerBackend,
    completion_ids,
    completion_request,
    decode_embeds,
    encode_embeds,
    iter_sse,
    sampling_fields,
)
from tests.conftest import tiny_config

DOC = "The harbour committee met in May. The breakwater settled four centimetres. " * 6


# ---------------------------------------------------------------------- wire format
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_embeds_round_trip_keeps_values_shape_and_dtype(dtype: torch.dtype) -> None:
    embeds = torch.randn(7, 12).to(dtype)
    back = decode_embeds(encode_embeds(embeds))
    assert back.dtype == dtype and back.shape == (7, 12)
    assert torch.equal(back, embeds)


def test_encoded_view_carries_only_its_own_rows() -> None:
    big = torch.randn(1, 500, 64)
    view = big[0, :10]
    assert decode_embeds(encode_embeds(view)).shape == (10, 64)
    assert len(encode_embeds(view)) < len(encode_embeds(big[0])) / 20  # not the whole storage


def test_embeds_must_be_two_dimensional() -> None:
    with pytest.raises(ValueError, match=r"\(positions, d_dec\)"):
        encode_embeds(torch.zeros(1, 3, 4))


def test_completion_request_fields() -> None:
    body = completion_request("e2llm", torch.zeros(3, 4), GenerationConfig(max_new_tokens=9))
    assert body["stream"] is True and body["return_token_ids"] is True
    assert body["max_tokens"] == 9 and body["temperature"] == 0.0 and body["model"] == "e2llm"
    assert "stop" not in body and "seed" not in body
    fields = sampling_fields(GenerationConfig(stop=("END",), seed=3, temperature=0.5))
    assert fields["stop"] == ["END"] and fields["seed"] == 3 and fields["temperature"] == 0.5


# ---------------------------------------------------------------------- SSE
def test_sse_events_comments_crlf_and_done() -> None:
    lines = [
        b": keep-alive\r\n",
        b'data: {"a":\r\n',
        b"data: 1}\r\n",
        b"\r\n",
        b"event: message\n",
        b"data:2\n",
        b"\n",
        b"data: [DONE]\n",
        b"\n",
        b"data: after-done\n",
        b"\n",
    ]
    assert list(iter_sse(lines)) == ['{"a":\n1}', "2"]


def test_sse_last_event_without_blank_line() -> None:
    assert list(iter_sse(["data: x"])) == ["x"]


def test_completion_ids_across_events_and_usage_chunk() -> None:
    events = [
        json.dumps({"choices": [{"text": "a", "token_ids": [5, 6]}]}),
        json.dumps({"choices": [{"text": "", "token_ids": [2], "finish_reason": "stop"}]}),
        json.dumps({"choices": [], "usage": {"completion_tokens": 3}}),
    ]
    assert list(completion_ids(events)) == [5, 6, 2]


def test_completion_error_event_raises() -> None:
    events = [json.dumps({"error": {"message": "engine died", "code": 500}})]
    with pytest.raises(RuntimeError, match="engine died"):
        list(completion_ids(events))


# ---------------------------------------------------------------------- HTTP client
class FakeVLLM(BaseHTTPRequestHandler):
    """Answers /v1/models and streams token ids 10, 11, ... for /v1/completions."""

    requests: list[dict[str, Any]] = []
    status = 200

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._json({"data": [{"id": "served-e2llm"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"body": body, "auth": self.headers.get("Authorization")})
        if type(self).status != 200:
            self._json({"error": {"message": "prompt too long"}}, type(self).status)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        try:
            for i in range(body["max_tokens"]):
                event = {"choices": [{"text": "x", "token_ids": [10 + i]}]}
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _json(self, body: dict[str, Any], status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def fake_server() -> Iterator[str]:
    FakeVLLM.requests, FakeVLLM.status = [], 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeVLLM)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.enable_socket
def test_client_streams_ids_and_sends_the_embeds(fake_server: str) -> None:
    backend = VLLMServerBackend(fake_server + "/v1/", api_key="secret")
    embeds = torch.randn(5, 8)
    ids = list(backend.token_ids(embeds, GenerationConfig(max_new_tokens=4)))
    assert ids == [10, 11, 12, 13]
    sent = FakeVLLM.requests[0]
    assert sent["body"]["model"] == "served-e2llm"  # asked the server for its name
    assert sent["auth"] == "Bearer secret"
    assert torch.equal(decode_embeds(sent["body"]["prompt_embeds"]), embeds)


@pytest.mark.enable_socket
def test_client_stops_reading_when_closed(fake_server: str) -> None:
    backend = VLLMServerBackend(fake_server, served_model="m")
    stream = backend.token_ids(torch.zeros(2, 4), GenerationConfig(max_new_tokens=50))
    assert next(stream) == 10
    stream.close()  # closes the connection; no error


@pytest.mark.enable_socket
def test_client_maps_a_refusal_to_value_error(fake_server: str) -> None:
    FakeVLLM.status = 400
    backend = VLLMServerBackend(fake_server, served_model="m")
    with pytest.raises(ValueError, match=r"HTTP 400.*prompt too long"):
        backend.token_ids(torch.zeros(2, 4), GenerationConfig(max_new_tokens=2))


@pytest.mark.enable_socket
def test_client_without_a_server_says_how_to_start_one() -> None:
    from e2llm_integrations.serving.launch import free_port

    backend = VLLMServerBackend(f"http://127.0.0.1:{free_port()}", served_model="m")
    with pytest.raises(ConnectionError, match="--enable-prompt-embeds"):
        backend.token_ids(torch.zeros(2, 4), GenerationConfig(max_new_tokens=2))


# ---------------------------------------------------------------------- options
def test_backend_options_validation() -> None:
    assert not BackendOptions().remote
    with pytest.raises(ValueError, match="backend must be one of"):
        BackendOptions(backend="tgi")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backend='vllm'"):
        BackendOptions(base_url="http://127.0.0.1:1")
    with pytest.raises(ValueError, match="http"):
        BackendOptions(backend="vllm", base_url="127.0.0.1:8000")
    with pytest.raises(ValueError, match="engine_args"):
        BackendOptions(backend="vllm", base_url="http://h:1", engine_args={"dtype": "half"})
    key = BackendOptions(backend="vllm", base_url="http://h:1", api_key="s").key()
    assert "s" not in json.loads(key).values()


def test_core_and_serving_import_no_vllm() -> None:
    code = (
        "import sys, e2llm_integrations.core.backend, e2llm_integrations.serving.vllm, "
        "e2llm_integrations.serving.launch, e2llm_integrations.serving.export\n"
        "assert 'vllm' not in sys.modules, 'vllm imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------- wiring
class ReplayBackend:
    """The tiny decoder behind the backend interface; records whether the lock was free."""

    name = "replay"

    def __init__(self, pipeline: E2LLMPipeline) -> None:
        self.pipeline, self.lock_free, self.calls = pipeline, [], 0

    def token_ids(self, inputs_embeds: torch.Tensor, generation: GenerationConfig) -> Iterator[int]:
        self.calls += 1
        assert inputs_embeds.dim() == 2 and inputs_embeds.device.type == "cpu"
        decoder = self.pipeline.model.decoder
        for token in sampled_ids(decoder, inputs_embeds.unsqueeze(0), generation):
            self.lock_free.append(_free_elsewhere(self.pipeline.lock))
            yield token

    def close(self) -> None:
        pass


def _free_elsewhere(lock: Any) -> bool:
    got: list[bool] = []
    probe = threading.Thread(target=lambda: got.append(_try(lock)))
    probe.start()
    probe.join()
    return got[0]


def _try(lock: Any) -> bool:
    if lock.acquire(timeout=0.5):
        lock.release()
        return True
    return False


@pytest.fixture(scope="module")
def remote_pipeline(tiny_model_dirs: dict[str, str]) -> E2LLMPipeline:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return E2LLMPipeline.from_pretrained(config=tiny_config(tiny_model_dirs), device="cpu")


def _answer(pipe: E2LLMPipeline, backend: DecoderBackend | None, **gen: Any) -> Any:
    pipe.model.backend = backend
    try:
        corpus = pipe.encode([DOC])
        cfg = GenerationConfig(max_new_tokens=12, **gen)
        result = pipe.ask(corpus, "How far did it settle?", cfg)
        pieces = list(pipe.stream(corpus, "How far did it settle?", cfg))
        return result, pieces
    finally:
        pipe.model.backend = None


@pytest.mark.parametrize("stop", [(), (" the",)])
def test_remote_path_answers_as_the_local_one(remote_pipeline: E2LLMPipeline, stop: tuple) -> None:
    backend = ReplayBackend(remote_pipeline)
    local, local_pieces = _answer(remote_pipeline, None, stop=stop)
    remote, remote_pieces = _answer(remote_pipeline, backend, stop=stop)
    assert backend.calls == 2
    assert remote.text == local.text and remote.finish_reason == local.finish_reason
    assert remote.usage.to_dict() == local.usage.to_dict()
    assert [s.chunk_index for s in remote.sources] == [s.chunk_index for s in local.sources]
    assert "".join(p.text for p in remote_pieces) == local.text
    last = remote_pieces[-1]
    assert last.usage is not None and last.usage.output_tokens == local.usage.output_tokens
    assert [s.chunk_index for s in last.sources] == [s.chunk_index for s in local.sources]


def test_remote_decoding_holds_no_lock(remote_pipeline: E2LLMPipeline) -> None:
    backend = ReplayBackend(remote_pipeline)
    _answer(remote_pipeline, backend)
    assert backend.lock_free and all(backend.lock_free)


def test_remote_end_of_sequence_and_early_engine_stop(remote_pipeline: E2LLMPipeline) -> None:
    class Fixed:
        name = "fixed"

        def __init__(self, ids: list[int]) -> None:
            self.ids = ids

        def token_ids(
            self, inputs_embeds: torch.Tensor, generation: GenerationConfig
        ) -> Iterator[int]:
            return iter(self.ids)

        def close(self) -> None:
            pass

    tok = remote_pipeline.model.tokenizer
    word = tok("hello", add_special_tokens=False)["input_ids"]
    for ids, finish in (([*word, tok.eos_token_id, *word], "stop"), (word, "stop")):
        result, _ = _answer(remote_pipeline, Fixed(ids))
        assert result.text == "hello" and result.finish_reason == finish
        assert result.usage.output_tokens == len(word)
    result, _ = _answer(remote_pipeline, Fixed(word * 20))  # more than asked for: cut
    assert result.usage.output_tokens == 12 and result.finish_reason == "length"

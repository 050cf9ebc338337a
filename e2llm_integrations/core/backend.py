"""Decoder backends: where the decoder of an E2LLM model runs.

The chunk encoder, the adapter and the decoder's input-embedding table always run in
this process: they turn documents and a question into the decoder's input embeddings,
``[instruction] <soft tokens> [excerpts, question]`` (:meth:`E2LLMModel.decoder_inputs`).
The decoder itself runs

* ``"local"`` (the default): in this process, through ``transformers``, with the KV
  prefix cache of :mod:`.prefix_cache`;
* ``"vllm"``: in vLLM, fed those embeddings as ``prompt_embeds``: an engine inside this
  process, or an OpenAI-compatible ``vllm serve`` at ``base_url``
  (:mod:`e2llm_integrations.serving.vllm`; see ``docs/SERVING.md``).

A backend other than the local one implements :class:`DecoderBackend`: it turns
(positions, d_dec) embeddings and a :class:`GenerationConfig` into generated token ids,
and :func:`~.generation.decode_ids` turns those into text exactly as for the local
decoder (stop strings, end of sequence, usage). This module never imports vLLM.

Example:
    >>> BackendOptions().backend
    'local'
    >>> BackendOptions(backend="vllm", base_url="http://127.0.0.1:8000").remote
    True
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

    from .corpus import EncodedCorpus
    from .expansion import Source
    from .generation import GenerationChunk, GenerationConfig, GenerationResult, Usage
    from .options import Autocast
    from .pipeline import E2LLMPipeline
    from .runtime import TokenStream

BackendName = Literal["local", "vllm"]


def _help(text: str) -> dict[str, str]:
    return {"help": text}


BACKENDS: tuple[str, ...] = ("local", "vllm")


@runtime_checkable
class DecoderBackend(Protocol):
    """A decoder that runs outside this process's ``transformers`` model.

    Implementations must be safe to call from several threads at once: the pipeline
    builds each call's input under its lock and then streams without it.
    """

    name: str
    """Short name for logs and metadata, e.g. ``"vllm-server"``."""

    def token_ids(self, inputs_embeds: torch.Tensor, generation: GenerationConfig) -> Iterator[int]:
        """Generated token ids for one prompt, as they come.

        Args:
            inputs_embeds: (positions, d_dec) input embeddings, on the CPU.
            generation: Decoding options (``max_new_tokens``, sampling, ``stop``).

        The iterator may include the end-of-sequence id and may end early (the engine
        stopped); closing it cancels the request.
        """
        ...

    def close(self) -> None:
        """Release the engine or connection (later calls may fail)."""
        ...


@dataclass(frozen=True)
class BackendOptions:
    """Where the decoder runs, for :func:`backend_pipeline` and the integrations.

    Attributes:
        backend: ``"local"`` (this process, transformers) or ``"vllm"``.
        base_url: With ``"vllm"``: an OpenAI-compatible vLLM server started with
            ``--enable-prompt-embeds`` (e.g. ``http://127.0.0.1:8000``); ``None``
            starts a vLLM engine in this process (needs ``pip install
            "e2llm-integrations[vllm]"`` and an ``if __name__ == "__main__":`` guard).
        served_model: The server's model name; ``None`` asks the server.
        decoder_dir: In-process vLLM: the merged decoder folder (``e2llm export``);
            ``None`` exports it once into the cache directory.
        api_key: Bearer token for the server (``vllm serve --api-key``); ``None`` reads
            ``$E2LLM_VLLM_API_KEY``.
        timeout_s: Seconds to wait for the server to answer (and between two tokens).
        engine_args: In-process vLLM: extra ``vllm.LLM(...)`` keyword arguments, e.g.
            ``{"tensor_parallel_size": 2}`` or ``{"gpu_memory_utilization": 0.3}``.
    """

    backend: BackendName = field(
        default="local",
        metadata=_help(
            "Where the decoder runs: 'local' (this process) or 'vllm' (a vLLM server at "
            "base_url, else a vLLM engine in this process)."
        ),
    )
    base_url: str | None = field(
        default=None,
        metadata=_help(
            "With backend='vllm': the URL of a `vllm serve DIR --enable-prompt-embeds` "
            "server (trusted callers only); None starts vLLM in this process."
        ),
    )
    served_model: str | None = field(
        default=None, metadata=_help("The vLLM server's model name; None asks the server.")
    )
    decoder_dir: str | None = field(
        default=None,
        metadata=_help(
            "In-process vLLM: the merged decoder folder (e2llm export); None exports it once "
            "into the cache directory."
        ),
    )
    api_key: str | None = field(
        default=None,
        repr=False,
        metadata=_help("Bearer token of the vLLM server; None reads $E2LLM_VLLM_API_KEY."),
    )
    timeout_s: float = field(
        default=600.0, metadata=_help("Seconds to wait for the server (and between two tokens).")
    )
    engine_args: Mapping[str, Any] = field(
        default_factory=dict,
        metadata=_help("In-process vLLM: extra vllm.LLM(...) keyword arguments."),
    )

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(
                f"backend must be one of {list(BACKENDS)}, got {self.backend!r}: 'local' runs "
                "the decoder in this process, 'vllm' in vLLM (base_url=... for a server)."
            )
        if self.backend == "local" and (self.base_url or self.decoder_dir or self.engine_args):
            raise ValueError(
                "base_url, decoder_dir and engine_args configure the vLLM backend; pass "
                "backend='vllm' with them (or drop them for the local decoder)."
            )
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"base_url must be an http(s) URL such as 'http://127.0.0.1:8000', got "
                f"{self.base_url!r}."
            )
        if self.base_url is not None and self.engine_args:
            raise ValueError(
                "engine_args configure an in-process vLLM engine; a server takes its own "
                "flags (vllm serve ... --tensor-parallel-size N). Drop engine_args or base_url."
            )
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0 seconds, got {self.timeout_s!r}.")
        object.__setattr__(self, "engine_args", dict(self.engine_args))

    @property
    def remote(self) -> bool:
        """Whether the decoder runs outside this process's transformers model."""
        return self.backend != "local"

    def key(self) -> str:
        """A string that identifies these options (the api key excluded)."""
        fields = {k: v for k, v in vars(self).items() if k != "api_key"}
        return json.dumps(fields, sort_keys=True, default=str)


_PIPELINES: dict[tuple[Any, ...], E2LLMPipeline] = {}
_LOCK = threading.Lock()


def backend_pipeline(
    checkpoint: str | None = None,
    device: str | None = None,
    trust_remote_code: bool | None = None,
    backend: BackendOptions | None = None,
    autocast: Autocast = "auto",
) -> E2LLMPipeline:
    """The shared pipeline for a checkpoint whose decoder runs on ``backend``.

    The local backend is :func:`~.registry.get_pipeline`'s pipeline. Another backend gets
    its own pipeline per (checkpoint, device, options), loaded once: the encoder, the
    adapter, the embedding table and the tokenizer run here, the decoder in vLLM.

    Example:
        >>> vllm = BackendOptions(backend="vllm", base_url="http://127.0.0.1:8000")
        >>> pipe = backend_pipeline(backend=vllm)  # doctest: +SKIP
        >>> pipe.ask(["report.txt"], "Who wrote it?").text  # doctest: +SKIP
    """
    from .registry import get_pipeline

    options = backend or BackendOptions()
    if not options.remote:
        return get_pipeline(checkpoint, device, trust_remote_code, autocast)
    key = (checkpoint, device, trust_remote_code, options.key(), autocast)
    with _LOCK:
        if key not in _PIPELINES:
            from .pipeline import E2LLMPipeline

            pipe = E2LLMPipeline.from_pretrained(
                checkpoint, device=device, trust_remote_code=trust_remote_code, autocast=autocast
            )
            pipe.model.backend = build_backend(options, checkpoint)
            _PIPELINES[key] = pipe
        return _PIPELINES[key]


def build_backend(options: BackendOptions, checkpoint: str | None) -> DecoderBackend | None:
    """The :class:`DecoderBackend` for ``options`` (``None`` for the local decoder)."""
    if not options.remote:
        return None
    from ..serving.vllm import vllm_backend  # the library's own module; imports vllm lazily

    return vllm_backend(options, checkpoint)


def clear_backend_pipelines() -> None:
    """Close every backend and forget the pipelines :func:`backend_pipeline` loaded."""
    with _LOCK:
        for pipe in _PIPELINES.values():
            if pipe.model.backend is not None:
                pipe.model.backend.close()
        _PIPELINES.clear()


def remote_stream(
    pipeline: E2LLMPipeline,
    corpus: EncodedCorpus,
    sources: Sequence[Source],
    question: str,
    generation: GenerationConfig | None,
    kwargs: dict[str, Any],
    usage: Usage,
) -> TokenStream:
    """``pipeline.stream_prepared`` when the decoder runs on a backend.

    The lock covers building the decoder input (adapter, tokenizer, embedding table);
    decoding holds none, so concurrent calls reach the engine together and it batches
    them. The last chunk carries the sources, as the local stream's does.
    """
    from .runtime import TokenStream

    model = pipeline.model
    with pipeline.lock:
        inputs = model.decoder_inputs(
            corpus.features,
            corpus.mask,
            question,
            generation,
            context_tokens=corpus.total_context_tokens,
            **kwargs,
        )

    def produce() -> Iterator[GenerationChunk]:
        for piece in model.decode_remote(inputs, generation):
            if piece.usage is not None:
                piece.usage.expanded_chunks = len(sources)
                piece.usage.dropped_chunks = corpus.dropped_chunks
                piece.sources = tuple(sources)
            yield piece

    return TokenStream(produce, contextlib.nullcontext(), usage, sources)


def collect(stream: Iterable[GenerationChunk]) -> GenerationResult:
    """A whole answer from a stream whose last chunk carries usage and sources."""
    from .generation import GenerationResult

    pieces, last = [], None
    for last in stream:
        pieces.append(last.text)
    if last is None or last.usage is None or last.finish_reason is None:
        raise RuntimeError("The decoder stream ended without its final chunk.")
    return GenerationResult("".join(pieces), last.finish_reason, last.usage, list(last.sources))

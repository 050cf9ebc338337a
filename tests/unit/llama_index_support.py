"""Shared data and fixtures for the LlamaIndex tests: real prose, a real vector index.

The passages are short factual paragraphs written for these tests (no network). Each
one becomes its own LlamaIndex node; several are long enough to make several E2LLM
chunks at the tiny models' ``chunk_tokens=32``.
"""

from __future__ import annotations

import functools

import pytest

PASSAGES: dict[str, str] = {
    "lighthouse": (
        "The Lighthouse of Alexandria was built on the island of Pharos in the third century "
        "BC, during the reign of Ptolemy II. It guided sailors into the busy harbour for well "
        "over a thousand years. Ancient writers counted it among the Seven Wonders of the "
        "World. A series of earthquakes between the tenth and fourteenth centuries damaged "
        "the tower, and its last stones were reused in a fortress built on the same site."
    ),
    "honeybees": (
        "A honeybee colony is organised around a single queen, thousands of female workers "
        "and, in summer, a few hundred male drones. Workers change jobs as they age: young "
        "bees clean cells and feed larvae, middle-aged bees build comb and guard the "
        "entrance, and the oldest bees forage for nectar and pollen. A forager that finds a "
        "good patch of flowers returns to the hive and performs a waggle dance whose angle "
        "and duration tell her sisters the direction and distance of the food."
    ),
    "glaciers": (
        "Glaciers form where more snow falls in winter than melts in summer. Over many years "
        "the buried snow is compressed into dense blue ice, which begins to flow downhill "
        "under its own weight. As it moves, a glacier plucks rocks from its bed and grinds "
        "them against the ground, carving U-shaped valleys and leaving ridges of debris "
        "called moraines where the ice finally melts."
    ),
    "printing": (
        "Johannes Gutenberg developed a printing press with movable metal type in Mainz "
        "around 1450. His workshop printed the famous Gutenberg Bible in about 180 copies. "
        "Printing spread quickly through Europe: by 1500 presses were running in more than "
        "two hundred towns, books became far cheaper, and ideas travelled faster than ever "
        "before."
    ),
    "tides": (
        "Ocean tides are caused mainly by the gravitational pull of the Moon, with a smaller "
        "contribution from the Sun. Most coasts see two high tides and two low tides every "
        "lunar day of about twenty-four hours and fifty minutes. When the Sun, Moon and Earth "
        "line up at new and full moon, the pulls add together and produce the especially "
        "large spring tides."
    ),
}


@functools.cache
def _embed_model():  # type: ignore[no-untyped-def]
    from e2llm_integrations.llama_index import SentenceTransformerEmbedding

    return SentenceTransformerEmbedding(device="cpu")


@functools.cache
def _prose_index():  # type: ignore[no-untyped-def]
    from llama_index.core import Document, VectorStoreIndex

    docs = [Document(text=text, doc_id=name) for name, text in PASSAGES.items()]
    return VectorStoreIndex.from_documents(docs, embed_model=_embed_model())


# Test modules re-export these fixtures; the builders are cached, so each object is made
# once per session however many modules use it.
@pytest.fixture(scope="session")
def embed_model():  # type: ignore[no-untyped-def]
    """The bundled MiniLM as a LlamaIndex embedding model."""
    return _embed_model()


@pytest.fixture(scope="session")
def prose_index():  # type: ignore[no-untyped-def]
    """A real ``VectorStoreIndex``: one node per passage, embedded with MiniLM."""
    return _prose_index()

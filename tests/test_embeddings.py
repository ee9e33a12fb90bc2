"""The embedder: the real model, offline; its direct path gives what SentenceTransformer.encode gives."""

from __future__ import annotations

import numpy as np

from assistant.embeddings import DIRECT_TEXTS

TEXTS = [
    "What is dry needling?",
    "Is it safe if I'm pregnant?",
    "I suddenly can't control my bladder and my legs feel numb",
    "¿Duele la punción seca? 针刺疼吗? 😬",
    "pain " * 600,  # longer than the model's 256 tokens: truncated alike
]


def test_direct_path_matches_sentence_transformers_encode(embedder):
    assert len(TEXTS) <= DIRECT_TEXTS
    direct = embedder.encode(TEXTS)
    reference = embedder.model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    assert direct.dtype == np.float32 and direct.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(direct, reference, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(direct, axis=1), 1.0, atol=1e-5)
    for text, vector in zip(TEXTS, direct, strict=True):  # batching does not change a text's vector
        np.testing.assert_allclose(embedder.encode([text])[0], vector, atol=1e-5)


def test_many_texts_go_through_encode_and_agree(embedder):
    many = [f"Question number {n} about needling and back pain" for n in range(DIRECT_TEXTS + 4)]
    batched = embedder.encode(many)
    np.testing.assert_allclose(batched[:DIRECT_TEXTS], embedder.encode(many[:DIRECT_TEXTS]), atol=1e-5)


def test_kept_vectors_are_the_model_vectors_and_are_embedded_once(embedder, monkeypatch):
    kept = embedder.encode_kept(TEXTS[:3])
    np.testing.assert_allclose(np.stack([kept[t] for t in TEXTS[:3]]), embedder.encode(TEXTS[:3]), atol=1e-5)
    monkeypatch.setattr(embedder, "encode", lambda texts: (_ for _ in ()).throw(AssertionError(texts)))
    assert set(embedder.encode_kept(TEXTS[:3])) == set(TEXTS[:3])  # no new embedding


def same_model(embedder):
    """A new Embedder of the loaded model, with nothing kept: as a new process would start."""
    from assistant.embeddings import Embedder

    fresh = Embedder(embedder.model_id)
    fresh._model = embedder.model
    return fresh


def counting_encodes(monkeypatch, embedder) -> list[str]:
    encoded: list[str] = []
    real = embedder.encode
    monkeypatch.setattr(embedder, "encode", lambda texts, progress=False: encoded.extend(texts) or real(texts))
    return encoded


def test_saved_vectors_are_used_by_the_next_embedder_of_the_same_model(embedder, tmp_path, monkeypatch):
    path = tmp_path / "vectors.npz"
    embedder.encode_kept(TEXTS[:3])
    embedder.save_kept(path, TEXTS[:2])
    fresh = same_model(embedder)
    assert fresh.load_kept(path) == 2
    encoded = counting_encodes(monkeypatch, fresh)
    kept = fresh.encode_kept(TEXTS[:3])
    assert encoded == [TEXTS[2]]  # only the text that was not saved
    np.testing.assert_allclose(np.stack([kept[t] for t in TEXTS[:3]]), embedder.encode(TEXTS[:3]), atol=1e-5)


def test_saved_vectors_of_another_model_or_a_broken_file_are_passed_over(embedder, tmp_path):
    path = tmp_path / "vectors.npz"
    embedder.encode_kept(TEXTS[:2])
    embedder.save_kept(path, TEXTS[:2])
    with np.load(path) as saved:
        parts = dict(saved)
    for name, change in [
        ("another model", {"model": np.array("some/other-model")}),
        ("other weights", {"vectors": parts["vectors"][::-1].copy()}),  # each text gets the other's vector
    ]:
        np.savez(path.with_suffix(".x.npz"), **{**parts, **change})
        assert same_model(embedder).load_kept(path.with_suffix(".x.npz")) == 0, name
    path.write_bytes(b"not a numpy archive")
    assert same_model(embedder).load_kept(path) == 0
    assert same_model(embedder).load_kept(tmp_path / "missing.npz") == 0

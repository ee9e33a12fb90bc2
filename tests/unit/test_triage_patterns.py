"""Triage by pattern alone (the path a full queue takes), on the clinic's own rules file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from assistant.answering.triage import clauses_to_embed, embed_examples, load_rules, not_covered_topic, triage

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "corpus"


@pytest.fixture(scope="module")
def rules():
    return load_rules(CORPUS)


@pytest.mark.parametrize(
    ("message", "flag"),
    [
        ("my back is agony and I wet myself without noticing", "cauda-equina"),
        ("Since this morning I CAN'T FEEL MY LEGS", "cauda-equina"),
    ],
)
def test_a_red_flag_pattern_is_found_without_a_model(rules, message, flag):
    assert flag in [f.flag.id for f in triage(message, rules).findings]


@pytest.mark.parametrize(
    "message",
    [
        "nothing like numbness in my groin, just a sore back",  # a clause that opens with a negation is set aside
        "my back is sore but I have not wet myself",  # a negation before the symptom, within the clause
    ],
)
def test_a_negated_symptom_is_not_a_red_flag(rules, message):
    assert triage(message, rules).findings == ()


@pytest.mark.parametrize(
    ("message", "flag"),
    [
        ("there's no feeling in my private parts since this morning", "cauda-equina"),
        ("there's no reason to keep going", "self-harm"),
        ("never want to wake up again", "self-harm"),
        ("not worth living like this", "self-harm"),
        ("I just want to go to sleep for good and not deal with any of it", "self-harm"),
    ],
)
def test_a_negation_that_is_part_of_the_symptom_still_raises_it(rules, message, flag):
    assert flag in [f.flag.id for f in triage(message, rules).findings]


@pytest.mark.parametrize(
    "message",
    [
        "is there any point going on with dry needling?",
        "no point in going on with the needles if they don't work",
        "there's no point carrying on with physio",
        "no numbness anywhere, no weakness",
        "I want the pain to disappear for good",
    ],
)
def test_giving_up_on_a_treatment_is_not_a_crisis(rules, message):
    assert triage(message, rules).findings == ()


@pytest.mark.parametrize(
    "message",
    [
        "My back used to wake me up at night on our old mattress. The new one sorted it.",
        "Last time I had needling, two years ago, I felt a bit breathless afterwards.",
        "I used to self-harm as a teenager but that was years ago and I'm in a good place now.",
        "I had a car accident back in 2015, whiplash, all sorted with physio years ago.",
        "Slipped on ice back in January and bruised my back, totally fine since.",
        "Nearly went over on the ice this morning but caught myself. My back's just its usual stiff self.",
        "Sitting on my wallet gives me a tingle in my right buttock.",  # one side: sciatica, not the saddle
    ],
)
def test_a_symptom_long_past_raises_nothing(rules, message):
    assert triage(message, rules).findings == ()


@pytest.mark.parametrize(
    ("message", "flag"),
    [
        # A history of cancer never passes, even when the treatment did.
        ("I had breast cancer a few years ago, all clear now, but my back aches", "cancer-warning"),
        ("they treated my lymph nodes a few years ago, now I've got this new back pain", "cancer-warning"),
        # A crisis long past that is back, or with no word that the patient is well now.
        ("I used to self-harm as a teenager and lately I've started again", "self-harm"),
        ("I used to self-harm as a teenager, years ago", "self-harm"),
    ],
)
def test_what_never_passes_or_has_come_back_is_still_raised(rules, message, flag):
    assert flag in [f.flag.id for f in triage(message, rules).findings]


def test_an_injury_and_the_back_in_different_sentences_raise_trauma(rules):
    message = "Got shunted from behind on the motorway last night. My neck and upper back are really tight today."
    assert "trauma" in [f.flag.id for f in triage(message, rules).findings]


def test_a_means_and_a_decision_in_different_sentences_raise_a_crisis(rules):
    message = "The ranch is going under. The rifle's loaded and in the truck. I'll drive out at sunup."
    assert "self-harm" in [f.flag.id for f in triage(message, rules).findings]


@pytest.mark.parametrize(
    "message",
    [
        "The rifle's in the truck, my back hurts after the drive.",  # a means, no decision
        "I'll try the massage gun on my back tonight.",  # a decision, no means
        "Pain like a knife between my shoulder blades since tomorrow's session was booked, I'm going to rest.",
    ],
)
def test_a_means_or_a_decision_alone_is_not_a_crisis(rules, message):
    assert "self-harm" not in [f.flag.id for f in triage(message, rules).findings]


def test_everyday_back_pain_raises_nothing_by_pattern(rules):
    assert triage("my lower back hurts after gardening", rules).findings == ()


def test_a_red_flag_late_in_a_long_message_is_still_found(rules):
    story = "I sat at my desk all day and my back was stiff. " * 60 + "Now I wet myself and did not feel it."
    assert "cauda-equina" in [f.flag.id for f in triage(story, rules).findings]


def test_a_hundred_clause_message_embeds_a_bounded_number_of_clauses(rules):
    message = ", ".join(f"my back ached on day {n} of the week" for n in range(100))
    assert 0 < len(clauses_to_embed(message, rules)) <= 6


def test_triage_by_meaning_refuses_rules_whose_examples_were_never_embedded(rules):
    with pytest.raises(ValueError, match="embed_examples"):
        triage("I feel strange", rules, lambda clauses: np.zeros((len(clauses), 4), np.float32))


def test_embedded_examples_are_one_unit_row_per_example(rules):
    def fake_vectors(texts):  # deterministic stand-ins for embeddings
        return {t: np.eye(len(texts), dtype=np.float32)[i] for i, t in enumerate(texts)}

    embedded = embed_examples(rules, fake_vectors)
    examples = sum(len(f.examples) for f in rules.flags) + len(rules.everyday)
    assert embedded.example_vectors.shape == (examples, examples)
    assert rules.example_vectors is None, "the rules read from the file are left as they were"


@pytest.mark.parametrize(
    ("message", "topic"),
    [
        ("what dose of ibuprofen can I take?", "medication"),
        ("how much does dry needling cost?", "cost"),
        ("how dose dry needling work", None),  # "does", typed as "dose", is not a question about a dose
        ("dose it hurt?", None),
        # a story's background is not what it asks ...
        ("I've been on tramadol for a year. Is dry needling a drug-free option?", None),
        ("A clinic near work does it really cheap. Is it likely to make day-to-day life easier?", None),
        ("I'm on tramadol for my back. Can I take ibuprofen with it?", "medication"),
        ("My back is sore. How much is a session? Does it hurt?", "cost"),
        ("on tramadol, cheap clinic, does it work", "medication"),  # one sentence: all of it is asked
        # ... except for a topic that changes every answer
        ("I'm 20 weeks pregnant. Is dry needling safe?", "pregnancy"),
    ],
)
def test_known_not_covered_topics_are_found_by_pattern(rules, message, topic):
    found = not_covered_topic(message, rules)
    assert (found.id if found else None) == topic

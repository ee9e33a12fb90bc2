"""The ranking's pure parts, without a model: typed vectors stand in for embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.answering.ranking import (
    Candidate,
    Sentence,
    Speller,
    Thresholds,
    decide,
    focus,
    last_question,
    questions,
    quotable,
    score,
    sentences_of,
    with_antecedents,
    within,
)
from assistant.answering.retrieval import Hit

LIMITS = Thresholds(answer=0.6, suggest=0.45, margin=0.05, window=0.0, own_offset=0.1)


def hit(text: str, section: str = "Part", source: str = "a.md") -> Hit:
    return Hit("id-" + section, "Article", source, section, text, 0.5, 0)


def candidate(text: str, value: float, matched: str = "", phrasings: tuple[str, ...] = ()) -> Candidate:
    return Candidate(Sentence(text, hit(text), phrasings or ((matched,) if matched else ())), value, matched)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("is dry needling safe?", "is it safe?"),
        ("wat are the side efects of dry needlng", "wat are the side efects of it"),
        ("IS DRY NEEDLING SAFE", "IS it SAFE"),
        ("dry-needling and me", "it and me"),
        ("what is drynedling?", "what is it?"),
        ("is a needle safe", "is a needle safe"),
        ("dry needling?", "it?"),
    ],
)
def test_the_topic_is_said_as_it_even_misspelt(text, expected):
    assert focus(text, ["dry needling"]) == expected


def test_focus_leaves_text_alone_without_topics():
    assert focus("is dry needling safe?", []) == "is dry needling safe?"


@pytest.mark.parametrize(
    "word,target,ok",
    [
        ("needlng", "needling", True),
        ("neeedling", "needling", True),
        ("arm", "art", False),
        ("needless", "needling", False),
        ("safe", "safe", True),
    ],
)
def test_typos_within_a_few_edits_count_as_the_word(word, target, ok):
    assert within(word, target) is ok


def test_a_long_story_is_read_for_the_question_it_ends_on():
    story = "My back has hurt for years. My physio suggested needles. Is it safe? Thanks in advance."
    assert last_question(story) == "Is it safe?"
    assert last_question("is it safe") == "is it safe"


def test_a_question_is_read_without_the_words_that_introduce_it():
    assert last_question("I was wondering whether it helps with back pain?") == "it helps with back pain?"
    assert last_question("Could you tell me how long it lasts?") == "how long it lasts?"
    assert last_question("Hi, quick question: does it hurt?") == "does it hurt?"
    assert last_question("Before I take time off, what difference would it make?") == "what difference would it make?"
    assert last_question("If I have it today, will it hurt?") == "If I have it today, will it hurt?"  # the if counts
    story = "My physio wants to try it. What I really want to know is whether it helps. Nothing else has."
    assert last_question(story) == "it helps."  # no question mark: the sentence that asks
    assert last_question("I was wondering") == "I was wondering"  # nothing left to ask: as written


def test_a_story_asking_several_things_is_read_for_each():
    story = "I'm a nurse. What do the needles do to the muscle? Is it just placebo? A colleague mentioned blood flow."
    assert questions(story) == ["What do the needles do to the muscle?", "Is it just placebo?"]
    assert questions("One? Two? Three? Four?", most=3) == ["Two?", "Three?", "Four?"]  # the last few
    assert questions("My back hurts. I was wondering if it helps.") == ["it helps."]


def test_typos_are_mended_toward_known_words_only():
    speller = Speller(["what are the side effects", "is my practitioner qualified"])
    assert speller.mend("side efects of my practioner") == "side effects of my practitioner"
    assert speller.mend("zoloft and pain") == "zoloft and pain"  # unknown, and nothing near: unchanged


def test_real_words_are_never_mended_and_swapped_letters_are():
    speller = Speller(["is it safe", "what about causing an infection", "falling asleep"], words=["cousin", "feeling"])
    assert speller.mend("my cousin is feeling it") == "my cousin is feeling it"
    assert speller.mend("is it saef") == "is it safe"  # two letters swapped: one edit
    assert Speller(["combine"]).mend("codeine") == "codeine"  # two edits only in words of eight letters or more
    assert speller.mend("wat shud i do b4, in the U.S.?") == "what should i do before, in the U.S.?"  # text-speak


def test_the_likelier_slip_and_then_the_commoner_word_wins():
    speller = Speller(["what is it", "what does it do", "i want it", "there are risks", "then they go"])
    assert speller.mend("waht is it") == "what is it"  # two letters swapped, not one mistyped ("want")
    assert speller.mend("ther are risks") == "there are risks"  # a letter dropped, not mistyped ("then", "they")
    assert Speller(["whet is whet", "what"]).mend("whot") == "whet"  # equally likely slips: the commoner word


def test_articles_introducing_themselves_and_headings_are_not_quotable():
    assert not quotable("Learn about dry needling for back pain: benefits and risks.", "Intro")
    assert not quotable("This article provides a comprehensive overview of dry needling.", "Intro")
    assert not quotable("Pain Reduction", "Benefits > Pain Reduction")
    assert quotable("One of the primary benefits of dry needling is pain reduction.", "Pain Reduction")


def test_a_sentence_leaning_on_the_one_before_is_quoted_with_it_verbatim():
    passage = "Needling may cause soreness or bruising. These effects are mild.\n\nSomething else here."
    quotes = with_antecedents(passage)
    assert quotes[1] == ("Needling may cause soreness or bruising. These effects are mild.", "These effects are mild.")
    assert all(text in passage for text, _ in quotes)
    assert with_antecedents("- First tip here.\n- It is a list item.")[1] == (
        "It is a list item.",
        "It is a list item.",
    )


def test_phrasings_attach_to_the_sentence_holding_their_key():
    found = sentences_of(
        [hit("Soreness may happen after needling. Infection is a risk with needles.")],
        {"a.md": {"Infection is a risk": ["can it get infected?"]}},
    )
    assert [s.phrasings for s in found] == [(), ("can it get infected?",)]


def test_a_sentence_scores_by_its_best_phrasing_or_its_own_wording_lowered():
    found = [Sentence("one", hit("one"), ("q1", "q2")), Sentence("two", hit("two"))]
    query = np.array([1.0, 0.0])
    own = np.array([[0.0, 1.0], [1.0, 0.0]])  # sentence "two" is the question's own wording
    phrasings = [np.array([[0.6, 0.8], [0.95, 0.31]]), np.zeros((0, 2))]
    ranked = score(query, query[None, :], found, own, phrasings, own_offset=0.1)
    assert [(c.sentence.text, round(c.score, 2), c.matched) for c in ranked] == [("one", 0.95, "q2"), ("two", 0.9, "")]


def test_a_clear_best_sentence_is_answered_alone():
    ranking = decide([candidate("best", 0.8, "q"), candidate("next", 0.7, "r")], 0.3, LIMITS)
    assert [q.sentence.text for q in ranking.quotes] == ["best"] and ranking.suggestions == ()


def test_ties_within_the_window_are_quoted_too():
    limits = Thresholds(answer=0.6, suggest=0.45, margin=0.05, window=0.05, own_offset=0.1, max_quotes=2)
    ranking = decide([candidate("a", 0.8), candidate("b", 0.78), candidate("c", 0.77)], 0.3, limits)
    assert [q.sentence.text for q in ranking.quotes] == ["a", "b"]


def test_a_question_nearer_a_known_unanswered_one_is_refused():
    ranking = decide([candidate("best", 0.8, "q")], 0.78, LIMITS)
    assert ranking.quotes == () and "does not answer" in ranking.reason


def test_a_close_but_unclear_question_gets_suggestions_not_quotes():
    ranked = [
        candidate("a", 0.55, "is it safe?"),
        candidate("b", 0.5, "does it hurt after?"),
        candidate("c", 0.3, "far"),
    ]
    ranking = decide(ranked, 0.2, LIMITS)
    assert ranking.quotes == () and ranking.suggestions == ("is it safe?", "does it hurt after?")


def test_a_lower_best_answers_only_when_it_clearly_leads_every_known_unanswered_question():
    limits = Thresholds(answer=0.6, suggest=0.45, margin=0.05, window=0.0, own_offset=0.1, lead=0.55, lead_margin=0.15)
    assert [q.sentence.text for q in decide([candidate("best", 0.57, "q")], 0.40, limits).quotes] == ["best"]
    assert decide([candidate("best", 0.57, "q")], 0.45, limits).quotes == ()  # leads by too little
    assert decide([candidate("best", 0.53, "q")], 0.10, limits).quotes == ()  # too low, whatever the lead


def test_a_far_question_gets_neither():
    assert decide([candidate("a", 0.3, "q")], 0.2, LIMITS).suggestions == ()
    assert decide([], 0.2, LIMITS).quotes == ()


def test_an_article_without_phrasings_is_asked_by_its_question_headings():
    found = sentences_of(
        [hit("Kinesiology taping uses stretchy tape on sore muscles.", "What is kinesiology taping?", "t.md")], {}
    )
    assert found[0].phrasings == ("What is kinesiology taping?",) and not found[0].phrased


def test_a_sentence_of_an_article_without_phrasings_is_scored_on_its_own_wording():
    found = [Sentence("plain", hit("plain"), (), phrased=False)]
    own = np.array([[0.5, np.sqrt(0.75)]])
    ranked = score(
        np.array([1.0, 0.0]), np.array([[1.0, 0.0]]), found, own, [np.zeros((0, 2))], 0.1, unphrased_offset=-0.1
    )
    assert round(ranked[0].score, 2) == 0.6


def test_a_phrasing_key_that_no_longer_matches_a_sentence_is_named(tmp_path):
    from assistant.articles.corpus import check_phrasings, parse_article

    (tmp_path / "phrasings").mkdir()
    (tmp_path / "a.md").write_text("# A\n\n## Part\n\nNeedling can leave a bruise. It fades.\n", encoding="utf-8")
    (tmp_path / "phrasings" / "a.yaml").write_text(
        'sentences:\n  - key: "leave a bruise"\n    questions: ["bruises?"]\n  - key: "was edited away"\n    questions: ["gone?"]\n',
        encoding="utf-8",
    )
    article = parse_article(tmp_path / "a.md", tmp_path)
    assert article.phrasings == (("leave a bruise", ("bruises?",)), ("was edited away", ("gone?",)))
    problems = check_phrasings(article, tmp_path / "a.md")
    assert len(problems) == 1 and "'was edited away' matches no sentence" in problems[0]

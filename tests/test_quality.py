"""What patients get, judged sentence by sentence on the patient sets (tests/data/README.md).

The dev splits are tuned on; the test split was written before tuning and never tuned on. Each
floor below is what the current ranking reaches, so a change that makes answers worse goes red;
where a floor is below the issue's target, docs/quality.md says so.
"""

from __future__ import annotations

import pytest
from conftest import CORPUS, ROOT, SHARED

from assistant.articles.corpus import article_sentences, load_corpus
from assistant.evaluation.patientset import load_patient_set, score_set
from assistant.evaluation.quality import abstention, ends_with_safety, read_questions

DATA = ROOT / "tests" / "data"
HELD_OUT = "patient-test"
NAMES = (
    "patient-dev",
    "patient-dev-b",
    "patient-dev-d",
    "patient-dev-e",
    "patient-dev-f",
    "patient-dev-g",
    "red-flags-dev-c",
    "red-flags-dev-d",
    "red-flags-dev-e",
    "red-flags-dev-f",
    "red-flags-dev-g",
    "red-flags-dev-h",
    "red-flags-dev-i",
    "red-flags-dev-j",
    "red-flags-dev-k",
    "red-flags-dev-l",
    "red-flags-calibration",
)
SETS = {name: load_patient_set(DATA / f"{name}.yaml") for name in (*NAMES, HELD_OUT)}
# measure: floor on each set, in the order of SETS (a set without such cases scores 1.0)
FLOORS = {
    "first_quote": (0.97, 0.95, 0.95, 0.91, 0.87, 0.88, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.88),
    "precision": (0.98, 0.95, 0.97, 0.91, 0.89, 0.89, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.90),
    "refused": (0.97, 0.92, 0.97, 1.0, 1.0, 0.95, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.90),
    "follow_ups": (0.92, 0.90, 0.95, 0.76, 0.80, 0.82, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.80),
    "red_flags": (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.98, 1.0, 1.0, 1.0, 1.0, 1.0, 0.98, 0.78),
    "safety": (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0),
}
KQA = SHARED / "eval" / "kqa-patient-questions.jsonl"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scores(assistant):
    return {name: score_set(patient_set, assistant.ask, ends_with_safety) for name, patient_set in SETS.items()}


@pytest.mark.parametrize("name", SETS)
def test_every_key_phrase_picks_out_one_sentence_of_the_article(name):
    from assistant.evaluation.patientset import check_key_phrases

    article = load_corpus(CORPUS)[0]
    problems = check_key_phrases(SETS[name], article_sentences(article))
    none = not problems  # a bare flag: pytest would otherwise print the held-out set's messages
    assert none, shown(name, problems)


def test_the_sets_are_as_large_and_varied_as_promised():
    answerable = sum(len(s.answerable) for s in SETS.values())
    assert answerable >= 200
    assert sum(len(s.not_covered) for s in SETS.values()) >= 60
    assert sum(len(s.everyday) for s in SETS.values()) >= 60
    voices = {case.voice for s in SETS.values() for case in s.answerable}
    assert {"no-subject", "pronoun", "typo", "fragment", "caps", "story", "non-native", "follow-up"} <= voices


@pytest.mark.parametrize("measure", FLOORS)
@pytest.mark.parametrize("split", range(len(SETS)), ids=list(SETS))
def test_answers_do_not_fall_below_their_floor(scores, measure, split):
    name = list(SETS)[split]
    rate = scores[name].rate(measure)
    assert rate >= FLOORS[measure][split], (name, measure, rate, shown(name, scores[name].misses[:15]))


@pytest.mark.parametrize("name", SETS)
def test_no_everyday_back_pain_is_escalated(scores, name):
    false_alarms = scores[name].false_alarms
    none = false_alarms == 0
    assert none, (false_alarms, shown(name, [m for m in scores[name].misses if m.startswith("everyday")]))


def shown(name: str, messages: list[str]) -> list[str] | str:
    """What a failure may print: never the held-out split's messages, which nobody may read or tune on."""
    return f"{len(messages)} hidden (held-out split)" if name == HELD_OUT else messages


def test_real_patient_questions_about_other_things_are_rarely_answered(assistant):
    if not KQA.is_file():
        pytest.skip(f"K-QA questions not found at {KQA} (they live in ../shared/eval)")
    result = abstention(assistant, read_questions(KQA))
    assert result.share_answered <= 0.03, result.answered[:20]

"""Loops in generated text: the eval's definition, and the stream guard that cuts them."""

from __future__ import annotations

import pytest

from api.chat.repetition import RepetitionGuard, find_loop

# An answer SmolLM2-135M gave in the style the issue describes (the same words 3+ times).
LOOPING = (
    "The standard laptop has 36 GB of RAM. You can ask the IT service desk for help with "
    "the setup. You can ask the IT service desk for more help with the setup and you can "
    "ask the IT service desk for help with"
)


def test_six_words_three_times_is_a_loop() -> None:
    loop = find_loop(LOOPING)
    assert loop is not None
    assert loop.words == ("you", "can", "ask", "the", "it", "service")
    assert loop.times == 3
    # The repeating starts at the second occurrence: the first one is the answer's own.
    assert LOOPING[loop.repeat_start :].startswith("You can ask the IT service desk for more")


@pytest.mark.parametrize(
    "text",
    [
        "Laptops are replaced every 4 years. Desktops are replaced every 5 years.",
        # Twice is not yet a loop (a summary may restate a sentence once).
        "Contact the IT service desk today. Or contact the IT service desk tomorrow.",
        "",
    ],
)
def test_ordinary_answers_are_not_loops(text: str) -> None:
    assert find_loop(text) is None


def test_case_and_punctuation_do_not_hide_a_loop() -> None:
    assert find_loop("No, no, NO! no no no no; no no no no no no") is not None


def feed_words(guard: RepetitionGuard, text: str, step: int = 3) -> int | None:
    for end in range(step, len(text) + step, step):
        cut = guard.update(text[: min(end, len(text))])
        if cut is not None:
            return cut
    return guard.update(text, final=True)


def test_guard_ends_the_answer_at_the_last_sentence_before_the_repeating() -> None:
    cut = feed_words(RepetitionGuard(), LOOPING)
    assert cut is not None
    assert LOOPING[:cut].rstrip() == (
        "The standard laptop has 36 GB of RAM. You can ask the IT service desk for help "
        "with the setup."
    )


def test_guard_cuts_a_sentence_said_again_word_for_word() -> None:
    text = "Stop and contact IT. Do not continue the setup. Stop and contact IT. Stop"
    cut = feed_words(RepetitionGuard(), text)
    assert cut is not None
    assert text[:cut].rstrip() == "Stop and contact IT. Do not continue the setup."


def test_guard_cuts_a_run_of_one_word_with_no_sentence_end() -> None:
    text = "Badges are at the desk. The the the the the the the the the the the"
    cut = feed_words(RepetitionGuard(), text, step=1)
    assert cut is not None
    assert text[:cut].rstrip() == "Badges are at the desk."


def test_guard_holds_a_sentence_that_repeats_earlier_words_until_it_ends() -> None:
    guard = RepetitionGuard()
    text = "Stop and contact IT now. Stop and contact"
    assert guard.update(text) is None
    # The second sentence starts like the first: it is held, so a repeat is never shown.
    assert guard.hold_from(text) == len("Stop and contact IT now. ")
    text += " the desk instead. Fine"
    assert guard.update(text) is None
    assert guard.hold_from(text) == len(text)  # it ended differently: shown


def test_guard_lets_an_ordinary_answer_through() -> None:
    text = (
        "Laptops are replaced every 4 years. Ask IT for an earlier replacement if yours "
        "breaks.\n- Data scientists get 36 GB of RAM.\n- Everyone else gets 16 GB of RAM."
    )
    guard = RepetitionGuard()
    assert feed_words(guard, text, step=1) is None
    assert guard.hold_from(text) == len(text)

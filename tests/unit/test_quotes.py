"""The best passage's sentence(s) that answer the question: split, embedded, chosen."""

from __future__ import annotations

from index.quotes import QuoteFinder, best_quote, sentences
from tests.unit.test_index_versions import HashingEncoder

PASSAGE = (
    "## Laptops\n\n"
    "Every employee gets a managed laptop on their first day. "
    "Data scientists get the standard laptop with 36 GB of RAM and a 1 TB disk. "
    "Laptops are replaced every 4 years.\n"
    "- Ask IT through Helm for a replacement."
)


def test_a_passage_splits_into_sentences_and_list_items_without_headings() -> None:
    assert sentences(PASSAGE) == [
        "Every employee gets a managed laptop on their first day.",
        "Data scientists get the standard laptop with 36 GB of RAM and a 1 TB disk.",
        "Laptops are replaced every 4 years.",
        "Ask IT through Helm for a replacement.",
    ]


def test_the_sentence_closest_to_the_question_is_quoted() -> None:
    encoder = HashingEncoder()
    quote = best_quote(encoder, "How much RAM do data scientists get?", PASSAGE)
    # The two closest sentences, in the passage's order (a bag-of-words encoder here).
    assert quote == (
        "Data scientists get the standard laptop with 36 GB of RAM and a 1 TB disk. "
        "Ask IT through Helm for a replacement."
    )
    # One encoder call: the question and the sentences together.
    assert len(encoder.texts) == 1 + 4


def test_a_passage_without_a_sentence_has_no_quote() -> None:
    assert best_quote(HashingEncoder(), "RAM?", "## Laptops\n\nRAM") == ""


def test_the_finder_quotes_as_best_quote_and_encodes_each_passage_once() -> None:
    question = "How much RAM do data scientists get?"
    expected = best_quote(HashingEncoder(), question, PASSAGE)
    encoder = HashingEncoder()
    finder = QuoteFinder(encoder)
    assert finder.best(question, PASSAGE) == expected
    assert len(encoder.texts) == 4 + 1  # the sentences, then the question
    # The same passage again, with the question's embedding given (the guard's): no pass.
    vector = HashingEncoder().encode([question])[0]
    assert finder.best(question, PASSAGE, question_vector=vector) == expected
    assert len(encoder.texts) == 5

"""The best passage's sentence(s) that answer the question: split, embedded, chosen."""

from __future__ import annotations

from index.quotes import QUOTE_GAP, Quote, QuoteFinder, sentences
from tests.unit.test_index_versions import HashingEncoder


def quote_of(encoder: HashingEncoder, question: str, passage: str) -> str:
    """The quote of one retrieved passage, as the retriever makes it."""
    return QuoteFinder(encoder).best_source(question, [(passage, 0.5)])[1].text


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


def test_the_closest_sentences_are_quoted_in_passage_order_as_written() -> None:
    encoder = HashingEncoder()
    quote = quote_of(encoder, "How much RAM do data scientists get?", PASSAGE)
    # The three closest sentences (a bag-of-words encoder here), in the passage's order,
    # copied as the passage has them: neighbours stay one run, list marker included.
    assert quote == (
        "Data scientists get the standard laptop with 36 GB of RAM and a 1 TB disk. "
        "Laptops are replaced every 4 years.\n- Ask IT through Helm for a replacement."
    )
    # The question once, the passage's four sentences once.
    assert len(encoder.texts) == 1 + 4


def test_sentences_that_are_not_neighbours_are_quoted_apart_each_as_written() -> None:
    passage = (
        "Data scientists get 36 GB of RAM. Zebras graze quietly at dawn. "
        "Bananas ripen yellow in summer. Data scientists ask IT for more RAM. "
        "Data scientists' RAM is checked every year."
    )
    quote = quote_of(HashingEncoder(), "How much RAM do data scientists get?", passage)
    assert quote == (
        f"Data scientists get 36 GB of RAM.{QUOTE_GAP}Data scientists ask IT for more RAM. "
        "Data scientists' RAM is checked every year."
    )
    # Every part of the quote is the passage's own text (the portal highlights each).
    assert all(part in passage for part in quote.split(QUOTE_GAP))


TABLE = (
    "Probation lasts a while, by country of the contract.\n\n"
    "Country | Probation period\n"
    "Portugal | 90 days\n"
    "Canada | 3 months\n"
    "Kenya | 6 months\n\n"
    "A probation review is held two weeks before the end."
)


def test_table_rows_are_sentences_read_under_their_header_which_is_never_quoted() -> None:
    assert sentences(TABLE) == [
        "Probation lasts a while, by country of the contract.",
        "Portugal | 90 days",
        "Canada | 3 months",
        "Kenya | 6 months",
        "A probation review is held two weeks before the end.",
    ]
    encoder = HashingEncoder()
    quote_of(encoder, "probation in Kenya?", TABLE)
    # Each row reaches the encoder with its table's header, which gives it its meaning.
    assert "Country | Probation period\nKenya | 6 months" in encoder.texts
    assert "Country | Probation period" not in encoder.texts


def test_the_best_source_is_the_passage_whose_sentence_answers_not_only_the_first() -> None:
    finder = QuoteFinder(HashingEncoder())
    question = "How many months is probation in Kenya?"
    about_laptops = "Laptops are replaced every 4 years. Ask IT through Helm for one."
    # The retriever ranked the laptop passage a little higher; the table's row answers.
    best, quote = finder.best_source(question, [(about_laptops, 0.52), (TABLE, 0.50)])
    assert best == 1
    assert "Kenya | 6 months" in quote.text
    # A passage far ahead on its retrieval score stays first.
    best, _ = finder.best_source(question, [(about_laptops, 0.95), (TABLE, 0.30)])
    assert best == 0
    assert finder.best_source(question, []) == (0, Quote(""))


def test_a_passage_without_a_sentence_has_no_quote() -> None:
    assert quote_of(HashingEncoder(), "RAM?", "## Laptops\n\nRAM") == ""


def test_a_passage_is_encoded_once_and_the_guards_question_vector_is_reused() -> None:
    question = "How much RAM do data scientists get?"
    expected = quote_of(HashingEncoder(), question, PASSAGE)
    encoder = HashingEncoder()
    finder = QuoteFinder(encoder)
    assert finder.best_source(question, [(PASSAGE, 0.5)])[1].text == expected
    assert len(encoder.texts) == 1 + 4  # the question, then the sentences
    # The same passage again, with the question's embedding given (the guard's): no pass.
    vector = HashingEncoder().encode([question])[0]
    again = finder.best_source(question, [(PASSAGE, 0.5)], question_vector=vector)
    assert again[1].text == expected
    assert len(encoder.texts) == 5


def test_the_best_source_embeds_every_new_passage_in_one_encoder_call() -> None:
    encoder = HashingEncoder()
    finder = QuoteFinder(encoder)
    calls = []
    real = encoder.encode
    encoder.encode = lambda texts: calls.append(len(texts)) or real(texts)  # type: ignore[method-assign]
    passages = [(PASSAGE, 0.6), (TABLE, 0.5)]
    finder.best_source("How much RAM?", passages)
    assert calls == [1, 4 + 5]  # the question, then both passages' sentences together
    finder.best_source("How much RAM?", passages)
    assert calls == [1, 9, 1]  # the passages are cached: only the question again

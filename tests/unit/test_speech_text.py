"""Pure text logic of the speech assistant: word overlap, sentence splitting, and the
espeak -> Kokoro phoneme mapping (no model, no espeak needed)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from modelctl.runtime.kokoro import espeak_to_kokoro, split_sentences
from scripts.demo import contains_words, word_overlap, words

WORD = st.text(alphabet="abcdefghij", min_size=1, max_size=6)
SENTENCE = st.lists(WORD, min_size=1, max_size=8).map(" ".join)


@given(SENTENCE)
def test_a_sentence_overlaps_itself_whatever_the_case_and_punctuation(text: str) -> None:
    assert word_overlap(text, text.upper() + "!") == 1.0
    assert contains_words(f"Well, {text}.", text)


@given(SENTENCE, SENTENCE)
def test_overlap_is_a_share_of_the_words_said(said: str, heard: str) -> None:
    overlap = word_overlap(said, heard)
    assert 0.0 <= overlap <= 1.0
    assert word_overlap(said, f"{heard} {said}") == 1.0


def test_overlap_counts_repeated_words_once_each() -> None:
    assert word_overlap("the sky is blue", "the sky was blue") == 0.75
    assert word_overlap("no no no", "no") == 1 / 3
    assert word_overlap("", "anything") == 1.0
    assert words("Mount Everest's 8,848 m!") == ["mount", "everest's", "8", "848", "m"]


@given(st.lists(SENTENCE, min_size=1, max_size=5), st.sampled_from([".", "!", "?"]))
def test_sentences_split_at_their_ends_and_keep_every_word(parts: list[str], end: str) -> None:
    text = " ".join(p + end for p in parts)
    pieces = split_sentences(text)
    assert pieces == [p + end for p in parts]
    assert words(" ".join(pieces)) == words(text)


def test_no_sentence_is_made_of_blanks() -> None:
    assert split_sentences("  ") == []
    assert split_sentences("Hi.   There") == ["Hi.", "There"]
    assert split_sentences("3.14 is pi.") == ["3.14 is pi."]


def test_espeak_ipa_maps_to_kokoro_symbols() -> None:
    # espeak-ng 1.52, en-us, tie "^": "Hello, how are you?" and "Bees make honey."
    assert espeak_to_kokoro("həlˈo^ʊ, hˈa^ʊ ɑːɹ juː?") == "həlˈO, hˈW ɑɹ ju?"
    assert espeak_to_kokoro("bˈiːz mˌe^ɪk hˈʌni.") == "bˈiz mˌAk hˈʌni."
    assert espeak_to_kokoro("d^ʒˈuːpɪɾɚ") == "ʤˈupɪTəɹ"
    assert espeak_to_kokoro("t^ʃˈɜːt^ʃ") == "ʧˈɜɹʧ"


@given(st.text(alphabet="abdehiklmnoprstuzæðŋɑɔəɚɛɜɪʃʊʌʒθˈˌː^ ,.?", max_size=40))
def test_the_mapping_leaves_no_tie_or_length_mark(ipa: str) -> None:
    mapped = espeak_to_kokoro(ipa)
    assert "^" not in mapped and "ː" not in mapped and "r" not in mapped

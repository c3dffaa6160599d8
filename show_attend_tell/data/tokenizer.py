"""Caption tokenisation of the COCO caption protocol, in Python.

The COCO evaluation tokenises every caption with Stanford's PTBTokenizer 3.4.1 (run by
pycocoevalcap with ``-preserveLines -lowerCase``) and then drops the tokens in
``PUNCTUATIONS``. :func:`tokenize` reproduces that pipeline without Java, so vocabulary,
training targets, decoded captions and metric references all share one tokenisation:

  * lower-cased; ``"man's"`` -> ``man 's``, ``"don't"`` -> ``do n't``, ``"boys'"`` -> ``boys``;
  * hyphenated words, numbers (``1,000.50``, ``10:30``), slashes (``and/or``) kept whole;
  * abbreviations and acronyms keep their period (``u.s.``, ``mr.``, ``etc.``);
  * quotes, ``. , ; : ! ? - -- ...`` dropped; brackets become ``-lrb-`` etc. (lower-cased,
    so the protocol's case-sensitive ``-LRB-`` filter keeps them); emoji vanish.

tests/test_tokenizer.py checks it equals the Java tokenizer on 2500 messy captions. The rules
below are that jar's as observed (abbreviation lists probed word by word), quirks included.
Known differences, none of them caption text: URLs, e-mail addresses, @names and #tags (the
lexer keeps them whole), ``<``/``>`` glued to words, ``!``/``?`` between letters with no
space ("cat!dog"), and a single letter's period at the very end of a line (the lexer's
choice there depends on its read buffer, not on the text).
"""

import functools
import re
import unicodedata


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# pycocoevalcap's PUNCTUATIONS, compared after lower-casing exactly as it does.
PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                          ".", "?", "!", ",", ":", "-", "--", "...", ";"])

# Abbreviations that keep their period whatever follows (the lexer is caseless for these).
_ABBREVIATIONS = _words("""
adj adm adv al ala apr ariz assn assoc asst atty aug ave bancorp bhd bldg blvd brig bros calif
capt cf cie cmdr co col colo comdr conn corp cos cpl ct dak dec dept det dr drs elec ens esq est
etc ext feb fla fri ft ga gen gov govs hon inc ind insp intl invt jan jos jr jul jun kan kans ky
lieut lt ltd maj mar md messrs mich minn mlle mme mo mon mont mr mrs ms msgr mt natl neb nev nov
oct okla penn pfc ph plc pres prof profs pvt rd rep reps rev rt sen sens sep sept seq sfc sgt
spc sq sr st ste supt sys tel tenn thu thurs tue tues univ va vs vt wed wis wisc wm wyo
""")
# ... only when capitalised or before , ; : (lower-case they are words: "mass.", "ill.").
_CAPITALISED_ABBREVIATIONS = _words("az ark del ill la mass miss ore pa tex wash")
# ... only when not all capitals.
_MIXED_CASE_ABBREVIATIONS = _words("pty mfg mtg")
# ... only before a number ("no. 5", "fig. 3").
_NUMBER_ABBREVIATIONS = _words("art ca fig figs no nos op pp prop")
# Capitalised words before which a single letter's period ends a sentence ("plan B. The").
_SENTENCE_STARTS = _words("""
A About After An As At But He Her Here However If In It Last Many More Now Once One Other Our
She Since So Some Such That The Then There These They This We What When While Yet You
""")
# Words the lexer splits in two ("can not", "gon na"), at 3 characters.
_SPLIT_WORDS = _words("cannot gonna gotta wanna gimme lemme")
_APOSTROPHES = "'’"
_SYMBOLS = {"€": "$", "£": "#", "½": "1/2", "¼": "1/4", "¾": "3/4", "…": "...",
            "(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-",
            '"': "''", "“": "``", "”": "''", "«": "``", "»": "''", "‘": "`", "`": "`",
            "—": "--", "–": "--", "‹": "`", "›": "'"}
# Patterns whose match is the token itself, tried in this order before anything else.
_VERBATIM = ("bracket_name", "caps_ampersand", "apostrophe_word", "apostrophe_t", "marks")


@functools.cache
def _word_chars() -> str:
    """A regex character class of every letter, mark and decimal digit code point (the
    lexer's alphanumerics; marks keep scripts such as Devanagari in one word)."""
    ranges, start = [], None
    # Up to the BMP's end, + 1 to close the last range: beyond it everything is dropped.
    for code in range(0x10000 + 1):
        category = unicodedata.category(chr(code)) if code < 0x10000 else "Cn"
        inside = category[0] in "LM" or category == "Nd"
        if inside and start is None:
            start = code
        elif not inside and start is not None:
            ranges.append((start, code - 1))
            start = None
    return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}"
                   for a, b in ranges)


@functools.cache
def _patterns() -> dict[str, re.Pattern]:
    a = f"[{_word_chars()}]"
    return {
        # Alphanumeric runs joined by hyphens, slashes, periods, or commas/colons between digits.
        "word": re.compile(rf"{a}+(?:(?:[-\u2011/.]|(?<=\d)[,:](?=\d)){a}+)*"),
        "acronym": re.compile(r"[A-Za-z](?:\.[A-Za-z])+"),
        # Brackets already spelt the PTB way ("-LRB-", any case) stay one token.
        "bracket_name": re.compile(r"-(?:LRB|RRB|LSB|RSB|LCB|RCB)-", re.IGNORECASE),
        "caps_ampersand": re.compile(r"[A-Z]+(?:&[A-Z]+)+(?![a-z])"),
        "signed_number": re.compile(rf"(?:[-+]\.?|\.)\d+(?:(?:[.]|(?<=\d)[,:](?=\d)){a}+)*"),
        # 'n' rock'n'roll, '90s, 'em, '12 (a year): one token each.
        "apostrophe_word": re.compile(r"['’]n['’]|['’](?:[1-9]0s|em|n)(?!\w)|['’]\d\d(?=\s|$)",
                                      re.IGNORECASE),
        "apostrophe_t": re.compile(r"['’]t(?=(?:is|was)\b)", re.IGNORECASE),
        "letter": re.compile(a),
        "clitic": re.compile(r"['’](?:ll|re|ve|s|m|d)(?![^\W_])", re.IGNORECASE),
        # Emoticons are one token, their brackets spelt as the lexer spells brackets.
        "smiley": re.compile(r"[:;=]-?[()DPdp\]](?!\w)"),
        # Double quotes spelt with two single ones, and a curly apostrophe glued to a
        # closing double quote, which the lexer reads as one token of three apostrophes.
        "double_quote": re.compile(r"''|``|’[”»]"),
        "ellipsis": re.compile(r"\.\.\.+"),
        "dashes": re.compile(r"--+"),
        "marks": re.compile(r"[?!]+"),
    }


def _drop(char: str) -> bool:
    """Characters the lexer deletes as untokenisable: emoji and everything else outside the
    BMP, variation selectors, the zero-width joiner, U+2010 HYPHEN. They still separate
    words ("and🎉cat" -> and cat)."""
    return ord(char) > 0xFFFF or char in "\ufe0e\ufe0f\u200d\u2010"


_NEXT_CHAR = re.compile(r"\s*(\S?)")
_NEXT_WORD = re.compile(r"\s*([A-Za-z]+)(?=\s|$)")


def _keeps_period(word: str, text: str, pos: int) -> bool:
    """Whether ``word`` followed by "." is one token (an abbreviation); ``text[pos:]`` is
    what follows the period."""
    lower = word.lower()
    if _patterns()["acronym"].fullmatch(word):
        return True
    if len(word) == 1 and word.isascii() and word.isalpha():
        following = _NEXT_WORD.match(text, pos)
        return not (following and following.group(1) in _SENTENCE_STARTS)
    if lower in _ABBREVIATIONS:
        return True
    if lower in _CAPITALISED_ABBREVIATIONS:
        return word[0].isupper() or text[pos:pos + 1] in (",", ";", ":")
    if lower in _MIXED_CASE_ABBREVIATIONS:
        return not word.isupper()
    return lower in _NUMBER_ABBREVIATIONS and _NEXT_CHAR.match(text, pos).group(1).isdigit()


def _word_tokens(word: str, text: str, end: int) -> tuple[list[str], int]:
    """Tokens of the alphanumeric run ``word`` ending at ``end`` in ``text``, with what follows
    it when that belongs to it (clitics, internal apostrophes, an abbreviation's period)."""
    patterns = _patterns()
    tokens = []
    while True:
        nxt = text[end:end + 1]
        if nxt and nxt in _APOSTROPHES:
            after = text[end + 1:end + 3]  # a window: slicing the rest is quadratic
            # "don't" -> do n't
            if word[-1:] in "nN" and after[:1] in ("t", "T") and \
                    not patterns["letter"].match(after[1:2] or " "):
                tokens += [word[:-1]] if len(word) > 1 else []
                word, end = word[-1] + "'" + after[0], end + 2
                continue
            if clitic := patterns["clitic"].match(text, end):
                tokens.append(word)
                word, end = "'" + clitic.group()[1:], clitic.end()
                continue
            following = patterns["word"].match(text, end + 1)
            if following and re.match(r"[A-HJ-XZa-hj-xzn]$", word) and \
                    re.match(r"[^\W\d_]{2}", after):
                word, end = word + nxt + following.group(), following.end()
                continue
            if word in ("y", "Y") and nxt == "'":
                tokens.append(word + nxt)
                return tokens, end + 1
            if following and re.search(r"[aeiouyAEIOUY]$", word) and word.isalpha() and \
                    len(word) > 1 and \
                    re.match(r"[aeiouA-Z]", after):
                word, end = word + nxt + following.group(), following.end()
                continue
        break
    if word.lower() in _SPLIT_WORDS:
        tokens += [word[:3], word[3:]]
    elif text[end:end + 1] == "." and _keeps_period(word, text, end + 1):
        tokens.append(word + ".")
        end += 1
    else:
        tokens.append(word)
    return tokens, end


def ptb_tokens(text: str) -> list[str]:
    """PTBTokenizer's tokens of one caption, before lower-casing and punctuation removal."""
    text = "".join(" " if _drop(char) else char for char in text.replace("\n", " "))
    patterns = _patterns()
    tokens, i = [], 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
            continue
        verbatim = next((m for name in _VERBATIM if (m := patterns[name].match(text, i))), None)
        signed = patterns["signed_number"].match(text, i)
        if verbatim or signed and (i == 0 or not text[i - 1].isalnum()):
            match = verbatim or signed
            tokens.append(match.group())
        elif match := patterns["word"].match(text, i):
            words, end = _word_tokens(match.group(), text, match.end())
            tokens += words
            i = end
            continue
        elif match := patterns["double_quote"].match(text, i):
            tokens.append("'" * 3 if char == "’" else match.group())
        elif match := patterns["clitic"].match(text, i):
            tokens.append("'" + match.group()[1:])
        elif match := patterns["smiley"].match(text, i):
            tokens.append(match.group().replace("(", "-LRB-").replace(")", "-RRB-"))
        elif match := patterns["ellipsis"].match(text, i) or patterns["dashes"].match(text, i):
            tokens.append("..." if char == "." else "--")
        else:
            tokens.append(_SYMBOLS.get(char, "'" if char in _APOSTROPHES else char))
            i += 1
            continue
        i = match.end()
    return tokens


# Most captions: ASCII words separated by spaces and commas, perhaps a final period.
_PLAIN = re.compile(r"\s*(?:[A-Za-z]+[ ,]+)*([A-Za-z]+)(\.?)\s*")


def tokenize(text: str) -> list[str]:
    """Words of ``text`` as the COCO caption evaluation sees them: PTB tokens, lower-cased,
    pycocoevalcap's ``PUNCTUATIONS`` removed.

    ``"A man's red T-shirt, drying on a line."`` -> ``["a", "man", "'s", "red", "t-shirt",
    "drying", "on", "a", "line"]``.
    """
    plain = _PLAIN.fullmatch(text)
    if plain:  # 10x faster, same words (tests/test_tokenizer.py)
        words = re.findall(r"[A-Za-z]+", text)
        if not _SPLIT_WORDS.intersection(word.lower() for word in words):
            last, period = plain.groups()
            if period and _keeps_period(last, "", 0):
                words[-1] += "."
            return [word.lower() for word in words]
    lowered = (token.lower() for token in ptb_tokens(text))
    return [token for token in lowered if token not in PUNCTUATIONS]


def detokenize(words: list[str]) -> str:
    """Text whose :func:`tokenize` (and the Java tokenizer's) words are ``words``, for words
    that :func:`tokenize` produced: a decoded caption joined this way scores against its
    references exactly as the same words would inside a reference.

    Joining with spaces is not enough: the PTB lexer reads its own output differently in a
    few places ("'t is" -> t is, "y' all" -> y all, "at&t" -> at & t, "mass." -> mass,
    ";-rrb-" -> -rrb-).
    """
    text = []
    for word in words:
        if text and (text[-1] == "'t" and word in ("is", "was") or text[-1] == "y'"):
            text[-1] += word
            continue
        if re.fullmatch(r"[a-z]+(?:&[a-z]+)+", word):
            word = word.upper()
        elif re.fullmatch(r"[:;=]-?-[lr]rb-", word):  # emoticons: ";-rrb-" -> ;)
            word = word.replace("-lrb-", "(").replace("-rrb-", ")")
        elif word == "'" * 3:
            word = "’”"
        elif word.endswith(".") and word[:-1] in _CAPITALISED_ABBREVIATIONS:
            word = word.capitalize()
        text.append(word)
    # A single letter's period at the very end of a line is kept or split depending on
    # the lexer's read buffer; a trailing space makes it kept, as inside a line.
    trailing = " " if text and re.fullmatch(r"[a-z]\.", text[-1]) else ""
    return " ".join(text) + trailing

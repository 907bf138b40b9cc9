"""English noun singularization as CHAIR's reference implementation does it.

The CHAIR reference (LisaAnne/Hallucination ``utils/chair.py``, EMNLP 2018) singularizes every caption word
with ``pattern.en.singularize`` from Pattern 2.6 (Python 2), a library that also needs a MySQL client. This
module reproduces that function's behaviour without it, quirks included, so that CHAIR numbers compare with
published ones. The behaviour was learned by reading Pattern 2.6's rules (clips/pattern, tag ``2.6``); the
tables below restate those facts. Quirks that matter for COCO objects:

- ``bus`` → ``bu`` and ``glass`` → ``glas`` (a final ``s`` is always dropped);
- ``ties`` → ``ty`` (the ``^tie`` exception is written as a regex but matched as a literal suffix);
- a word that is the end of an "uninflected" or "uncountable" entry is returned unchanged, so ``ice``
  (end of ``advice``) or ``ears`` (end of ``shears``) stay as they are;
- three entries lost a comma in Pattern 2.6 and were glued to their neighbour (``wildebeestcarp``,
  ``watercheese``, ``zombiebogie``).
"""

from __future__ import annotations

import re
from functools import lru_cache

# Entries whose suffixes are returned unchanged (note the glued pairs, as in Pattern 2.6).
_UNINFLECTED = (
    "bison debris headquarters pincers trout bream diabetes herpes pliers tuna breeches djinn high-jinks "
    "proceedings whiting britches eland homework rabies wildebeestcarp elk innings salmon chassis flounder "
    "jackanapes scissors christmas gallows mackerel series clippers georgia measles shears cod graffiti mews "
    "species contretemps mumps swine corps news swiss"
).split()
_UNCOUNTABLE = (
    "advice equipment happiness luggage news software bread fruit information mathematics progress "
    "understanding butter furniture ketchup mayonnaise research watercheese garbage knowledge meat rice "
    "electricity gravel love mustard sand"
).split()
# "-ie" nouns: a word ending in one of these + "s" loses only the "s" ("^pie", "^tie" never match).
_IE = (
    "alergie cutie hoagie newbie softie veggie auntie doggie hottie nightie sortie weenie beanie eyrie indie "
    "oldie stoolie yuppie birdie freebie junkie ^pie sweetie zombiebogie goonie laddie pixie techie bombie "
    "groupie laramie quickie ^tie collie hankie lingerie reverie toughie cookie hippie meanie rookie valkyrie"
).split()
_IRREGULAR = {
    "atlantes": "atlas", "atlases": "atlas", "axes": "axe", "beeves": "beef", "brethren": "brother",
    "children": "child", "corpora": "corpus", "corpuses": "corpus", "ephemerides": "ephemeris", "feet": "foot",
    "ganglia": "ganglion", "geese": "goose", "genera": "genus", "genii": "genie", "graffiti": "graffito",
    "helves": "helve", "kine": "cow", "leaves": "leaf", "loaves": "loaf", "men": "man", "mongooses": "mongoose",
    "monies": "money", "moves": "move", "mythoi": "mythos", "numena": "numen", "occipita": "occiput",
    "octopodes": "octopus", "opera": "opus", "opuses": "opus", "our": "my", "oxen": "ox", "penes": "penis",
    "penises": "penis", "people": "person", "sexes": "sex", "soliloquies": "soliloquy", "teeth": "tooth",
    "testes": "testis", "trilbys": "trilby", "turves": "turf", "zoa": "zoon",
}
# Suffix rules, first match wins; (pattern, replacement). Unmatched groups are replaced by "".
_RULES = [(re.compile(p), r) for p, r in (
    (r"(?i)(.)ae$", r"\1a"), (r"(?i)(.)itis$", r"\1itis"), (r"(?i)(.)eaux$", r"\1eau"),
    (r"(?i)(quiz)zes$", r"\1"), (r"(?i)(matr)ices$", r"\1ix"), (r"(?i)(ap|vert|ind)ices$", r"\1ex"),
    (r"(?i)^(ox)en", r"\1"), (r"(?i)(alias|status)es$", r"\1"), (r"(?i)([octop|vir])i$", r"\1us"),
    (r"(?i)(cris|ax|test)es$", r"\1is"), (r"(?i)(shoe)s$", r"\1"), (r"(?i)(o)es$", r"\1"),
    (r"(?i)(bus)es$", r"\1"), (r"(?i)([m|l])ice$", r"\1ouse"), (r"(?i)(x|ch|ss|sh)es$", r"\1"),
    (r"(?i)(m)ovies$", r"\1ovie"), (r"(?i)(.)ombies$", r"\1ombie"), (r"(?i)(s)eries$", r"\1eries"),
    (r"(?i)([^aeiouy]|qu)ies$", r"\1y"),
    (r"([aeo]l)ves$", r"\1f"), (r"([^d]ea)ves$", r"\1f"), (r"arves$", "arf"), (r"erves$", "erve"),
    (r"([nlw]i)ves$", r"\1fe"), (r"(?i)([lr])ves$", r"\1f"), (r"([aeo])ves$", r"\1ve"),
    (r"(?i)(sive)s$", r"\1"), (r"(?i)(tive)s$", r"\1"), (r"(?i)(hive)s$", r"\1"), (r"(?i)([^f])ves$", r"\1fe"),
    (r"(?i)(^analy)ses$", r"\1sis"),
    (r"(?i)((a)naly|(b)a|(d)iagno|(p)arenthe|(p)rogno|(s)ynop|(t)he)ses$", r"\1\2sis"),
    (r"(?i)(.)opses$", r"\1opsis"), (r"(?i)(.)yses$", r"\1ysis"), (r"(?i)(h|d|r|o|n|b|cl|p)oses$", r"\1ose"),
    (r"(?i)(fruct|gluc|galact|lact|ket|malt|rib|sacchar|cellul)ose$", r"\1ose"), (r"(?i)(.)oses$", r"\1osis"),
    (r"(?i)([ti])a$", r"\1um"), (r"(?i)(n)ews$", r"\1ews"), (r"(?i)s$", ""),
)]
# Second parts that make a hyphenated compound singularize its head ("mothers-in-law").
_PREPOSITIONS = frozenset(
    "about before during of till above behind except off to across below for on under after beneath from onto "
    "until among beside in out unto around besides into over upon at between near since with athwart betwixt "
    "beyond but by".split()
)


@lru_cache(maxsize=1 << 16)  # pure, and called for every token of every reference: cache by word
def singularize_reference(word: str) -> str:
    """The singular of ``word`` exactly as Pattern 2.6's ``singularize(word)`` returns it (quirks included).

    Args:
        word: One token (CHAIR passes lower-cased tokens).
    """
    if "-" in word:
        parts = word.split("-")
        if parts[1] in _PREPOSITIONS:
            return singularize_reference(parts[0]) + "-" + "-".join(parts[1:])
    if word.endswith("'"):
        return singularize_reference(word[:-1]) + "'s"
    lower = word.lower()
    if any(entry.endswith(lower) for entry in _UNINFLECTED) or any(entry.endswith(lower) for entry in _UNCOUNTABLE):
        return word
    if any(lower.endswith(entry + "s") for entry in _IE):
        return lower
    for plural, singular in _IRREGULAR.items():
        if lower.endswith(plural):
            return re.sub("(?i)" + plural + "$", singular, word)
    for pattern, replacement in _RULES:
        match = pattern.search(word)
        if match:
            for k, group in enumerate(match.groups(), start=1):
                if group is None:
                    replacement = replacement.replace("\\" + str(k), "")
            return pattern.sub(replacement, word)
    return word


def singularize_fixed(word: str, known: frozenset[str]) -> str:
    """A singularization that keeps known object words intact: ``word`` itself when it is in ``known``, else
    the reference result when that is known, else a plain plural ending removed (``-ies``→``-ie``/``-y``,
    ``-es``, ``-s``) when that gives a known word, else the reference result. So ``bus``, ``glass`` and
    ``ties`` map to ``bus``, ``glass`` and ``tie``.

    Args:
        word: One lower-cased token.
        known: The words that matter (object words and the words of two-word phrases).
    """
    if word in known:
        return word
    reference = singularize_reference(word)
    if reference in known:
        return reference
    candidates = [word[:-1], word[:-2], word[:-3] + "y"] if word.endswith("s") else []
    return next((c for c in candidates if c in known), reference)

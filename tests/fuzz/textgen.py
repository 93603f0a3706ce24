"""Invalid (and accidentally valid) .loss text: mutations of real specs, random token soup,
random characters and pathological shapes (deep nesting, huge numbers, long lines).

Every function takes a :class:`~tests.fuzz.choose.Chooser`, so Hypothesis and the long-run
script share them.
"""

from __future__ import annotations

import random
from pathlib import Path

from tests.fuzz.choose import Chooser, RandomChooser
from tests.fuzz.specgen import generate

ROOT = Path(__file__).resolve().parents[2]

KEYWORDS = (
    *("loss", "def", "param", "const", "return", "where", "if", "then", "else", "and", "or"),
    *("not", "in", "of", "use", "from", "true", "false", "inf"),
)
BUILTINS = (
    *("abs", "sign", "exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tanh", "erf"),
    *("sigmoid", "logsigmoid", "softplus", "relu", "floor", "ceil", "round", "max", "min"),
    *("clamp", "sum", "mean", "logsumexp", "norm", "prod", "softmax", "log_softmax", "onehot"),
    *("size",),
)
TYPES = ("Real", "Positive", "NonNegative", "Prob", "Binary", "Index", "Bool", "Int")
PUNCT = (
    *("(", ")", "[", "]", "{", "}", ",", ";", ":", "=", "==", "!=", "<", "<=", ">", ">=", "+"),
    *("-", "*", "/", "^", "\n", "#", '"', "\\", "'", ".", "@", "$", "`", "|", "&", "%", "?"),
)
NUMBERS = (
    *("0", "1", "2.5", "1e-7", "1e308", "1e309", "9" * 400, "0" * 50 + "1", ".5", "5.", "1e"),
    *("1e+", "0x10", "1_000", "-0", "nan", "inf", "1.2.3", "4" * 5000),
)
NAMES = (
    *("x", "N", "C", "t", "logits", "target", "__import__", "os", "eval", "exec", "torch"),
    *("jnp", "self", "None", "lambda", "import", "_x", "d_x", "n_N", "grad", "ctx"),
    *("a" * 300, "λ", "x\u0301", "ℕ", "\u200b"),
)
STRANGE = (
    *("\x00", "\t", "\r", "\r\n", "\x0b", "\x0c", "\ufeff", "\u2028", "\u2029", "\x85", "\ud800"),
    *("\U0001f600", "\u202e", "é", "\x1b[31m", "{{", "}}", '"""', "'''", "\\n", "\\x00"),
)
TOKENS = (*KEYWORDS, *BUILTINS, *TYPES, *PUNCT, *NUMBERS, *NAMES, *STRANGE)


def corpus() -> list[str]:
    """Real specs to mutate: the examples and the standard library."""
    files = sorted((ROOT / "tests" / "examples").glob("*.loss"))
    files += sorted((ROOT / "specs").glob("*.loss"))
    return [f.read_text(encoding="utf-8") for f in files]


_CORPUS: list[str] = []


def seed_text(c: Chooser) -> str:
    if not _CORPUS:
        _CORPUS.extend(corpus())
    if c.chance(0.3):
        return generate(c, smooth=c.chance(0.5)).text
    return c.choice(_CORPUS)


def mutate(text: str, c: Chooser) -> str:
    """Between one and six edits: deletions, insertions, replacements, duplications, swaps."""
    for _ in range(c.integer(1, 6)):
        n = len(text)
        i = c.integer(0, n)
        j = min(n, i + c.integer(0, 12))
        kind = c.choice(("delete", "insert", "replace", "duplicate", "swap_lines", "truncate"))
        if kind == "delete":
            text = text[:i] + text[j:]
        elif kind == "insert":
            text = text[:i] + c.choice(TOKENS) + c.choice(("", " ")) + text[i:]
        elif kind == "replace":
            text = text[:i] + c.choice(TOKENS) + text[j:]
        elif kind == "duplicate":
            text = text[:j] + text[i:j] * c.integer(1, 3) + text[j:]
        elif kind == "swap_lines":
            lines = text.split("\n")
            a, b = c.integer(0, len(lines) - 1), c.integer(0, len(lines) - 1)
            lines[a], lines[b] = lines[b], lines[a]
            text = "\n".join(lines)
        else:
            text = text[:i]
    return text


def token_soup(c: Chooser) -> str:
    """Tokens of the language in random order, sometimes inside a loss body."""
    soup = " ".join(c.choice(TOKENS) for _ in range(c.integer(0, 40)))
    if c.chance(0.5):
        return f"loss f(x: Real[N]) {{\n    {soup}\n    return sum(x)\n}}\n"
    return soup


def random_chars(c: Chooser) -> str:
    alphabet = 'abcxyzNC019._()[]{},;:=<>+-*/^#"\\ \n\t' + "".join(STRANGE)
    return "".join(c.choice(alphabet) for _ in range(c.integer(0, 80)))


def pathological(c: Chooser) -> str:
    """Shapes that stress limits: nesting, long chains, many statements, giant literals."""
    n = c.choice((50, 99, 100, 101, 150, 1000, 20000))
    body = c.choice(
        (
            "(" * n + "x" + ")" * n,
            "-" * n + "x",
            "not " * n + "x > 0",
            "x" + " + x" * n,
            "x" + "^x" * n,
            "sum(" * n + "x" + ")" * n,
            "if x > 0 then " * n + "x" + " else x" * n,
            "[" * n + "x",
            "x" + "[t]" * n,
            "1" + "e9" * n,
            "(" * n,
        )
    )
    return f"loss f(x: Real[N], t: Index[N] of N) {{\n    return {body}\n}}\n"


def case(c: Chooser) -> str:
    """One fuzz case of any kind."""
    kind = c.choice(("mutate", "mutate", "mutate", "soup", "chars", "pathological"))
    if kind == "mutate":
        return mutate(seed_text(c), c)
    if kind == "soup":
        return token_soup(c)
    if kind == "chars":
        return random_chars(c)
    return pathological(c)


def case_for_seed(seed: int) -> str:
    return case(RandomChooser(random.Random(seed)))

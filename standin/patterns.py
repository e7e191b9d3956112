r"""Compile the regular expressions of AWS service models with AWS's semantics.

The `pattern` traits in botocore's models are written for AWS's Java services:
`\w`, `\d` and `\s` are ASCII-only there, `.` stops at any line terminator,
and classes such as `\p{L}` appear. Python's `re` reads the shorthands as
Unicode and knows no `\p{..}`, so a pattern used verbatim would accept values
AWS rejects. The `regex` module understands `\p{..}`; this module rewrites the
shorthands and `.` into explicit ASCII classes before handing the pattern over,
so a full match here agrees with the service.
"""

from __future__ import annotations

import functools

import regex

_SHORTHANDS_IN_CLASS = {
    "w": "A-Za-z0-9_",
    "d": "0-9",
    "s": " \\t\\n\\x0B\\f\\r",
}
"""Java's ASCII meaning of a shorthand, as the body of a character class."""

_SHORTHANDS = {
    **{letter: f"[{body}]" for letter, body in _SHORTHANDS_IN_CLASS.items()},
    **{letter.upper(): f"[^{body}]" for letter, body in _SHORTHANDS_IN_CLASS.items()},
}
"""Java's ASCII meaning of a shorthand, standing alone."""

_JAVA_DOT = "[^\\n\\r\\u0085\\u2028\\u2029]"
"""Java's `.`: any character but a line terminator."""


def translate_java_pattern(pattern: str) -> str:
    r"""Rewrite a Java-flavoured pattern into one `regex` reads the same way.

    Only the constructs whose meaning differs are touched; every other escape
    (`\uXXXX`, `\p{L}`, escaped punctuation) is copied as it is, because
    `regex` already reads those as Java does. A negated shorthand inside a
    class (`[\S]`) keeps the Unicode reading: no model uses one, and
    expressing it would need set operations.
    """
    out: list[str] = []
    in_class = False
    index = 0

    while index < len(pattern):
        char = pattern[index]

        if char == "\\" and index + 1 < len(pattern):
            escaped = pattern[index + 1]
            out.append(_translate_escape(escaped, in_class=in_class))
            index += 2
            continue

        if char == "[" and not in_class:
            in_class = True
            out.append(char)
            index += 1
            index = _copy_class_opening(pattern, index, out)
            continue

        if char == "]" and in_class:
            in_class = False
        elif char == "." and not in_class:
            char = _JAVA_DOT

        out.append(char)
        index += 1

    return "".join(out)


def _translate_escape(escaped: str, *, in_class: bool) -> str:
    r"""Return the replacement for the two-character escape `\<escaped>`."""
    if in_class and escaped in _SHORTHANDS_IN_CLASS:
        return _SHORTHANDS_IN_CLASS[escaped]

    if not in_class and escaped in _SHORTHANDS:
        return _SHORTHANDS[escaped]

    return "\\" + escaped


def _copy_class_opening(pattern: str, index: int, out: list[str]) -> int:
    """Copy a class's `^` and a leading literal `]`, which do not close it."""
    if index < len(pattern) and pattern[index] == "^":
        out.append("^")
        index += 1

    if index < len(pattern) and pattern[index] == "]":
        out.append("\\]")
        index += 1

    return index


@functools.cache
def compile_model_pattern(pattern: str) -> regex.Pattern[str]:
    """Compile a model's pattern once; the same few patterns recur per call."""
    return regex.compile(translate_java_pattern(pattern))


def fully_matches(pattern: str, value: str) -> bool:
    """Tell whether `value` satisfies the pattern trait, which AWS anchors."""
    return compile_model_pattern(pattern).fullmatch(value) is not None

"""Check a decoded request against every constraint its botocore model states.

AWS validates on the server whatever the client skipped, so a client built with
`parameter_validation=False` (or a buggy caller) meets the same rejections here
as in production. The checks are generic over the model: required members,
string length, pattern and enum, list length, integer range and the JSON type.
The messages follow AWS's own wording ("1 validation error detected: Value 'x'
at 'roleSessionName' failed to satisfy constraint: ..."), so logs read alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from botocore.model import ListShape, MapShape, Shape, StringShape, StructureShape

from standin.patterns import fully_matches

_NULL: Final = object()
"""Stands for a missing value, which AWS prints as `null`."""

_INTEGER_TYPES: Final = frozenset({"integer", "long"})


@dataclass(frozen=True, slots=True)
class Violation:
    """One failed constraint, located the way AWS locates it (`tags.1.member.key`)."""

    path: str
    value: object
    constraint: str
    sensitive: bool = False

    def describe(self) -> str:
        """Render as AWS does; sensitive values are never echoed back."""
        if self.value is _NULL:
            subject = "Value null"
        elif self.sensitive:
            subject = "Value"
        else:
            subject = f"Value '{_render(self.value)}'"

        return (
            f"{subject} at '{self.path}' failed to satisfy constraint: "
            f"{self.constraint}"
        )


def summarize(violations: list[Violation]) -> str:
    """Join violations into the single message AWS returns for all of them."""
    count = len(violations)
    noun = "error" if count == 1 else "errors"
    details = "; ".join(violation.describe() for violation in violations)

    return f"{count} validation {noun} detected: {details}"


def validate(shape: Shape, value: object, path: str = "") -> list[Violation]:
    """Return every constraint `value` breaks, in model order; empty when valid."""
    if isinstance(shape, StructureShape):
        return _validate_structure(shape, value, path)

    if isinstance(shape, ListShape):
        return _validate_list(shape, value, path)

    if isinstance(shape, MapShape):
        return _validate_map(shape, value, path)

    return _validate_scalar(shape, value, path)


def _validate_structure(
    shape: StructureShape, value: object, path: str
) -> list[Violation]:
    """Check members in model order so messages come out in a stable order."""
    if not isinstance(value, dict):
        return [_type_violation(shape, value, path, "a structure")]

    violations: list[Violation] = []
    required = set(shape.required_members)

    for name, member in shape.members.items():
        member_path = _join(path, name[:1].lower() + name[1:])
        member_value = value.get(name)

        if member_value is None:
            if name in required:
                violations.append(
                    Violation(member_path, _NULL, "Member must not be null")
                )
            continue

        violations.extend(validate(member, member_value, member_path))

    return violations


def _validate_list(shape: ListShape, value: object, path: str) -> list[Violation]:
    """Check the list's length, then each element under `<path>.<n>.member`."""
    if not isinstance(value, list):
        return [_type_violation(shape, value, path, "a list")]

    violations = _length_violations(shape, value, len(value), path)

    for position, item in enumerate(value, start=1):
        violations.extend(validate(shape.member, item, f"{path}.{position}.member"))

    return violations


def _validate_map(shape: MapShape, value: object, path: str) -> list[Violation]:
    """Check the map's size, then each key and value."""
    if not isinstance(value, dict):
        return [_type_violation(shape, value, path, "a map")]

    violations = _length_violations(shape, value, len(value), path)

    for key, item in value.items():
        violations.extend(validate(shape.key, key, f"{path}.key"))
        violations.extend(validate(shape.value, item, f"{path}.{key}"))

    return violations


def _validate_scalar(shape: Shape, value: object, path: str) -> list[Violation]:
    """Check a leaf value's type and the traits that apply to that type."""
    if shape.type_name == "string":
        if not isinstance(value, str):
            return [_type_violation(shape, value, path, "a string")]
        return _string_violations(shape, value, path)

    if shape.type_name in _INTEGER_TYPES:
        if isinstance(value, bool) or not isinstance(value, int):
            return [_type_violation(shape, value, path, "an integer")]
        return _range_violations(shape, value, path)

    if shape.type_name == "boolean" and not isinstance(value, bool):
        return [_type_violation(shape, value, path, "a boolean")]

    return []


def _string_violations(shape: Shape, value: str, path: str) -> list[Violation]:
    """Check length, enum and pattern, reporting each one that fails."""
    violations = _length_violations(shape, value, len(value), path)
    sensitive = _is_sensitive(shape)

    enum = shape.enum if isinstance(shape, StringShape) else []
    if enum and value not in enum:
        allowed = ", ".join(enum)
        violations.append(
            Violation(
                path,
                value,
                f"Member must satisfy enum value set: [{allowed}]",
                sensitive,
            )
        )

    pattern = shape.metadata.get("pattern")
    if isinstance(pattern, str) and not fully_matches(pattern, value):
        violations.append(
            Violation(
                path,
                value,
                f"Member must satisfy regular expression pattern: {pattern}",
                sensitive,
            )
        )

    return violations


def _length_violations(
    shape: Shape, value: object, length: int, path: str
) -> list[Violation]:
    """Check the `min`/`max` traits, which bound a string's or list's length."""
    violations: list[Violation] = []
    sensitive = _is_sensitive(shape)
    minimum = shape.metadata.get("min")
    maximum = shape.metadata.get("max")

    if isinstance(minimum, int) and length < minimum:
        violations.append(
            Violation(
                path,
                value,
                f"Member must have length greater than or equal to {minimum}",
                sensitive,
            )
        )

    if isinstance(maximum, int) and length > maximum:
        violations.append(
            Violation(
                path,
                value,
                f"Member must have length less than or equal to {maximum}",
                sensitive,
            )
        )

    return violations


def _range_violations(shape: Shape, value: int, path: str) -> list[Violation]:
    """Check the `min`/`max` traits, which bound an integer's value."""
    violations: list[Violation] = []
    minimum = shape.metadata.get("min")
    maximum = shape.metadata.get("max")

    if isinstance(minimum, int) and value < minimum:
        violations.append(
            Violation(
                path,
                value,
                f"Member must have value greater than or equal to {minimum}",
            )
        )

    if isinstance(maximum, int) and value > maximum:
        violations.append(
            Violation(
                path, value, f"Member must have value less than or equal to {maximum}"
            )
        )

    return violations


def _type_violation(shape: Shape, value: object, path: str, kind: str) -> Violation:
    """Report a value of the wrong JSON (or query) type."""
    return Violation(path, value, f"Member must be {kind}", _is_sensitive(shape))


def _is_sensitive(shape: Shape) -> bool:
    """Tell whether the model marks the value as one AWS never echoes."""
    return bool(shape.metadata.get("sensitive", False))


def _join(path: str, name: str) -> str:
    """Append a member name to a dotted path."""
    return f"{path}.{name}" if path else name


def _render(value: object) -> str:
    """Print a value roughly as AWS's Java services print it."""
    if isinstance(value, list):
        return "[" + ", ".join(_render(item) for item in value) + "]"

    if isinstance(value, dict):
        items = ", ".join(f"{key}={_render(item)}" for key, item in value.items())
        return "{" + items + "}"

    return str(value)

"""Exposure rules: `country in ["US", "CA"] and app_version >= "5.2.0"` -> typed Unleash constraints.

Rules are written by people in experiment specs, so they are parsed (never evaluated) by a small tokenizer and
recursive-descent parser with bounded input, and every mistake becomes a RuleError that points at a column and
says what was expected there. Each comparison becomes exactly one Unleash constraint (the table: docs/flags.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum, auto
from typing import NoReturn

from abrollout.contracts.constraints import Constraint, Operator

MAX_RULE_LENGTH = 2_000
MAX_LIST_VALUES = 1_000

KEYWORDS = frozenset(
    {"and", "or", "not", "in", "true", "false", "contains", "starts_with", "ends_with", "semver"}
)

_NUMBER_OPERATORS = {
    ">": Operator.NUM_GT,
    ">=": Operator.NUM_GTE,
    "<": Operator.NUM_LT,
    "<=": Operator.NUM_LTE,
}
_DATE_OPERATORS = {">": Operator.DATE_AFTER, "<": Operator.DATE_BEFORE}
_SEMVER_OPERATORS = {
    "==": (Operator.SEMVER_EQ, False),
    "!=": (Operator.SEMVER_EQ, True),
    ">": (Operator.SEMVER_GT, False),
    "<": (Operator.SEMVER_LT, False),
    ">=": (Operator.SEMVER_LT, True),
    "<=": (Operator.SEMVER_GT, True),
}
_STRING_OPERATORS = {
    "contains": Operator.STR_CONTAINS,
    "starts_with": Operator.STR_STARTS_WITH,
    "ends_with": Operator.STR_ENDS_WITH,
}
# The inverse tables, for format_constraint.
_NUMBER_SYMBOLS = {operator: symbol for symbol, operator in _NUMBER_OPERATORS.items()}
_DATE_SYMBOLS = {operator: symbol for symbol, operator in _DATE_OPERATORS.items()}
_SEMVER_SYMBOLS = {meaning: symbol for symbol, meaning in _SEMVER_OPERATORS.items()}
_STRING_KEYWORDS = {operator: keyword for keyword, operator in _STRING_OPERATORS.items()}

_EXPECTED_FIELD = 'a comparison starting with a context field name, such as `country == "US"`'
_EXPECTED_OPERATOR = "an operator (==, !=, >, >=, <, <=, in, not in, contains, starts_with, ends_with)"
_EXPECTED_AFTER_NOT = "`in`, `contains`, `starts_with` or `ends_with` after `not`"
_EXPECTED_ORDERED = 'a number, a semver string like "5.2.0" or an ISO date like "2024-01-01"'
_EXPECTED_ESCAPE = 'an escape \\" or \\\\ (the only ones strings support)'
_EXPECTED_SEMVER = 'a semver string like "5.2.0" (MAJOR.MINOR.PATCH, see semver.org)'

_ALTERNATIVES = (
    "Rules are joined with `and` (Unleash ANDs constraints); for alternatives use `field in [a, b]`."
)
_HINTS = {
    "or": _ALTERNATIVES,
    "||": _ALTERNATIVES,
    "(": "Parentheses are not supported. " + _ALTERNATIVES,
    ")": "Parentheses are not supported. " + _ALTERNATIVES,
    "&&": "Write `and`.",
    "=": "Compare with `==`.",
    "!": "Negate with `!=`, `not in` or `not contains`.",
    "=~": "Regular expressions are not supported; use contains, starts_with or ends_with.",
    "'": 'Strings are written in double quotes: "like this".',
}

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_NUMBER_LIKE = re.compile(r"-?[0-9][A-Za-z0-9_.]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
_SYMBOLS = ("==", "!=", ">=", "<=", ">", "<", "[", "]", ",", "(", ")")
_UNKNOWN = re.compile(r'.[^\sA-Za-z0-9_"\[\](),]*', re.DOTALL)
_SEMVER_NUMBER = re.compile(r"0|[1-9][0-9]*")
_SEMVER_IDENTIFIER = re.compile(r"[0-9A-Za-z-]+")
_DATE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,3}))?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?"
)
_EXCERPT_WIDTH = 60


class RuleError(ValueError):
    """A rule that does not parse. `position` is a 0-based offset; `str()` shows it as a 1-based column."""

    def __init__(self, rule: str, position: int, expected: str, found: str, hint: str = "") -> None:
        super().__init__(rule, position, expected, found, hint)  # all of them, so the error pickles
        self.rule = rule
        self.position = position
        self.expected = expected
        self.found = found
        self.hint = hint

    def __str__(self) -> str:
        message = f"at column {self.position + 1}: expected {self.expected} but found {self.found}"
        if self.hint:
            message += f". {self.hint}"
        excerpt, caret = _excerpt(self.rule, self.position)
        return f"{message}\n  {excerpt}\n  {' ' * caret}^"


def _excerpt(rule: str, position: int) -> tuple[str, int]:
    """A bounded one-line window of the rule around `position`, and the caret's offset in it."""
    start = max(0, min(position - _EXCERPT_WIDTH // 2, len(rule) - _EXCERPT_WIDTH))
    window = rule[start : start + _EXCERPT_WIDTH]
    prefix = "…" if start else ""
    suffix = "…" if start + _EXCERPT_WIDTH < len(rule) else ""
    return prefix + _printable(window) + suffix, len(prefix) + position - start


def _printable(text: str) -> str:
    """`text` on one line, one column per character, so a caret below it lines up."""
    return "".join(char if char.isprintable() else " " for char in text)


class _Kind(Enum):
    WORD = auto()  # a field name or a keyword
    STRING = auto()
    NUMBER = auto()
    SYMBOL = auto()  # an operator, punctuation, or a run of characters the grammar does not know
    END = auto()


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _Kind
    text: str  # as written; a string keeps its quotes, so it never equals a keyword or symbol
    position: int
    value: str = ""  # the decoded string, the canonical number, or the word itself

    def describe(self) -> str:
        """How the token is named in an error message."""
        if self.kind is _Kind.END:
            return "the end of the rule"
        shown = _printable(self.text if len(self.text) <= 40 else self.text[:37] + "…")
        return shown if self.kind is _Kind.STRING else f"'{shown}'"


def _tokenize(rule: str) -> list[_Token]:
    """Split the rule into tokens, ending with an END token; only strings and numbers can fail here."""
    tokens: list[_Token] = []
    position = _skip_space(rule, 0)
    while position < len(rule):
        token = _next_token(rule, position)
        tokens.append(token)
        position = _skip_space(rule, position + len(token.text))
    tokens.append(_Token(_Kind.END, "", len(rule)))
    return tokens


def _skip_space(rule: str, position: int) -> int:
    while position < len(rule) and rule[position].isspace():
        position += 1
    return position


def _next_token(rule: str, position: int) -> _Token:
    """The token starting at `position`, which is not whitespace."""
    if rule[position] == '"':
        return _read_string(rule, position)
    if match := _NUMBER_LIKE.match(rule, position):
        return _read_number(rule, position, match.group())
    if match := _WORD.match(rule, position):
        return _Token(_Kind.WORD, match.group(), position, match.group())
    symbol = next((symbol for symbol in _SYMBOLS if rule.startswith(symbol, position)), None)
    if symbol is None:
        unknown = _UNKNOWN.match(rule, position)
        assert unknown is not None  # its first character is `.`, and position < len(rule)
        symbol = unknown.group()
    return _Token(_Kind.SYMBOL, symbol, position)


def _read_string(rule: str, start: int) -> _Token:
    """A double-quoted string whose only escapes are \\" and \\\\."""
    chars: list[str] = []
    position = start + 1
    while position < len(rule):
        char = rule[position]
        if char == '"':
            return _Token(_Kind.STRING, rule[start : position + 1], start, "".join(chars))
        if char == "\\":
            escaped = rule[position + 1 : position + 2]
            if escaped not in ('"', "\\"):
                found = f"'\\{escaped}'" if escaped else "the end of the rule"
                raise RuleError(rule, position, _EXPECTED_ESCAPE, found)
            char = escaped
            position += 1
        chars.append(char)
        position += 1
    raise RuleError(rule, start, 'a closing " for the string that starts here', "the end of the rule")


def _read_number(rule: str, start: int, text: str) -> _Token:
    """A number like 42, -3 or 2.5, kept as its canonical text (Unleash stores values as strings)."""
    if not _NUMBER.fullmatch(text):
        expected = "a number like 42, -3 or 2.5 (quote versions, ids and other text)"
        raise RuleError(rule, start, expected, f"'{text}'")
    return _Token(_Kind.NUMBER, text, start, _canonical_number(text))


def _canonical_number(text: str) -> str:
    """One spelling per number, so equal numbers give equal constraints: no trailing fraction zeros, no -0 (a
    quoted value keeps its text)."""
    sign, digits = ("-", text[1:]) if text.startswith("-") else ("", text)
    whole, _, fraction = digits.partition(".")
    fraction = fraction.rstrip("0")
    magnitude = f"{whole}.{fraction}" if fraction else whole
    return "0" if magnitude == "0" else sign + magnitude


def _is_semver(text: str) -> bool:
    """MAJOR.MINOR.PATCH[-prerelease][+build] per semver.org, checked without a backtracking regex."""
    core, has_build, build = text.partition("+")
    core, has_prerelease, prerelease = core.partition("-")
    numbers = core.split(".")
    return (
        len(numbers) == 3
        and all(_SEMVER_NUMBER.fullmatch(number) for number in numbers)
        and (not has_prerelease or all(map(_is_prerelease_identifier, prerelease.split("."))))
        and (not has_build or all(_SEMVER_IDENTIFIER.fullmatch(part) for part in build.split(".")))
    )


def _is_prerelease_identifier(part: str) -> bool:
    """Alphanumerics and hyphens; a purely numeric identifier has no leading zero."""
    return bool(_SEMVER_IDENTIFIER.fullmatch(part)) and (
        not part.isdigit() or bool(_SEMVER_NUMBER.fullmatch(part))
    )


def _iso_timestamp(text: str) -> str | None:
    """`text` as a UTC timestamp like 2024-01-01T00:00:00Z, or None if it is not shaped like an ISO date.

    A bare date means midnight UTC; a date-time must carry its offset, because a local time is ambiguous.
    Raises ValueError for a date-shaped string that is not a real moment (month 13, a missing offset, ...).
    """
    match = _DATE.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, millis, offset = match.groups()
    if hour is not None and offset is None:
        raise ValueError("a date-time needs a UTC offset such as Z or +02:00")
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((millis or "0").ljust(3, "0")) * 1000,
            tzinfo=_utc_offset(offset),
        ).astimezone(UTC)
    except OverflowError:
        raise ValueError("it is outside the supported range of dates") from None
    timespec = "milliseconds" if moment.microsecond else "seconds"
    return moment.replace(tzinfo=None).isoformat(timespec=timespec) + "Z"


def _utc_offset(offset: str | None) -> timezone:
    """The timezone for an ISO offset: Z (or none, for a bare date) is UTC, else +HH:MM / -HH:MM."""
    if offset is None or offset == "Z":
        return UTC
    hours, minutes = int(offset[1:3]), int(offset[4:6])
    if minutes >= 60:
        raise ValueError("offset minutes must be below 60")
    sign = -1 if offset[0] == "-" else 1
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


class _Parser:
    """Recursive descent over the tokens of one rule; each method reads one piece of the grammar."""

    def __init__(self, rule: str) -> None:
        self._rule = rule
        self._tokens = _tokenize(rule)
        self._index = 0

    def parse(self) -> tuple[Constraint, ...]:
        """rule := comparison ("and" comparison)*"""
        constraints = [self._comparison()]
        while self._peek().text == "and":
            self._next()
            constraints.append(self._comparison())
        end = self._next()
        if end.kind is not _Kind.END:
            self._fail(end, "`and` or the end of the rule")
        return tuple(constraints)

    def _peek(self) -> _Token:
        return self._tokens[self._index]

    def _next(self) -> _Token:
        """Consume a token; the final END token is never consumed, so reading past the end is safe."""
        token = self._tokens[self._index]
        self._index = min(self._index + 1, len(self._tokens) - 1)
        return token

    def _fail(self, token: _Token, expected: str, hint: str | None = None) -> NoReturn:
        """Raise at `token`; unless a hint is given, common mistakes (`or`, `&&`, `=`...) get one."""
        if hint is None:
            hint = _hint(token.text)
        raise RuleError(self._rule, token.position, expected, token.describe(), hint)

    def _expect(self, text: str, expected: str) -> None:
        token = self._next()
        if token.text != text:
            self._fail(token, expected, hint="")

    def _comparison(self) -> Constraint:
        """comparison := field operator operand"""
        field = self._field()
        token = self._next()
        if token.text in ("==", "!="):
            return self._equality(field, token.text)
        if token.text in _NUMBER_OPERATORS:
            return self._ordering(field, token)
        negated = token.text == "not"
        if negated:
            token = self._next()
        if token.text == "in":
            return self._membership(field, negated)
        if token.text in _STRING_OPERATORS:
            return self._text_match(field, _STRING_OPERATORS[token.text], negated)
        self._fail(token, _EXPECTED_AFTER_NOT if negated else _EXPECTED_OPERATOR)

    def _field(self) -> str:
        token = self._next()
        if token.kind is not _Kind.WORD or token.text in KEYWORDS:
            self._fail(token, _EXPECTED_FIELD)
        return token.text

    def _equality(self, field: str, operator: str) -> Constraint:
        """`==`/`!=`: a number compares numerically, semver("…") semantically, anything else as text."""
        if self._peek().text == "semver":
            return _semver_constraint(field, operator, self._semver())
        token = self._scalar('a "string", number, true/false or semver("…") (for a list use `in [...]`)')
        negated = operator == "!="
        if token.kind is _Kind.NUMBER:
            return Constraint(
                context_name=field, operator=Operator.NUM_EQ, value=token.value, inverted=negated
            )
        return Constraint(
            context_name=field, operator=Operator.NOT_IN if negated else Operator.IN, values=(token.value,)
        )

    def _ordering(self, field: str, operator: _Token) -> Constraint:
        """`>`, `>=`, `<`, `<=`: numeric, semver or date, decided by the value."""
        if self._peek().text == "semver":
            return _semver_constraint(field, operator.text, self._semver())
        token = self._next()
        if token.kind is _Kind.NUMBER:
            return Constraint(
                context_name=field, operator=_NUMBER_OPERATORS[operator.text], value=token.value
            )
        if token.kind is _Kind.STRING:
            if _is_semver(token.value):
                return _semver_constraint(field, operator.text, token.value)
            timestamp = self._timestamp(token)
            if timestamp is not None:
                return self._date_constraint(field, operator, timestamp)
        self._fail(token, _EXPECTED_ORDERED)

    def _membership(self, field: str, negated: bool) -> Constraint:
        """`in [...]` / `not in [...]`: strings, numbers and true/false, all compared as text by Unleash."""
        operator = Operator.NOT_IN if negated else Operator.IN
        return Constraint(context_name=field, operator=operator, values=self._list(self._list_value))

    def _text_match(self, field: str, operator: Operator, negated: bool) -> Constraint:
        """contains / starts_with / ends_with: one string or a list of strings."""
        if self._peek().text == "[":
            values = self._list(self._string)
        else:
            values = (self._string('a "string" or a [list] of strings'),)
        return Constraint(context_name=field, operator=operator, values=values, inverted=negated)

    def _timestamp(self, token: _Token) -> str | None:
        try:
            return _iso_timestamp(token.value)
        except ValueError as error:
            self._fail(token, "a valid ISO date", hint=f"It is not one: {error}.")

    def _date_constraint(self, field: str, operator: _Token, timestamp: str) -> Constraint:
        if operator.text not in _DATE_OPERATORS:
            hint = "Unleash only has the strict DATE_AFTER and DATE_BEFORE operators for dates."
            self._fail(operator, "`>` or `<` before a date", hint=hint)
        return Constraint(context_name=field, operator=_DATE_OPERATORS[operator.text], value=timestamp)

    def _semver(self) -> str:
        """semver("5.2.0"): forces semantic-version comparison; the string must be a valid semver."""
        self._next()  # the `semver` keyword, already peeked at by the caller
        self._expect("(", "'(' after semver")
        token = self._next()
        if token.kind is not _Kind.STRING or not _is_semver(token.value):
            self._fail(token, _EXPECTED_SEMVER, hint="")
        self._expect(")", "')' to close semver(")
        return token.value

    def _scalar(self, expected: str) -> _Token:
        """A string, number or true/false; a bare word gets a hint to quote it."""
        token = self._next()
        if token.kind in (_Kind.STRING, _Kind.NUMBER) or token.text in ("true", "false"):
            return token
        quote = f'Text values are quoted: "{token.text}".' if token.kind is _Kind.WORD else ""
        self._fail(token, expected, hint=_hint(token.text) or quote)

    def _list_value(self) -> str:
        return self._scalar('a "string", number or true/false').value

    def _string(self, expected: str = 'a "string"') -> str:
        token = self._next()
        if token.kind is not _Kind.STRING:
            self._fail(token, expected)
        return token.value

    def _list(self, item: Callable[[], str]) -> tuple[str, ...]:
        """list := "[" item ("," item)* ","? "]" with at most MAX_LIST_VALUES items."""
        self._expect("[", "a [list] of values")
        values = [item()]
        while self._peek().text == ",":
            self._next()
            if self._peek().text == "]":
                break
            if len(values) == MAX_LIST_VALUES:
                limit = f"at most {MAX_LIST_VALUES} values in a list"
                raise RuleError(self._rule, self._peek().position, limit, "more")
            values.append(item())
        self._expect("]", "',' or ']'")
        return tuple(values)


def _hint(found: str) -> str:
    """Advice for a token people commonly write by mistake."""
    lowered = found.lower()
    if lowered in _HINTS:
        return _HINTS[lowered]
    if lowered in KEYWORDS and found != lowered:
        return f"Keywords are lowercase: write `{lowered}`."
    return ""


def _semver_constraint(field: str, operator: str, version: str) -> Constraint:
    semver_operator, inverted = _SEMVER_OPERATORS[operator]
    return Constraint(context_name=field, operator=semver_operator, value=version, inverted=inverted)


def parse_rule(text: str) -> tuple[Constraint, ...]:
    """One rule -> its constraints, in order. Any bad input raises RuleError, and nothing else."""
    if len(text) > MAX_RULE_LENGTH:
        limit = f"a rule of at most {MAX_RULE_LENGTH} characters"
        raise RuleError(text, MAX_RULE_LENGTH, limit, f"{len(text)} characters")
    return _Parser(text).parse()


def parse_rules(rules: Sequence[str]) -> tuple[Constraint, ...]:
    """All exposure rules of a spec, concatenated: Unleash ANDs every constraint of a strategy."""
    if isinstance(rules, str):
        raise TypeError("parse_rules takes a sequence of rules; use parse_rule for a single rule")
    return tuple(constraint for rule in rules for constraint in parse_rule(rule))


def format_constraint(constraint: Constraint) -> str:
    """The canonical rule text for a constraint, for reports: parse_rule(format_constraint(c)) == (c,).

    The text is parsed back before it is returned, so the parser stays the one definition of what a rule
    means. Constraints no rule produces (case-insensitive ones, an inverted IN or NUM_GT, a NUM_EQ whose
    value is not a canonical number, ...) raise ValueError.
    """
    text = f"{constraint.context_name} {_format_comparison(constraint)}"
    try:
        round_trips = parse_rule(text) == (constraint,)
    except RuleError:
        round_trips = False
    if not round_trips:
        raise ValueError(f"no exposure rule expresses {constraint!r}")
    return text


def _format_comparison(constraint: Constraint) -> str:
    """Everything after the field name; the inverse of _Parser._comparison for constraints it produces."""
    operator, values, value = constraint.operator, constraint.values, constraint.value or ""
    if operator in (Operator.IN, Operator.NOT_IN):
        negated = operator is Operator.NOT_IN
        if len(values) == 1:
            return f"{'!=' if negated else '=='} {_quote(values[0])}"
        return f"{'not in' if negated else 'in'} {_format_list(values)}"
    if operator in _STRING_KEYWORDS:
        operand = _quote(values[0]) if len(values) == 1 else _format_list(values)
        return f"{'not ' if constraint.inverted else ''}{_STRING_KEYWORDS[operator]} {operand}"
    if operator is Operator.NUM_EQ:
        return f"{'!=' if constraint.inverted else '=='} {value}"
    if operator in _NUMBER_SYMBOLS:
        return f"{_NUMBER_SYMBOLS[operator]} {value}"
    if operator in _DATE_SYMBOLS:
        return f"{_DATE_SYMBOLS[operator]} {_quote(value)}"
    symbol = _SEMVER_SYMBOLS[(operator, constraint.inverted)]
    if operator is Operator.SEMVER_EQ:
        return f"{symbol} semver({_quote(value)})"
    return f"{symbol} {_quote(value)}"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _format_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(map(_quote, values)) + "]"

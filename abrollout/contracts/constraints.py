"""Typed exposure constraints: the parsed form of an exposure rule.

Each constraint maps one-to-one to an Unleash strategy constraint, so a rule means the same thing in the
embedded flag provider and in Unleash.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Operator(StrEnum):
    """Unleash constraint operators (https://docs.getunleash.io/reference/activation-strategies#constraints)."""

    IN = "IN"
    NOT_IN = "NOT_IN"
    STR_CONTAINS = "STR_CONTAINS"
    STR_STARTS_WITH = "STR_STARTS_WITH"
    STR_ENDS_WITH = "STR_ENDS_WITH"
    NUM_EQ = "NUM_EQ"
    NUM_GT = "NUM_GT"
    NUM_GTE = "NUM_GTE"
    NUM_LT = "NUM_LT"
    NUM_LTE = "NUM_LTE"
    DATE_AFTER = "DATE_AFTER"
    DATE_BEFORE = "DATE_BEFORE"
    SEMVER_EQ = "SEMVER_EQ"
    SEMVER_GT = "SEMVER_GT"
    SEMVER_LT = "SEMVER_LT"


MULTI_VALUE_OPERATORS = frozenset(
    {Operator.IN, Operator.NOT_IN, Operator.STR_CONTAINS, Operator.STR_STARTS_WITH, Operator.STR_ENDS_WITH}
)


class Constraint(BaseModel):
    """One Unleash constraint. Multi-value operators use `values`, single-value operators use `value`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    context_name: str = Field(min_length=1)
    operator: Operator
    values: tuple[str, ...] = ()
    value: str | None = None
    inverted: bool = False
    case_insensitive: bool = False

    def to_unleash(self) -> dict[str, Any]:
        """The JSON body Unleash's Admin API expects for this constraint."""
        body: dict[str, Any] = {
            "contextName": self.context_name,
            "operator": self.operator.value,
            "inverted": self.inverted,
            "caseInsensitive": self.case_insensitive,
        }
        if self.operator in MULTI_VALUE_OPERATORS:
            body["values"] = list(self.values)
        else:
            body["value"] = self.value
        return body

"""The rule registry. Importing it is cheap: implementations load on first use."""

from __future__ import annotations

from loopdoctor.static.rules.catalog import BY_CODE, CATALOG, PARSE_ERROR_CODE, PARSE_ERROR_NAME, RuleInfo

ALL_RULES = CATALOG
RULES_BY_CODE = BY_CODE

__all__ = ["ALL_RULES", "RULES_BY_CODE", "PARSE_ERROR_CODE", "PARSE_ERROR_NAME", "RuleInfo"]

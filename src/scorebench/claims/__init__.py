"""Claims: a paper's result as an executable check on a run's result rows.

Suites carry ``[[claims]]`` tables (:mod:`.format` parses and checks them); :mod:`.measure`
measures each claim and gives its verdict (holds, fails, inconclusive) from 95% intervals;
:mod:`.runs` finds the claims of run directories and is the ``scorebench claims`` command.
``docs/claims.md`` describes the format and the verdict rules.
"""

from .format import QUANTITIES, Claim, ClaimError, Line, parse_claims, suite_labels
from .measure import VERDICTS, ClaimResult, GroupResult, claim_rows, difference, evaluate_claim, interval

__all__ = [
    "QUANTITIES",
    "VERDICTS",
    "Claim",
    "ClaimError",
    "ClaimResult",
    "GroupResult",
    "Line",
    "claim_rows",
    "difference",
    "evaluate_claim",
    "interval",
    "parse_claims",
    "suite_labels",
]

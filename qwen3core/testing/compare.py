"""Assertions: a candidate's greedy run against the reference's, under the dtype's tolerance."""

from __future__ import annotations

import torch

from qwen3core.testing.harness import GreedyRun
from qwen3core.testing.tolerances import Tolerance


def top_margin(logits: torch.Tensor) -> float:
    """Top-1 minus top-2 logit of one step [vocab]."""
    top = torch.topk(logits, 2).values
    return float(top[0] - top[1])


def assert_greedy_equivalent(reference: GreedyRun, candidate: GreedyRun, tolerance: Tolerance,
                             context: str = "", exact: GreedyRun | None = None) -> int:
    """Raise AssertionError describing the first disagreement; return the number of tokens
    compared. ``exact``: the float64 model's run along the reference's tokens; its logits let
    the tolerance follow the reference's own rounding error, and its routing margins mark
    where an MoE routing choice was a near-tie. See :mod:`qwen3core.testing.tolerances`."""
    where = f" [{context}]" if context else ""
    # Explicit raises, not assert statements: the suite must not vanish under python -O.
    if candidate.rows != reference.rows:
        raise AssertionError(f"rows {candidate.rows} != {reference.rows}{where}")
    if exact is not None and exact.rows != reference.rows:
        raise AssertionError(f"the exact run kept rows {exact.rows}, not {reference.rows}")
    compared = 0
    for row, (ref_tokens, cand_tokens) in enumerate(zip(reference.tokens, candidate.tokens)):
        for step, (ref_tok, cand_tok) in enumerate(zip(ref_tokens, cand_tokens)):
            ref_logits = reference.logits[row][step]
            cand_logits = candidate.logits[row][step]
            exact_logits = None if exact is None else exact.logits[row][step]
            allowed = tolerance.allowed(ref_logits, exact_logits)
            if exact is not None and exact.routing is not None and \
                    exact.routing[row][step] <= 2 * tolerance.relative:
                break  # a token of this row was routed on a near-tie: a legitimate fork
            diff = float((cand_logits - ref_logits).abs().max())
            if not diff <= allowed:  # also catches NaN
                raise AssertionError(
                    f"{candidate.where(row, step)}: logits differ from the reference by "
                    f"{diff:.3g} (allowed {allowed:.3g}); reference tokens "
                    f"{_short(ref_tokens)}, candidate {_short(cand_tokens)}{where}")
            compared += 1
            margin = top_margin(ref_logits)
            clear_cut = not tolerance.margin_exempt or margin > 2 * allowed
            if clear_cut and cand_tok != ref_tok:
                why = (f"margin {margin:.3g} > {2 * allowed:.3g}" if tolerance.margin_exempt
                       else "every token must match in this dtype")
                raise AssertionError(
                    f"{candidate.where(row, step)}: token {cand_tok} != reference {ref_tok} "
                    f"({why}); reference tokens {_short(ref_tokens)}, candidate "
                    f"{_short(cand_tokens)}{where}")
            elif cand_tok != ref_tok:
                break  # a legitimate fork: the rest of this row follows another context
        else:
            if len(cand_tokens) != len(ref_tokens):
                raise AssertionError(f"row {row}: lengths differ{where}")
    return compared


def _short(tokens: list[int], keep: int = 12) -> str:
    """A token list for a message: the first ``keep`` and a count of the rest."""
    if len(tokens) <= keep:
        return str(tokens)
    return f"{str(tokens[:keep])[:-1]}, ... ({len(tokens)} tokens)]"

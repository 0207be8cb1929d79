"""Ranking evaluation: full ranking over the catalogue, history masked, pessimistic ties."""

from recsae.eval.evaluator import (
    DEFAULT_KS,
    EVAL_PROTOCOLS,
    SCORE_BUDGET_BYTES,
    DotScores,
    EvalResult,
    ScoreFn,
    evaluate,
    mask_history,
    rows_within_budget,
    target_ranks,
    topk_items,
)

__all__ = ["DEFAULT_KS", "EVAL_PROTOCOLS", "SCORE_BUDGET_BYTES", "DotScores", "EvalResult", "ScoreFn", "evaluate",
           "mask_history", "rows_within_budget", "target_ranks", "topk_items"]

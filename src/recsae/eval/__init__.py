"""Ranking evaluation: full ranking over the catalogue, history masked, pessimistic ties."""

from recsae.eval.evaluator import (
    DEFAULT_KS,
    EVAL_PROTOCOLS,
    EvalResult,
    ScoreFn,
    evaluate,
    mask_history,
    target_ranks,
    topk_items,
)

__all__ = ["DEFAULT_KS", "EVAL_PROTOCOLS", "EvalResult", "ScoreFn", "evaluate", "mask_history", "target_ranks", "topk_items"]

"""``recsae explain``: latents explained in words by an LLM server, and the explanations scored.

The work is ``recsae.interpret.explain.explain_run``; this module checks options and prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer


def _fmt(x: Any) -> str:
    return "-" if x is None else f"{float(x):.2f}"


def summary_lines(result: dict[str, Any], top: int = 10) -> list[str]:
    """The figures of an ``explain.json``: each family's mean balanced accuracy with its interval
    side by side, then the best-predicted SAE latents with their explanations."""
    from recsae.interpret.explain import FAMILY_LABELS

    summary = result["summary"]
    cfg = result["config"]
    if not (summary.get("sae") or {}).get("n"):
        return [f"no SAE latent fires on enough rows to be explained and scored (each needs {cfg['n_examples']} fit "
                f"users and {cfg['n_firing']} firing and {cfg['n_silent']} silent held-out rows; fewer --examples or "
                "--probes lower the bar)"]
    lines = []
    for name, label in FAMILY_LABELS.items():
        s = summary.get(name)
        if not s or not s["n"]:
            continue
        auc = f", AUC {_fmt(s['mean_auc'])}" if s.get("mean_auc") is not None else ""
        lines.append(f"{label}: balanced accuracy {_fmt(s['mean_balanced_accuracy'])} "
                     f"[{_fmt(s['ci_low'])}, {_fmt(s['ci_high'])}] over {s['n']} (chance 0.50){auc}; "
                     f"above chance {s['share_above_chance']:.0%}")
    sae = sorted((r for r in result["latents"] if r["family"] == "sae"), key=lambda r: -r["balanced_accuracy"])
    if sae:
        lines.append(f"best-predicted SAE latents (of {len(sae)}):")
    for r in sae[:top]:
        lines.append(f"  latent {r['unit']:>5}  {_fmt(r['balanced_accuracy'])} [{_fmt(r['ci_low'])}, "
                     f"{_fmt(r['ci_high'])}]  {r['explanation'][:120]}")
    return lines


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the main app."""

    @app.command("explain")
    def explain_cmd(
        run: Annotated[Path, typer.Option("--run", help="Run folder (the --out of `recsae run`, with a finished SAE stage).")],
        llm_url: Annotated[str, typer.Option("--llm-url", help="API root of an OpenAI-compatible server "
                                             "(llama.cpp, vLLM, Ollama), e.g. http://localhost:8080/v1.")],
        llm_model: Annotated[str, typer.Option("--llm-model", help="Model name to request (the one the server serves).")],
        latent: Annotated[list[int] | None, typer.Option("--latent", help="Explain this latent (repeatable); "
                                                            "default: a seeded draw of --n-latents.")] = None,
        n_latents: Annotated[int, typer.Option("--n-latents", min=1, help="Latents explained per family.")] = 40,
        examples: Annotated[int, typer.Option("--examples", min=1, help="Strongest rows shown to explain a latent.")] = 10,
        probes: Annotated[int, typer.Option("--probes", min=1, help="Held-out rows scored per latent where it fires, "
                                            "and as many where it is silent.")] = 20,
        concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Requests in flight at once.")] = 4,
        answer_tokens: Annotated[int, typer.Option("--answer-tokens", min=1, help="Tokens allowed for each yes/no "
                                                   "answer; raise it (e.g. 1000) for a model that reasons first, "
                                                   "whose <think> block is dropped.")] = 3,
        logprobs: Annotated[bool, typer.Option("--logprobs", help="Ask for log-probabilities and also score by AUC.")] = False,
        controls: Annotated[bool, typer.Option("--controls/--no-controls", help="Also explain the controls the same "
                                               "way: the neurons, the untrained SAE and the untrained-model SAE (the "
                                               "shuffled control is always scored).")] = True,
        api_key_env: Annotated[str, typer.Option("--api-key-env", help="Environment variable with the API key, "
                                                 "if the server needs one.")] = "OPENAI_API_KEY",
        timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds to wait for one answer.")] = 120.0,
        seed: Annotated[int, typer.Option("--seed", help="Seeds the latents, rows and intervals.")] = 0,
        data_root: Annotated[Optional[Path], typer.Option("--data-root", help="Where the run's dataset lives now.")] = None,  # noqa: UP045
    ) -> None:
        """Explain latents in words through an LLM server, and score each explanation by how well
        it predicts, on held-out users, where the latent fires; beside shuffled explanations and
        the controls explained the same way (neurons, untrained SAE, untrained-model SAE).

        Writes OUT/explain.json (and updates OUT/report/index.html when the run has a report);
        every answer is cached in OUT/llm_cache, so a rerun (or a killed run) asks only what was
        not answered. Temperature 0.
        """
        from recsae.interpret.explain import ExplainConfig, explain_run
        from recsae.interpret.llm import LlmConfig
        from recsae.report import write_report
        from recsae.rundir import RunDir

        llm = LlmConfig(llm_url, llm_model, api_key_env=api_key_env, timeout_s=timeout, logprobs=logprobs)
        cfg = ExplainConfig(n_latents=n_latents, n_examples=examples, n_firing=probes, n_silent=probes,
                            concurrency=concurrency, answer_tokens=answer_tokens, seed=seed)
        result = explain_run(run, llm, cfg, latents=latent or None, data_root=data_root, controls=controls)
        for line in summary_lines(result):
            typer.echo(line)
        paths = RunDir(run)
        typer.echo(f"wrote {paths.explain}")
        if paths.report_page.is_file():  # the report shows the explanations: bring it up to date
            typer.echo(f"report: {write_report(run)}")

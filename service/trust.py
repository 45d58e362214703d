"""What an operator must know before trusting the numbers: random or collapsed weights, dev keys.

Computed once at start-up; reported in the log, in GET /readyz and as a banner in the console.
"""

from __future__ import annotations

from model.health import ModelHealth


def operator_warnings(dev_mode: bool, model_source: str, health: ModelHealth | None) -> list[dict[str, str]]:
    """[{code, message}] in plain words, most serious first; empty when nothing is wrong."""
    warnings = []
    if model_source == "random-init":
        warnings.append(
            {
                "code": "random_weights",
                "message": "The model has RANDOM weights: search scores and visitor counts mean nothing. "
                "Start the service with trained weights (REID_WEIGHTS).",
            }
        )
    elif health is not None and health.collapsed:
        warnings.append(
            {
                "code": "collapsed_model",
                "message": f"The model maps different people to nearly the same vector (mean similarity "
                f"{health.mean_similarity:.3f} on {health.probes} probe pictures): search scores and visitor "
                "counts mean nothing. Train it longer or use other weights.",
            }
        )
    if dev_mode:
        warnings.append(
            {
                "code": "dev_keys",
                "message": "Dev mode: the well-known dev API keys are accepted. Never expose this instance; "
                "create real keys with `reid keys create` and start without --dev.",
            }
        )
    return warnings

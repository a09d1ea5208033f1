"""Energy-resolved attributions of the inverse predictions (integrated gradients).

For an environment's spectra ``x [C, K]`` (channel mask ``m``) and a target output ``f`` (a
defect logit or an element's content logit), integrated gradients along the straight path from a
baseline ``x0`` (all-zero spectra with the same mask, i.e. "no features") give

    IG(x)[c, E] = (x - x0)[c, E] * mean_{a in (0, 1]} d f(x0 + a (x - x0)) / d x[c, E]

(``steps`` Riemann points). The completeness check ``sum IG = f(x) - f(x0)`` holds up to the
discretisation error and is reported as ``delta``. With an elemental quantification
(:mod:`gnnspec.quantification`), it is held fixed along the path (baseline included): the
attributions then say which spectral features move the prediction beyond what the amounts of
the elements already say.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch


def _targets(model: Any) -> list[tuple[str, str, int]]:
    return [("defect", d, i) for i, d in enumerate(model.cfg.defects)] + [
        ("content", e, i) for i, e in enumerate(model.cfg.content_elements)
    ]


def integrated_gradients(
    model: Any, spectra: dict[str, np.ndarray], steps: int = 32, quantification: dict[str, float] | None = None
) -> dict:
    """Attributions ``{target: [C_used, K]}`` for every defect logit and content logit
    (``quantification``: the sample's ``{element: amount}``, for models that read one)."""
    model.eval()
    x, mask = model.spectra_tensor(spectra)
    q = model.quantification_tensor(quantification, spectra)
    cov = model.coverage_tensor(spectra)
    x0 = torch.zeros_like(x)
    alphas = torch.linspace(1.0 / steps, 1.0, steps, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    path = (x0 + alphas * (x - x0)).detach().requires_grad_(True)  # [steps, C, K]
    props = model.predict_properties(
        model.encode_spectra(
            path, mask.expand(steps, -1), None if q is None else q.expand(steps, -1), None if cov is None else cov.expand(steps, -1, -1)
        )
    )
    with torch.no_grad():
        base = model.predict_properties(model.encode_spectra(x0, mask, q, cov))
    used = [i for i in range(mask.shape[1]) if bool(mask[0, i])]
    out: dict[str, Any] = {"channels": [model.cfg.channels[i] for i in used], "quantification_used": q is not None, "targets": {}}
    for kind, name, i in _targets(model):
        logits = props["defect_logits" if kind == "defect" else "content_logits"][:, i]
        (grad,) = torch.autograd.grad(logits.sum(), path, retain_graph=True)
        ig = ((x - x0)[0] * grad.mean(0)).detach()
        f_x = float(logits[-1].detach())
        f_0 = float(base["defect_logits" if kind == "defect" else "content_logits"][0, i])
        out["targets"][f"{kind}:{name}"] = {
            "attribution": ig[used].double().cpu().numpy(),
            "delta": float(ig.sum()) - (f_x - f_0),
            "value": f_x,
        }
    return out


def plot_attributions(result: dict, path: str | Path, targets: list[str] | None = None) -> None:
    """One panel per channel: attribution over energy for the chosen targets (default: defects)."""
    from matplotlib.figure import Figure

    from gnnspec.channels import CHANNELS

    names = targets or [t for t in result["targets"] if t.startswith("defect:")]
    chans = result["channels"]
    fig = Figure(figsize=(7, 1.9 * len(chans) + 0.6))
    axes = fig.subplots(len(chans), 1, squeeze=False)
    for r, ch in enumerate(chans):
        ax = axes[r, 0]
        for t in names:
            ax.plot(CHANNELS[ch].grid, result["targets"][t]["attribution"][r], label=t)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_ylabel(ch, fontsize=8)
    axes[-1, 0].set_xlabel("energy (eV)")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("integrated-gradient attributions (logit units per energy point)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)

"""TensorBoard output of a run: scalars, predicted-vs-FEFF spectra figures, embedding projector.

Only rank 0 writes (:class:`Board` is a no-op elsewhere). Figures use matplotlib's Agg backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gnnspec.channels import CHANNELS
from gnnspec.data import keys as K
from gnnspec.labels import DEFECTS
from gnnspec.models.environment_table import EnvironmentTable


class Board:
    """A SummaryWriter on rank 0, nothing on other ranks."""

    def __init__(self, log_dir: str | Path, enabled: bool = True):
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(log_dir))

    def scalars(self, values: dict[str, float], step: int, prefix: str = "") -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            if value is not None and np.isfinite(value):
                self.writer.add_scalar(prefix + key, float(value), step)

    def figure(self, tag: str, fig, step: int) -> None:
        if self.writer is not None:
            self.writer.add_figure(tag, fig, step, close=True)

    def embedding(self, tag: str, vectors: np.ndarray, metadata: list[list[str]], header: list[str], step: int) -> None:
        if self.writer is not None and len(vectors):
            self.writer.add_embedding(
                torch.as_tensor(vectors), metadata=metadata, metadata_header=header, tag=tag, global_step=step
            )

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _prepared(model, graph):
    p = next(model.parameters())
    g = graph.clone().to(p.device)
    g.pos, g.edge_shift = g.pos.to(p.dtype), g.edge_shift.to(p.dtype)
    return g


@torch.no_grad()
def spectra_figure(model, graph):
    """Predicted vs FEFF site spectra of ``graph``: one panel per channel (first labelled site)."""
    from matplotlib.figure import Figure

    was_training = model.training
    model.eval()
    g = _prepared(model, graph)
    labelled = g[K.SITE_Y_MASK].any(dim=1).nonzero(as_tuple=True)[0]
    out = model.forward_structure(g, absorbers=labelled, embed=False)
    model.train(was_training)
    mask = (g[K.SITE_Y_MASK][labelled] & out["spectra_mask"]).cpu().numpy()
    channels = list(model.cfg.channels)
    cols = 4
    rows = int(np.ceil(len(channels) / cols))
    fig = Figure(figsize=(3.2 * cols, 2.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for c, name in enumerate(channels):
        ax = axes[c // cols][c % cols]
        ax.set_title(name, fontsize=9)
        ok = np.nonzero(mask[:, c])[0]
        if len(ok) == 0:
            ax.text(0.5, 0.5, "no FEFF spectrum", ha="center", va="center", transform=ax.transAxes, fontsize=8)
            ax.set_axis_off()
            continue
        r = int(ok[0])
        e = CHANNELS[name].grid
        ax.plot(e, g[K.SITE_Y][labelled[r], c].float().cpu().numpy(), "k-", lw=1.2, label="FEFF")
        ax.plot(e, out["spectra"][r, c].float().cpu().numpy(), "r--", lw=1.2, label=f"model (site {int(labelled[r])})")
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    fig.supxlabel("energy (eV)", fontsize=9)
    fig.tight_layout()
    return fig


@torch.no_grad()
def environment_embeddings(model, graphs, limit: int) -> tuple[np.ndarray, list[list[str]], list[str]]:
    """Structure and spectrum embeddings of (about) ``limit`` environments each, with metadata rows."""
    from ase.data import chemical_symbols

    header = ["side", "centre", *DEFECTS, "structure"]
    was_training = model.training
    model.eval()
    table = EnvironmentTable(model, graphs, limit=limit)
    rows = table.with_spectra
    zs, zp = table.structure_embeddings(model, rows), table.spectrum_embeddings(model, rows)
    model.train(was_training)
    if rows.numel() == 0:
        return np.zeros((0, model.cfg.embedding.dim)), [], header
    info = [
        [chemical_symbols[int(z)], *(str(int(v)) for v in d), str(int(s))]
        for z, d, s in zip(table.centre_z[rows].tolist(), table.defects[rows].tolist(), table.sid[rows].tolist())
    ]
    vecs = np.concatenate([zs.double().cpu().numpy(), zp.double().cpu().numpy()])
    return vecs, [["structure", *r] for r in info] + [["spectra", *r] for r in info], header

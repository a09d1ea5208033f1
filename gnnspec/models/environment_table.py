"""Every environment of a list of structure graphs as one table, and its embeddings.

Wherever a whole split is embedded at once (the alignment stage, calibration and the support
check, the retrieval benchmark, TensorBoard's projector) the environments are gathered here,
in graph order, once:

* ``x [n, C, K]`` and ``mask [n, C]``: the FEFF environment spectra (means of member site
  spectra, see :mod:`gnnspec.structures.environments`) and which channels are present; or, with
  ``spectra_tier``, the forward model's environment spectra in that tier (every environment of
  an absorbing element gets them: the forward model as the encoder's simulator, for a tier
  whose FEFF runs are too few to give every environment its spectra);
* ``content [n, 5]``, ``defects [n, 2]``: the labels;
* ``sid [n]`` (structure id) and ``centre_z [n]`` (atomic number of the centre atom);
* with ``features=True``, ``features [n, F]``: the backbone features the structure-embedding
  projection reads (:meth:`gnnspec.models.heads.EnvironmentEmbedding.features`), so a frozen
  backbone runs once per structure and structure embeddings are one matrix product away.
"""

from __future__ import annotations

import torch

from gnnspec.data import keys as K
from gnnspec.quantification import channel_element_index, channel_fractions

CHUNK = 1024  # environments per encoder call


class EnvironmentTable:
    """Environments of ``graphs`` (see the module docstring); tensors on ``device``.

    ``limit``: stop after the graph that brings the environments with spectra to ``limit``.
    """

    def __init__(self, model, graphs, device=None, features: bool = True, limit: int | None = None, spectra_tier: int | None = None):
        p = next(model.parameters())
        device = p.device if device is None else device
        cols: dict[str, list[torch.Tensor]] = {k: [] for k in ("x", "mask", "content", "defects", "sid", "centre_z", "features")}
        n_with_spectra = 0
        with torch.no_grad():
            for i in range(len(graphs)):
                if limit is not None and n_with_spectra >= limit:
                    break
                g = graphs[i].clone().to(device)
                g.pos, g.edge_shift = g.pos.to(p.dtype), g.edge_shift.to(p.dtype)
                centre = g[K.ENV_CENTRE_INDEX]
                if features:
                    scalars = model.run_backbone(g)["node_scalars"]
                    cols["features"].append(model.env_embedding.features(scalars, g[K.ENV_MEMBER_INDEX], g[K.ENV_MEMBER_ENV], centre))
                if spectra_tier is None:
                    cols["x"].append(g[K.ENV_Y].to(p.dtype))
                    cols["mask"].append(g[K.ENV_Y_MASK])
                else:
                    predicted, have = model.environment_spectra(model.forward_structure(g, embed=False, tier=spectra_tier), g)
                    cols["x"].append(predicted.to(p.dtype))
                    cols["mask"].append(have)
                cols["content"].append(g[K.ENV_CONTENT].to(p.dtype))
                cols["defects"].append(g[K.ENV_DEFECTS].to(p.dtype))
                cols["sid"].append(torch.full((centre.numel(),), int(g[K.SID].reshape(-1)[0]), device=device))
                cols["centre_z"].append(g[K.Z][centre])
                n_with_spectra += int(cols["mask"][-1].any(dim=1).sum())
        if not cols["x"]:
            raise ValueError("no structures to tabulate")
        self.x, self.mask = torch.cat(cols["x"]), torch.cat(cols["mask"])
        self.content, self.defects = torch.cat(cols["content"]), torch.cat(cols["defects"])
        self.sid, self.centre_z = torch.cat(cols["sid"]), torch.cat(cols["centre_z"])
        self.features = torch.cat(cols["features"]) if features else None
        self.with_spectra = self.mask.any(dim=1).nonzero(as_tuple=True)[0]

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def structure_embeddings(self, model, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Unit structure embeddings ``[n, dim]`` of ``rows`` (default: all); needs ``features``."""
        if self.features is None:
            raise ValueError("this table was built without backbone features")
        f = self.features if rows is None else self.features[rows]
        return model.env_embedding.embed(f)

    def quantification(self, rows: torch.Tensor, model) -> torch.Tensor:
        """Exact elemental quantification ``[len(rows), C]`` of ``rows`` from their content."""
        return channel_fractions(self.content[rows], self.mask[rows], channel_element_index(model.cfg.channels))

    def spectrum_embeddings(self, model, rows: torch.Tensor | None = None, quantified: bool = False) -> torch.Tensor:
        """Unit spectrum embeddings ``[n, dim]`` of ``rows`` (default: those with spectra).

        ``quantified``: give the encoder the exact elemental quantification (:meth:`quantification`).
        """
        rows = self.with_spectra if rows is None else rows
        parts = [
            model.encode_spectra(self.x[r], self.mask[r], self.quantification(r, model) if quantified else None) for r in rows.split(CHUNK)
        ]
        return torch.cat(parts) if parts else self.x.new_zeros((0, model.cfg.embedding.dim))

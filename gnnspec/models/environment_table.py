"""Every environment of a list of structure graphs as one table, and its embeddings.

Wherever a whole split is embedded at once (the alignment stage, calibration and the support
check, the retrieval benchmark, TensorBoard's projector) the environments are gathered here,
in graph order, once (the data columns by :class:`gnnspec.data.environment_set.EnvironmentSet`,
kept as ``envs``):

* ``x [n, C, K]`` and ``mask [n, C]``: the FEFF environment spectra (means of member site
  spectra, see :mod:`gnnspec.structures.environments`) and which channels are present; or, with
  ``spectra_tier``, the forward model's environment spectra in that tier (every environment of
  an absorbing element gets them: the forward model as the encoder's simulator, for a tier
  whose FEFF runs are too few to give every environment its spectra). ``simulator`` says which
  forward model (:data:`SIMULATORS`): ``"own"``, the model's own trained tier head (what
  ``gnnspec train`` aligns on), or ``"ensemble"``, the model's prediction as ``gnnspec predict``
  gives it (:func:`gnnspec.models.forward_ensemble.ensemble_pass`: the mean of its forward
  members and linear tier heads); default: the one the encoder learned
  (:func:`encoder_simulator`);
* ``content [n, 5]``, ``defects [n, 2]``: the labels;
* ``sid [n]`` (structure id) and ``centre_z [n]`` (atomic number of the centre atom);
* with ``features=True``, ``features [n, F]``: the backbone features the structure-embedding
  projection reads (:meth:`gnnspec.models.heads.EnvironmentEmbedding.features`), so a frozen
  backbone runs once per structure and structure embeddings are one matrix product away.
"""

from __future__ import annotations

import torch

from gnnspec.data import keys as K
from gnnspec.data.environment_set import EnvironmentSet
from gnnspec.errors import InputError
from gnnspec.models.forward_ensemble import ensemble_pass
from gnnspec.quantification import channel_element_index, channel_fractions

CHUNK = 1024  # environments per encoder call
#: Which forward model simulates a tier's environment spectra (:class:`EnvironmentTable`), and how
#: reports name its spectra.
SIMULATED = {"own": "forward model", "ensemble": "forward ensemble"}
SIMULATORS = tuple(SIMULATED)


#: Checkpoint entry of an encoder realigned on the forward ensemble's spectra (:mod:`gnnspec.train.realign`).
REALIGNMENT = "realignment"


def checkpoint_simulator(ckpt: dict) -> str:
    """``"ensemble"`` when the checkpoint's encoder was realigned on its forward ensemble's spectra
    (a ``realignment`` entry), else ``"own"``."""
    return "ensemble" if ckpt.get(REALIGNMENT) else "own"


def encoder_simulator(model) -> str:
    """The forward model whose spectra the encoder learned: ``"ensemble"`` after ``gnnspec ensemble
    --realign`` (the checkpoint's ``realignment`` entry, :mod:`gnnspec.train.realign`), else
    ``"own"`` (the alignment stage of ``gnnspec train``, which has no ensemble yet)."""
    return getattr(model, "encoder_simulator", None) or "own"


class EnvironmentTable:
    """Environments of ``graphs`` (see the module docstring); tensors on ``device``.

    The data columns come from :class:`gnnspec.data.environment_set.EnvironmentSet` (``envs``);
    the table adds what needs the model. ``limit``: stop after the graph that brings the
    environments with FEFF spectra to ``limit`` (not with ``spectra_tier``).
    """

    def __init__(
        self,
        model,
        graphs,
        device=None,
        features: bool = True,
        limit: int | None = None,
        spectra_tier: int | None = None,
        simulator: str | None = None,
    ):
        if limit is not None and spectra_tier is not None:
            raise ValueError("limit counts environments with FEFF spectra: give it without spectra_tier")
        simulator = simulator or encoder_simulator(model)
        if simulator not in SIMULATORS:
            raise InputError(f"unknown simulator {simulator!r}: expected one of {', '.join(SIMULATORS)}")
        self.simulator = simulator
        p = next(model.parameters())
        device = p.device if device is None else device
        self.envs = EnvironmentSet.from_graphs(graphs, model.cfg.channels, limit=limit)
        predicted: dict[str, list[torch.Tensor]] = {"x": [], "mask": [], "features": []}
        if features or spectra_tier is not None:
            with torch.no_grad():
                for i in range(self.envs.structures):
                    g = graphs[i].clone().to(device)
                    g.pos, g.edge_shift = g.pos.to(p.dtype), g.edge_shift.to(p.dtype)
                    if features:
                        scalars = model.run_backbone(g)["node_scalars"]
                        predicted["features"].append(
                            model.env_embedding.features(scalars, g[K.ENV_MEMBER_INDEX], g[K.ENV_MEMBER_ENV], g[K.ENV_CENTRE_INDEX])
                        )
                    if spectra_tier is not None:
                        if simulator == "ensemble":
                            out = ensemble_pass(model, g, model.spectra_head.absorbers_of(g[K.Z]), spectra_tier)
                        else:
                            out = model.forward_structure(g, embed=False, tier=spectra_tier)
                        x, have = model.environment_spectra(out, g)
                        predicted["x"].append(x.to(p.dtype))
                        predicted["mask"].append(have)

        def column(a, dtype=None):
            return torch.as_tensor(a, device=device, dtype=dtype)

        if spectra_tier is None:
            self.x, self.mask = column(self.envs.y, p.dtype), column(self.envs.mask)
        else:
            self.x, self.mask = torch.cat(predicted["x"]), torch.cat(predicted["mask"])
        self.content, self.defects = column(self.envs.content, p.dtype), column(self.envs.defects, p.dtype)
        self.sid, self.centre_z = column(self.envs.sid), column(self.envs.centre_z)
        self.features = torch.cat(predicted["features"]) if features else None
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


#: Where the spectra that score an encoder come from (:func:`encoder_learned_tier`).
SPECTRA_SOURCES = ("auto", "feff", "model")


def encoder_learned_tier(model, source: str = "auto") -> str | None:
    """The forward-model tier whose environment spectra an evaluation of ``model``'s encoder feeds
    it, or None for the dataset's FEFF spectra in its base tier.

    ``auto``: ``model.encoder_spectra_tier`` when the encoder was aligned on the forward model's
    spectra of that tier (FEFF ran it on sampled sites only, too few to give every environment
    its spectra), else None: the encoder learned FEFF's. ``feff``: None. ``model``: that tier, or
    the model's base tier for an encoder that learned FEFF's spectra. This one rule decides the
    spectra of the calibration and support data, the training metrics, the robustness benchmark
    and ``library evaluate``.
    """
    if source not in SPECTRA_SOURCES:
        raise InputError(f"unknown spectra source {source!r}: expected one of {', '.join(SPECTRA_SOURCES)}")
    learned = getattr(model, "encoder_spectra_tier", None)
    if source == "feff" or (source == "auto" and learned is None):
        return None
    return learned or model.cfg.tiers[0]


def simulated_set(model, graphs, tier: str, simulator: str | None = None) -> EnvironmentSet:
    """The :class:`EnvironmentSet` of ``graphs`` with the forward model's environment spectra in
    ``tier`` as ``y``/``mask`` (every environment of an absorbing element), labels and members
    as FEFF's set has them: how a model whose encoder learned that tier is scored on a split
    whose FEFF runs in that tier cover only a few sites. ``simulator``: see :class:`EnvironmentTable`."""
    from dataclasses import replace

    table = EnvironmentTable(model, graphs, features=False, spectra_tier=model.cfg.tier_index(tier), simulator=simulator)
    return replace(table.envs, y=table.x.double().cpu().numpy(), mask=table.mask.cpu().numpy())

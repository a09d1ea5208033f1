"""The user-facing API of a trained model: spectra from structures, embeddings, inference.

Energies are absolute eV on the channel grids (:mod:`gnnspec.channels`); intensities are
normalised as in the data (unit mean over the grid). Every method runs without gradients in
eval mode on the model's device and dtype. Structures are anything
:func:`gnnspec.structures.read_structure` accepts (a path, a pymatgen ``Structure`` or
``Molecule``, ase ``Atoms``); a non-periodic cluster goes through the same model with zero
periodic shifts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gnnspec.channels import CHANNEL_NAMES, CHANNELS, normalise
from gnnspec.errors import InputError
from gnnspec.models.forward_ensemble import ensemble_pass
from gnnspec.spectra import Spectrum, grid_coverage, spectra_on_grids


class ModelAPI:
    """Methods mixed into :class:`gnnspec.models.joint.JointModel`."""

    #: The checkpoint's structure-support record (:mod:`gnnspec.models.structure_support`), set by
    #: :func:`gnnspec.models.factory.load_checkpoint`; None for a model built afresh.
    structure_support_record: dict | None = None
    #: Forward members whose spectra the predictions average (:mod:`gnnspec.models.forward_ensemble`),
    #: and the record of them (sources, calibrated spread); set by ``load_checkpoint``.
    forward_members: list | None = None
    forward_ensemble_record: dict | None = None

    # -- helpers ---------------------------------------------------------------------
    def _param(self) -> torch.Tensor:
        return next(self.parameters())

    def _graph(self, structure: Any, environments: bool):
        from torch_geometric.data import Data

        from gnnspec.data.dataset import structure_graph
        from gnnspec.graphs import periodic_edges
        from gnnspec.structures import read_structure

        s = read_structure(structure)
        p = self._param()
        if environments:
            g = structure_graph(s, self.cfg.backbone.cutoff, channels=tuple(self.cfg.channels))
        else:
            edge_index, shifts = periodic_edges(s, self.cfg.backbone.cutoff)
            g = Data(
                pos=torch.tensor(s.cart_coords),
                z=torch.tensor([site.specie.Z for site in s], dtype=torch.long),
                edge_index=torch.from_numpy(edge_index),
                edge_shift=torch.tensor(shifts),
                num_nodes=len(s),
            )
        g.pos = g.pos.to(p.dtype)
        g.edge_shift = g.edge_shift.to(p.dtype)
        return s, g.to(p.device)

    # -- forward: structure -> spectra -------------------------------------------------
    @torch.no_grad()
    def predict_site_spectra(
        self,
        structure: Any,
        sites: list[int] | int,
        return_contributions: bool = False,
        tier: str | None = None,
        return_spread: bool = False,
    ):
        """Spectra of every channel of each site's element: ``{site: {channel: (energy_eV, intensity)}}``.

        ``tier``: the FEFF tier to predict (one of ``cfg.tiers``; default the model's highest
        fidelity, the last). Contributions sum to the spectrum in every tier. With a forward
        ensemble (:mod:`gnnspec.models.forward_ensemble`) spectra and contributions are the
        member means.

        With ``return_contributions`` also returns ``{site: {channel: {"atom_index" [n],
        "distance" [n] (Angstrom), "intensity" [n, K]}}}``: the per-atom contributions, which
        sum to the site's spectrum (the absorber itself is the first row). With
        ``return_spread`` also (last) ``{site: {channel: spread [K]}}``: the forward ensemble's
        calibrated spread at each energy (empty without an ensemble).
        """
        self.eval()
        try:
            tier_row = self.cfg.tier_index(tier)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        sites = [sites] if isinstance(sites, int) else [int(s) for s in sites]
        s, g = self._graph(structure, environments=False)
        table = self.spectra_head.table
        for site in sites:
            if not 0 <= site < len(s):
                raise InputError(f"site {site} is out of range: the structure has {len(s)} sites (0-{len(s) - 1})")
            if not bool(table[g.z[site]].any()):
                have = sorted({CHANNELS[c].element for c in self.cfg.channels})
                raise InputError(f"site {site} is {s[site].specie.symbol}, which has no channel; absorbers: {', '.join(have)}")
        absorbers = torch.tensor(sorted(set(sites)), dtype=torch.long, device=g.z.device)
        out = ensemble_pass(self, g, absorbers, tier_row)
        row = {int(a): i for i, a in enumerate(absorbers.tolist())}
        spectra = out["spectra"].double().cpu().numpy()
        mask = out["spectra_mask"].cpu().numpy()
        result, contributions = {}, {}
        spread = _spread_by_site(out, sites, row, self.cfg.channels) if return_spread else {}
        for site in sites:
            r = row[site]
            result[site] = {
                name: (CHANNELS[name].grid.copy(), spectra[r, c]) for c, name in enumerate(self.cfg.channels) if mask[r, c]
            }
            if return_contributions:
                contributions[site] = {}
                for c, name in enumerate(self.cfg.channels):
                    if not mask[r, c]:
                        continue
                    sel = (out["contribution_absorber"] == r) & (out["contribution_channel"] == c)
                    contributions[site][name] = {
                        "atom_index": out["contribution_atom"][sel].cpu().numpy(),
                        "distance": out["contribution_distance"][sel].double().cpu().numpy(),
                        "intensity": out["contributions"][sel].double().cpu().numpy(),
                    }
        answer = (result,) + ((contributions,) if return_contributions else ()) + ((spread,) if return_spread else ())
        return answer if len(answer) > 1 else result

    @torch.no_grad()
    def predict_many(
        self,
        structures: list[Any],
        sites: list[list[int] | None] | None = None,
        batch_size: int = 8,
        tier: str | None = None,
        return_spread: bool = False,
        return_edges: bool = False,
    ):
        """:meth:`predict_site_spectra` for many structures, ``batch_size`` structures per forward pass.

        ``sites[i]``: the sites of structure i to predict (None: every site with a channel); the
        result's item i is ``{site: {channel: (energy_eV, intensity)}}`` as for one structure, and
        equals it (same model, same numbers up to float rounding). Batching is what makes a GPU
        (or many CPU cores) worth it: one small graph per call leaves them idle. With
        ``return_spread``: ``(results, spreads)``, ``spreads[i]`` ``{site: {channel: spread [K]}}``
        as in :meth:`predict_site_spectra`. With ``return_edges`` also (last) ``edges[i]``
        ``{site: {channel: edge record}}`` for the step-edge channels: the predicted spectrum's
        half-step energy and the forward models' agreement on it
        (:mod:`gnnspec.models.predicted_edges`).
        """
        from torch_geometric.data import Batch

        from gnnspec.models.predicted_edges import KEY as EDGE_SPREAD
        from gnnspec.models.predicted_edges import edges_by_site

        self.eval()
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        try:
            tier_row = self.cfg.tier_index(tier)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        sites = [None] * len(structures) if sites is None else list(sites)
        if len(sites) != len(structures):
            raise InputError(f"{len(structures)} structures but {len(sites)} site lists")
        table = self.spectra_head.table
        results: list[dict] = []
        spreads: list[dict] = []
        edges: list[dict] = []
        for start in range(0, len(structures), batch_size):
            graphs, wanted = [], []
            for s_in, want in zip(structures[start : start + batch_size], sites[start : start + batch_size]):
                s, g = self._graph(s_in, environments=False)
                have = table[g.z].any(dim=-1)
                if want is None:
                    want = [int(i) for i in torch.nonzero(have).flatten().tolist()]
                for site in want:
                    if not 0 <= int(site) < len(s) or not bool(have[int(site)]):
                        raise InputError(f"structure {start + len(graphs)}: site {site} is out of range or has no channel")
                graphs.append(g)
                wanted.append(sorted({int(x) for x in want}))
            batch = Batch.from_data_list(graphs)
            offsets = batch.ptr[:-1].tolist()
            absorbers = torch.tensor([o + x for o, w in zip(offsets, wanted) for x in w], dtype=torch.long, device=batch.z.device)
            out = ensemble_pass(self, batch, absorbers, tier_row)
            spectra = out["spectra"].double().cpu().numpy()
            mask = out["spectra_mask"].cpu().numpy()
            r = 0
            for w in wanted:
                item, rows = {}, {}
                for site in w:
                    item[site] = {name: (CHANNELS[name].grid.copy(), spectra[r, c]) for c, name in enumerate(self.cfg.channels) if mask[r, c]}
                    rows[site] = r
                    r += 1
                results.append(item)
                if return_spread:
                    spreads.append(_spread_by_site(out, w, rows, self.cfg.channels))
                if return_edges:
                    calibration = (self.forward_ensemble_record or {}).get(EDGE_SPREAD)
                    edges.append(edges_by_site(out, w, rows, self.cfg.channels, self.cfg.tiers[tier_row], calibration))
        answer = (results,) + ((spreads,) if return_spread else ()) + ((edges,) if return_edges else ())
        return answer if len(answer) > 1 else results

    def predict_edges(self, structure: Any, sites: list[int] | int, tier: str | None = None) -> dict[int, dict[str, dict]]:
        """Edge positions of ``sites``' step-edge channels (the transition metals' K edges) in
        ``tier`` (default: the model's highest fidelity): ``{site: {channel: {"edge_eV", ...}}}``,
        with the forward models' spread and the measured-scale estimate where the model and the
        offset table have them (:mod:`gnnspec.models.predicted_edges`)."""
        sites = [sites] if isinstance(sites, int) else [int(s) for s in sites]
        return self.predict_many([structure], [sites], tier=tier, return_edges=True)[1][0]

    def channel_skill(self, tier: str | None = None) -> dict[str, dict]:
        """How well each channel of ``tier`` (default: the highest fidelity), as this model predicts
        it, matched FEFF on the held-out test sites of its dataset: ``{channel: {"r2", "r2_low",
        "r2_high", "cosine", "n_sites"}}``, empty where the checkpoint holds no score
        (:mod:`gnnspec.models.channel_skill`)."""
        from gnnspec.models.channel_skill import channel_skill

        return channel_skill(self, tier)

    def predict_spectra(self, structure: Any, site: int, tier: str | None = None) -> dict:
        """Spectra of every channel of ``site``'s element in ``tier`` (default: the model's highest
        fidelity): ``{channel: (energy_eV, intensity)}``."""
        return self.predict_site_spectra(structure, [int(site)], tier=tier)[int(site)]

    def structure_support(self, structure: Any, sites: list[int] | int, embeddings: np.ndarray | None = None) -> dict:
        """Whether each of ``sites`` lies inside what the model learned: elements within
        ``cfg.backbone.cutoff`` Angstrom never seen in training, and the cosine of the site's
        structure embedding to its nearest training environment against the validation 1st
        percentile. A plain JSON-able dict; see :func:`gnnspec.models.structure_support.structure_support`."""
        from gnnspec.models.structure_support import structure_support

        return structure_support(self, structure, sites, embeddings)

    # -- embeddings ----------------------------------------------------------------------
    @torch.no_grad()
    def embed_environments(self, structure: Any) -> np.ndarray:
        """Unit structure embeddings ``[n_sites, dim]``: row i is the environment centred on site i."""
        self.eval()
        _, g = self._graph(structure, environments=True)
        out = self.forward_structure(g, embed=True, spectra=False)
        return out["structure_embedding"].double().cpu().numpy()

    def spectra_tensor(self, spectra: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """``{channel: intensity on its grid}`` -> normalised ``[1, C, K]`` and mask ``[1, C]``.

        A value may also be a :class:`gnnspec.spectra.Spectrum` (absolute eV, any sampling), such as
        what :func:`gnnspec.spectra.read_spectra` returns; it is mapped onto the channel grid first.
        """
        if not spectra:
            raise InputError("no spectra given; at least one channel is needed")
        n_e = self.cfg.n_energy
        x = np.zeros((1, len(self.cfg.channels), n_e))
        mask = np.zeros((1, len(self.cfg.channels)), dtype=bool)
        for name, intensity in spectra.items():
            if name not in self.cfg.channels:
                raise InputError(f"unknown channel {name!r}; the model knows: {', '.join(self.cfg.channels)}")
            if isinstance(intensity, Spectrum):
                intensity = spectra_on_grids({name: intensity}, source=name)[0][CHANNEL_NAMES.index(name)]
            y = np.asarray(intensity, dtype=np.float64).reshape(-1)
            if y.shape[0] != n_e:
                raise InputError(f"{name}: {y.shape[0]} intensities, but the channel grid has {n_e} points")
            if not np.all(np.isfinite(y)):
                raise InputError(f"{name}: intensities must be finite numbers")
            c = self.cfg.channels.index(name)
            try:
                x[0, c] = normalise(CHANNELS[name], y)
            except ValueError as exc:
                raise InputError(str(exc)) from None
            mask[0, c] = True
        p = self._param()
        return torch.tensor(x, dtype=p.dtype, device=p.device), torch.tensor(mask, device=p.device)

    @staticmethod
    def measured_coverage(spectra: dict[str, Any], coverage: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """``{channel: bool [K]}``: the grid energies each of ``spectra`` measured. ``coverage``, as
        :func:`gnnspec.spectra.grid_coverage` gives it for the measurement, wins (needed when
        ``spectra`` are already on the grid); the rest is taken from ``spectra``'s own energies."""
        return {**grid_coverage(spectra), **(coverage or {})}

    def coverage_tensor(self, spectra: dict[str, Any], coverage: dict[str, np.ndarray] | None = None) -> torch.Tensor | None:
        """Which grid energies ``spectra`` measured (:meth:`measured_coverage`), ``[1, C, K]`` bool,
        for an encoder that reads it (``cfg.encoder.coverage``); None for one that does not."""
        if not self.encoder.takes_coverage:
            return None
        cov = self.measured_coverage(spectra, coverage)
        rows = [np.asarray(cov[name], dtype=bool) if name in cov else np.ones(self.cfg.n_energy, dtype=bool) for name in self.cfg.channels]
        return torch.tensor(np.stack(rows)[None], device=self._param().device)

    @property
    def takes_quantification(self) -> bool:
        """Whether the spectrum encoder reads an elemental quantification (:mod:`gnnspec.quantification`)."""
        return self.encoder.takes_quantification

    def quantification_tensor(self, quantification: dict[str, float] | None, spectra: dict[str, Any]) -> torch.Tensor | None:
        """``{element: amount}`` -> the encoder's ``[1, C]`` input for ``spectra``'s channels (None stays None)."""
        if quantification is None:
            return None
        if not self.takes_quantification:
            raise InputError("this model was trained without an elemental-quantification input; query it without one")
        from gnnspec.quantification import from_mapping

        q = from_mapping(quantification, self.cfg.channels, list(spectra), "quantification")
        p = self._param()
        return q[None].to(p.device, p.dtype)

    @torch.no_grad()
    def embed_spectra(
        self, spectra: dict[str, Any], quantification: dict[str, float] | None = None, coverage: dict[str, np.ndarray] | None = None
    ) -> np.ndarray:
        """Unit embedding ``[dim]`` of an environment's spectra ``{channel: intensity on the channel grid}``.

        ``quantification``: optional ``{element: amount}`` of the same sample (only ratios matter;
        every present channel's element needs one); see :mod:`gnnspec.quantification`.
        ``coverage``: the grid energies each channel measured (:meth:`coverage_tensor`).
        """
        self.eval()
        x, mask = self.spectra_tensor(spectra)
        q, cov = self.quantification_tensor(quantification, spectra), self.coverage_tensor(spectra, coverage)
        return self.encode_spectra(x, mask, q, cov)[0].double().cpu().numpy()

    @torch.no_grad()
    def infer(
        self, spectra: dict[str, Any], quantification: dict[str, float] | None = None, coverage: dict[str, np.ndarray] | None = None
    ) -> dict:
        """Element content and defect probabilities of the environment that gave ``spectra``.

        Returns ``{"element_content": {"Li": f, ...}, "defects": {"o_vacancy": p, "antisite": p},
        "channels_used": [...], "quantification_used": bool, "grid_coverage": {channel: f},
        "coverage_used": bool}`` (fractions sum to 1; probabilities in [0, 1]; ``grid_coverage``: the
        fraction of each used channel's grid the spectrum measured, :func:`gnnspec.spectra.grid_coverage`;
        ``coverage_used``: whether the encoder was told which energies are missing, else it read
        the flat-extended spectrum). ``quantification``, ``coverage``: as in :meth:`embed_spectra`.
        """
        self.eval()
        x, mask = self.spectra_tensor(spectra)
        covered = self.measured_coverage(spectra, coverage)
        q, cov = self.quantification_tensor(quantification, spectra), self.coverage_tensor(spectra, covered)
        content, defects = self.property_answers(self.encode_spectra(x, mask, q, cov))
        content, defects = content[0], defects[0]
        return {
            "element_content": {el: float(v) for el, v in zip(self.cfg.content_elements, content)},
            "defects": {name: float(v) for name, v in zip(self.cfg.defects, defects)},
            "channels_used": [c for c in self.cfg.channels if c in spectra],
            "quantification_used": quantification is not None,
            "grid_coverage": {c: float(np.mean(covered[c])) for c in self.cfg.channels if c in spectra},
            "coverage_used": cov is not None,
        }


def _spread_by_site(out: dict, sites: list[int], row: dict[int, int], channels: list[str]) -> dict[int, dict[str, np.ndarray]]:
    """``{site: {channel: spread [K]}}`` of a forward pass with an ensemble's ``spectra_spread``; empty without."""
    if "spectra_spread" not in out:
        return {}
    spread, mask = out["spectra_spread"].double().cpu().numpy(), out["spectra_mask"].cpu().numpy()
    return {site: {name: spread[row[site], c] for c, name in enumerate(channels) if mask[row[site], c]} for site in sites}

"""A query's calibrated energies on the energy scale the model's encoder was trained on.

``gnnspec convert --energy absolute|reference`` keeps a measurement's calibrated energies, so
edge positions (oxidation states) survive. The encoder, however, learned FEFF's energies of
one tier, which sit a few eV off per edge (:mod:`gnnspec.edge_offsets`). Before inference each
such channel is moved by ``-offset`` of its channel in the encoder's tier, one constant per
channel: chemical shifts between samples are kept. Channels converted with ``--energy onset``
(aligned to the channel's expected onset, as EELS is by default) and channels without a fitted
offset are left as they are; the record says which was done and why.
"""

from __future__ import annotations

from collections.abc import Mapping

from gnnspec.edge_offsets import EdgeOffset, read_edge_offsets
from gnnspec.spectra import SpectraSet, Spectrum

#: convert's energy modes that keep calibrated absolute energies (gnnspec.measured.convert.ENERGY_CHOICES).
CALIBRATED_MODES = ("absolute", "reference")


def encoder_tier(path) -> str:
    """The FEFF tier of the spectra the encoder of the checkpoint at ``path`` was trained on: the
    alignment stage's ``spectra_tier`` when it trained on forward-model spectra of a higher tier,
    else the base tier (the first of the model's ``tiers``)."""
    from gnnspec.models.factory import encoder_spectra_tier, read_checkpoint

    ckpt = read_checkpoint(path)
    return encoder_spectra_tier(ckpt) or (ckpt["model_config"].get("tiers") or ["fast"])[0]


def shifted(spectra: SpectraSet, shifts: Mapping[str, float]) -> SpectraSet:
    """A copy of ``spectra`` (quantification kept) with ``shifts[channel]`` eV added to each named channel's energies."""
    moved = {name: Spectrum(name, sp.energy + shifts.get(name, 0.0), sp.intensity) for name, sp in spectra.items()}
    return SpectraSet(moved, quantification=spectra.quantification)


def energy_shifts(
    meta: Mapping, channels: list[str], tier: str, offsets: Mapping[tuple[str, str], EdgeOffset] | None = None
) -> tuple[dict[str, float], dict[str, dict]]:
    """Shifts (eV, added to each channel's energies) and the per-channel record for ``infer``'s output.

    ``meta``: the spectra file's meta (``meta["channels"][name]["energy"]["mode"]`` as convert
    writes it; a file without it, such as simulated spectra, is taken as already on FEFF's scale).
    """
    offsets = read_edge_offsets() if offsets is None else offsets
    per_channel = meta.get("channels") if isinstance(meta.get("channels"), Mapping) else {}
    shifts, record = {}, {}
    for name in channels:
        energy = (per_channel.get(name) or {}).get("energy") or {}
        mode = energy.get("mode") if isinstance(energy, Mapping) else None
        if mode not in CALIBRATED_MODES:
            why = "aligned to the channel onset by convert" if mode == "onset" else "no calibrated energies recorded (taken as FEFF's scale)"
            record[name] = {"shift_eV": 0.0, "reason": why}
            continue
        o = offsets.get((name, tier))
        if o is None:
            record[name] = {"shift_eV": 0.0, "reason": f"no edge offset fitted for {name} in tier {tier}: calibrated energies used as they are"}
            continue
        shifts[name] = -o.offset_eV
        record[name] = {
            "shift_eV": -o.offset_eV,
            "reason": f"calibrated ({mode}) energies moved onto FEFF tier {tier}'s scale",
            "offset_spread_eV": None if o.spread_eV != o.spread_eV else o.spread_eV,
            "fitted_on": list(o.compounds),
        }
    return shifts, record

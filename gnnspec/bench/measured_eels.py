"""FEFF tiers against the measured NMC STEM-EELS: does a tier look like a measurement, and is ``scf`` converged enough?

The measured spectra are the shared STEM-EELS of a Si-doped NMC cathode
(``shared/data/experimental_eels_nmc``: O K and the Mn, Co, Ni L2,3 edges, 0.3 eV channels,
300 kV; composition not recorded). The simulated ones are FEFF10 runs at one site per edge of an
ideal NMC111 supercell (:data:`SAMPLE`: :func:`gnnspec.structures.nmc.generate_nmc`, 3 x 3 x 1,
Li 1.0, no relaxation; the first site of the element), in every tier of
:mod:`gnnspec.simulate.presets` asked for (``fast``, ``scf``, ``scf6``).

Method, the same for every tier and edge:

* measured: ``gnnspec convert`` of the edge file (O K, Mn L2,3, Ni L2,3) with the zero-loss file (:func:`measured_edge`):
  its background removed where it has one, its onset aligned to the channel's expected onset,
  on the channel grid (0.5 eV), unit mean;
* simulated: the raw FEFF run spectra (an L2,3 edge: the L3 and the L2 run summed, each on its
  own absolute axis, :func:`gnnspec.channels.assemble`) on a 0.1 eV grid, broadened by a Gaussian
  of the measured zero-loss FWHM (2.4 eV), then moved by the rigid shift that best matches the
  measurement (:data:`SHIFT_RANGE_EV`, 0.1 eV steps): the measured axis keeps no absolute energy
  (the core-loss files were not recorded with the zero-loss offset), so only the shape is scored;
* score: Spearman rank correlation of the two over the first :data:`WINDOW_EV` of the edge (from
  2 eV below the measured onset), at the best shift; the shift itself is reported.

FEFF spectra are cached per tier and edge in the JSON beside the report (``--cache``), so a run
resumes and a new tier adds its runs only. Run: ``python -m gnnspec.bench.measured_eels --out
benchmarks/measured_eels.md`` (``--tiers fast scf``: minutes; ``scf6``: about an hour of CPU).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.stats import spearmanr

from gnnspec.channels import Channel, assemble, get_channel
from gnnspec.instrument import sigma_from_fwhm

EELS_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "experimental_eels_nmc"
#: Measured file of each channel (inside :data:`EELS_DIR`), and the zero-loss file.
#: (Co_edge.msa is not among them: its counts start above the Co L3 edge, at 800 eV.)
EDGE_FILES = {"O-K-eels": "oxygen_edge.msa", "Mn-L23-eels": "Mn_edge.msa", "Ni-L23-eels": "Ni_edge.msa"}
ZERO_LOSS = "zero_loss.msa"
TIERS = ("fast", "scf", "scf6")
#: Scored part of each edge: from 2 eV below the measured onset to this many eV above it.
WINDOW_EV = 45.0
#: Rigid shifts (eV) scanned for the best match.
SHIFT_RANGE_EV = (-20.0, 20.0)
#: The simulated spectra's working grid around the tabulated edge (eV, relative) and its step.
SIM_WINDOW_EV, SIM_STEP_EV = (-40.0, 100.0), 0.1


def sample_structure():
    """The ideal NMC111 supercell whose sites are simulated (:data:`SAMPLE` parameters)."""
    from gnnspec.structures.nmc import NMCParams, generate_nmc

    return generate_nmc(NMCParams(seed=0)).structure


SAMPLE = "ideal NMC111, 3 x 3 x 1 supercell, Li 1.0, seed 0 (gnnspec.structures.nmc), first site of the element"


def measured_edge(channel: str, eels_dir: Path = EELS_DIR) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The measured edge on its channel grid: ``(grid eV, unit-mean intensity, onset eV, zero-loss FWHM eV)``."""
    from gnnspec.measured.convert import convert_measured

    spectra, meta = convert_measured([(eels_dir / EDGE_FILES[channel], channel)], zero_loss=eels_dir / ZERO_LOSS, energy="onset")
    onset = meta["channels"][channel]["alignment"]["onset_eV"] + meta["channels"][channel]["alignment"]["shift_eV"]
    return np.asarray(spectra[channel].energy), np.asarray(spectra[channel].intensity), float(onset), float(meta["zero_loss"]["fwhm_eV"])


def simulate(channel: str, tier: str) -> dict:
    """FEFF10 raw run spectra of ``channel`` at the sample's first site of its element in ``tier``."""
    from gnnspec.simulate.runner import run_feff_site

    structure = sample_structure()
    element = get_channel(channel).element
    site = next(i for i, s in enumerate(structure) if s.specie.symbol == element)
    with tempfile.TemporaryDirectory() as tmp:
        runs = run_feff_site(structure, site, [channel], preset=tier, log_path=Path(tmp) / "feff.log")
    return {
        "site": site,
        "runs": {name: {"energy": s.energy.tolist(), "intensity": s.intensity.tolist(), "seconds": s.seconds} for name, s in runs.items()},
        "preset_hash": next(iter(runs.values())).preset_hash,
        "feff_version": next(iter(runs.values())).feff_version,
    }


def broadened(channel: str, runs: dict, fwhm_ev: float) -> tuple[np.ndarray, np.ndarray]:
    """The channel's raw FEFF spectrum (runs summed) on the working grid, broadened by ``fwhm_ev``."""
    ch = get_channel(channel)
    wide = Channel(ch.element, ch.edge, ch.modality, *SIM_WINDOW_EV, SIM_STEP_EV)
    y = assemble(wide, {name: (np.asarray(r["energy"]), np.asarray(r["intensity"])) for name, r in runs.items()})
    if fwhm_ev <= 0.0:
        return wide.grid, y
    return wide.grid, gaussian_filter1d(y, sigma_from_fwhm(fwhm_ev) / SIM_STEP_EV, mode="nearest")


def best_match(grid: np.ndarray, measured: np.ndarray, onset: float, sim_energy: np.ndarray, sim: np.ndarray) -> dict:
    """Spearman correlation over the scored window at the rigid shift (added to the simulated
    energies) that maximises it."""
    window = (grid >= onset - 2.0) & (grid <= onset + WINDOW_EV)
    best = {"spearman": -np.inf, "shift_eV": 0.0}
    for shift in np.arange(SHIFT_RANGE_EV[0], SHIFT_RANGE_EV[1] + 1e-9, SIM_STEP_EV):
        if sim_energy[0] + shift > grid[window][0] or sim_energy[-1] + shift < grid[window][-1]:
            continue  # the simulated spectrum must cover the whole window
        rho = float(spearmanr(np.interp(grid[window], sim_energy + shift, sim), measured[window]).statistic)
        if rho > best["spearman"]:
            best = {"spearman": rho, "shift_eV": float(shift)}
    return {**best, "window_eV": [float(grid[window][0]), float(grid[window][-1])]}


def run_missing(cache: dict, channels: list[str], tiers: list[str], workers: int, write) -> None:
    """Compute the (tier, channel) FEFF runs ``cache`` lacks, the costliest tiers first; each is
    written (``write()``) as it finishes, so an interrupted run resumes."""
    todo = [(t, c) for t in sorted(tiers, key=TIERS.index, reverse=True) for c in channels if f"{t}|{c}" not in cache]
    with cf.ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(simulate, c, t): (t, c) for t, c in todo}
        for fut in cf.as_completed(futures):
            t, c = futures[fut]
            cache[f"{t}|{c}"] = fut.result()
            write()
            print(f"{c} {t}: {sum(r['seconds'] for r in cache[f'{t}|{c}']['runs'].values()):.0f} s of FEFF", flush=True)


def score(cache: dict, channels: list[str], tiers: list[str], eels_dir: Path = EELS_DIR) -> list[dict]:
    """One row per channel and tier in ``cache``: Spearman at the best shift, the shift, FEFF seconds."""
    rows = []
    for channel in channels:
        grid, measured, onset, fwhm = measured_edge(channel, eels_dir)
        for tier in tiers:
            entry = cache.get(f"{tier}|{channel}")
            if entry is None:
                continue
            energy, sim = broadened(channel, entry["runs"], fwhm)
            rows.append(
                {
                    "channel": channel,
                    "tier": tier,
                    "site": entry["site"],
                    "broadening_fwhm_eV": fwhm,
                    "feff_seconds": sum(r["seconds"] for r in entry["runs"].values()),
                    "runs": sorted(entry["runs"]),
                    **best_match(grid, measured, onset, energy, sim),
                }
            )
    return rows


def render(rows: list[dict], caption: str) -> str:
    tiers = list(dict.fromkeys(r["tier"] for r in rows))
    by = {(r["channel"], r["tier"]): r for r in rows}
    lines = [
        "# FEFF tiers against the measured NMC STEM-EELS",
        "",
        f"*{caption}*",
        "",
        f"Simulated: {SAMPLE}. Measured: `shared/data/experimental_eels_nmc` (Si-doped NMC, 300 kV). Each FEFF spectrum "
        f"(an L2,3 edge: its L3 and L2 runs summed) broadened by the measured zero-loss FWHM "
        f"({rows[0]['broadening_fwhm_eV']:.2f} eV) and moved by the rigid shift that matches best; Spearman rank correlation "
        f"over the first {WINDOW_EV:.0f} eV of the edge (`gnnspec/bench/measured_eels.py`). FEFF s: wall seconds of the site's runs "
        "as they ran here, on cores shared with other jobs (an L2,3 edge's L2 run on its L3 run's SCF where the tier shares it).",
        "",
        "| edge | " + " | ".join(f"{t}: Spearman / shift (eV) / FEFF s" for t in tiers) + " |",
        "| --- | " + " | ".join("---" for _ in tiers) + " |",
    ]
    for channel in dict.fromkeys(r["channel"] for r in rows):
        cells = []
        for t in tiers:
            r = by.get((channel, t))
            cells.append("-" if r is None else f"{r['spearman']:.3f} / {r['shift_eV']:+.1f} / {r['feff_seconds']:.0f}")
        lines.append(f"| {channel} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gnnspec.bench.measured_eels", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="benchmarks/measured_eels.md", help="Markdown report (default: %(default)s)")
    p.add_argument("--cache", default=None, help="JSON of FEFF spectra and rows (default: the report's name with .json)")
    p.add_argument("--tiers", nargs="+", default=list(TIERS), choices=TIERS)
    p.add_argument("--channels", nargs="+", default=list(EDGE_FILES), choices=list(EDGE_FILES))
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    if not (EELS_DIR / ZERO_LOSS).exists():
        print(f"error: {EELS_DIR.resolve()}: the measured NMC EELS is not there (shared/data/experimental_eels_nmc)", file=sys.stderr)
        return 2
    out = Path(args.out)
    cache_path = Path(args.cache) if args.cache else out.with_suffix(".json")
    stored = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    cache = stored.get("feff", {})

    def write() -> None:
        cache_path.write_text(json.dumps({**stored, "feff": cache}) + "\n")

    run_missing(cache, args.channels, args.tiers, args.workers, write)
    rows = score(cache, args.channels, args.tiers)
    from gnnspec.bench import current_commit

    commit = current_commit()
    stored["rows"] = rows
    write()
    out.write_text(render(rows, f"python -m gnnspec.bench.measured_eels at commit {commit}"))
    for r in rows:
        print(f"{r['channel']:12s} {r['tier']:5s} Spearman {r['spearman']:.3f} shift {r['shift_eV']:+.1f} eV  FEFF {r['feff_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

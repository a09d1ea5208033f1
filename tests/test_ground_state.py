"""One SCF per site in the scf tier: real FEFF10 runs on a small MnO6 cluster (about a minute
in all), FEFF's pot.bin read field by field, and the build's and the farm's grouping of runs."""

import importlib.util

import numpy as np
import pytest

from gnnspec.simulate.engine import run_feff_text
from gnnspec.simulate.ground_state import GroundState, PotentialFileError, read_pot_fields, splice_core_hole
from gnnspec.simulate.presets import PRESETS

needs_feff = pytest.mark.skipif(importlib.util.find_spec("feff10") is None, reason="feff10 (feff10-rs) not installed")
HARTREE_EV = 27.211386


def mno6_text(edge: str, kind: str = "elnes", d: float = 2.0) -> str:
    """feff.inp of a Mn absorber in an O octahedron (Mn-O ``d`` A) with the scf tier's cards."""
    lines = ["TITLE MnO6", *PRESETS["scf"].cards(edge, kind), "", "POTENTIALS", "    0  25  Mn", "    1   8  O", "", "ATOMS", "   0.0 0.0 0.0  0  Mn  0.0"]
    for v in np.vstack([np.eye(3), -np.eye(3)]) * d:
        lines.append(f"   {v[0]:.4f} {v[1]:.4f} {v[2]:.4f}  1  O  {d:.4f}")
    return "\n".join([*lines, "END", ""])


def _pot(root) -> str:
    (folder,) = root.glob("gnnspec_feff_*")
    return (folder / "pot.bin").read_text()


@pytest.fixture(scope="module")
def mno6_runs(tmp_path_factory):
    """A full L3 run filling a GroundState, a full L2 run, and an L2 run reusing the L3 SCF."""
    root = tmp_path_factory.mktemp("ground_state")
    shared = GroundState()
    out = {}
    for name, edge, ground_state in (("L3", "L3", shared), ("L2 full", "L2", None), ("L2 reused", "L2", shared)):
        (root / name).mkdir()
        stages: dict = {}
        diagnostics: dict = {}
        spectra, _ = run_feff_text(
            mno6_text(edge), "elnes", 600, workdir_root=root / name, keep=True, stage_seconds=stages, ground_state=ground_state, run_name=f"Mn-{edge}-elnes", diagnostics=diagnostics
        )
        out[name] = {"spectra": spectra, "pot": _pot(root / name), "stages": stages, "diagnostics": diagnostics, "folder": next((root / name).glob("gnnspec_feff_*"))}
    out["shared"] = shared
    return out


@needs_feff
def test_l2_run_on_the_l3_scf_equals_a_full_l2_run(mno6_runs):
    """The spliced pot.bin is the full L2 run's byte for byte, so the spectra are the same numbers."""
    full, reused = mno6_runs["L2 full"], mno6_runs["L2 reused"]
    assert mno6_runs["shared"].source == "Mn-L3-elnes" and mno6_runs["shared"].pot_bin == mno6_runs["L3"]["pot"]
    assert reused["pot"] == full["pot"]
    for modality in ("xas", "eels"):
        assert np.array_equal(reused["spectra"][modality][0], full["spectra"][modality][0])
        assert np.array_equal(reused["spectra"][modality][1], full["spectra"][modality][1])
    # and the L3 spectrum is not the L2 one (the splice carried the hole)
    assert not np.allclose(mno6_runs["L3"]["spectra"]["xas"][0][0], full["spectra"]["xas"][0][0], atol=5.0)
    # the reused run ran FEFF's pot without SCF: a fraction of the full run's pot stage
    assert reused["stages"]["pot"] < full["stages"]["pot"] / 3


@needs_feff
def test_screened_runs_report_their_core_hole_screening(mno6_runs):
    """Each RPA run reports w_scrn / v_ch at the nucleus from its own wscrn.dat; a run on another
    run's SCF screens its core hole exactly as a full run of that edge."""
    from gnnspec.simulate.engine import SCREENED_CORE_HOLE_FILE, core_hole_screening

    for name in ("L3", "L2 full", "L2 reused"):
        run = mno6_runs[name]
        ratio = run["diagnostics"]["core_hole_screening"]
        assert ratio == core_hole_screening(run["folder"] / SCREENED_CORE_HOLE_FILE)
        assert 0.0 < ratio < 1.0  # screened, and still attractive at the nucleus
    assert mno6_runs["L2 reused"]["diagnostics"] == mno6_runs["L2 full"]["diagnostics"]


def test_core_hole_screening_reads_the_innermost_radius(tmp_path):
    from gnnspec.simulate.engine import FeffRunError, core_hole_screening

    table = tmp_path / "wscrn.dat"
    table.write_text(" # r       w_scrn(r)      v_ch(r)\n 0.15E-03 0.187E+01 0.2686E+01\n 0.16E-03 0.190E+01 0.2686E+01\n")
    assert core_hole_screening(table) == pytest.approx(1.87 / 2.686)
    table.write_text(" # r w_scrn(r)\n 0.15E-03 0.187E+01\n")
    with pytest.raises(FeffRunError, match="wscrn.dat: no screened core-hole table"):
        core_hole_screening(table)
    with pytest.raises(FeffRunError, match="no screened core-hole table"):
        core_hole_screening(tmp_path / "missing.dat")


@needs_feff
def test_pot_bin_fields_decode_to_the_cluster(mno6_runs):
    """The PAD reader gives FEFF's own numbers: atoms per potential, Z, radii and the edge energy."""
    fields = {f.name: f.values for f in read_pot_fields(mno6_runs["L3"]["pot"])}
    assert fields["header"][1] == 1  # nph: potentials 0 (Mn absorber) and 1 (O)
    assert np.allclose(fields["xnatph"], [1.0, 6.0], rtol=1e-12)
    assert fields["inrm_iz_kappa"][2:4].tolist() == [25, 8]
    assert np.all((fields["rmt"] > 0.5) & (fields["rmt"] < 4.0))  # bohr
    # emu (hartree): FEFF's edge energy, about 640 eV for Mn L3 and 651 eV for Mn L2
    emu3 = fields["dum"][4] * HARTREE_EV
    emu2 = read_pot_fields(mno6_runs["L2 full"]["pot"])[2].values[4] * HARTREE_EV
    assert 620 < emu3 < 660 and 5 < emu2 - emu3 < 20
    assert np.array_equal(fields["vtot"], {f.name: f.values for f in read_pot_fields(mno6_runs["L2 full"]["pot"])}["vtot"])


@needs_feff
def test_splice_refuses_the_potentials_of_another_cluster(mno6_runs):
    l3, l2 = mno6_runs["L3"]["pot"], mno6_runs["L2 full"]["pot"]
    lines, row = l2.splitlines(), 0
    for field in read_pot_fields(l2):
        if field.name == "rmt":
            break
        row += len(field.lines)
    lines[row] = lines[row][:5] + ("A" if lines[row][5] != "A" else "B") + lines[row][6:]  # one radius changed
    with pytest.raises(PotentialFileError, match="rmt differs"):
        splice_core_hole(l3, "\n".join(lines) + "\n")
    with pytest.raises(PotentialFileError, match="not a FEFF10 pot.bin"):
        splice_core_hole(l3, "garbage\n")


def test_site_tasks_group_a_sites_scf_runs_only():
    from gnnspec.data.recipe import site_tasks

    runs = [
        ("fast", 3, "Ni-L3-elnes", ["Ni-L3-eels"]),
        ("fast", 3, "Ni-L2-elnes", ["Ni-L2-eels"]),
        ("scf", 3, "Ni-L3-elnes", ["Ni-L3-eels"]),
        ("scf", 5, "O-K-elnes", ["O-K-eels"]),
        ("scf", 3, "Ni-K-xanes", ["Ni-K-xas"]),
    ]
    tasks = site_tasks(runs)
    assert tasks == [
        ("fast", 3, [("Ni-L3-elnes", ["Ni-L3-eels"])]),
        ("fast", 3, [("Ni-L2-elnes", ["Ni-L2-eels"])]),
        ("scf", 3, [("Ni-L3-elnes", ["Ni-L3-eels"]), ("Ni-K-xanes", ["Ni-K-xas"])]),
        ("scf", 5, [("O-K-elnes", ["O-K-eels"])]),
    ]
    assert PRESETS["scf"].shares_ground_state and not PRESETS["fast"].shares_ground_state


@needs_feff
def test_farm_runs_a_sites_group_on_one_scf(mno6_runs, tmp_path):
    """A farm task line of one site's runs: the K run reuses the L2 run's SCF and says so."""
    from gnnspec.simulate.farm import _run

    task = lambda edge, kind: {"key": f"scf/000000/0000/Mn-{edge}-{kind}", "text": mno6_text(edge, kind), "kind": kind, "channels": [], "stage_timeout_s": 600, "screened": True, "log_dir": str(tmp_path)}  # noqa: E731
    first, second = _run({"runs": [task("L2", "elnes"), task("K", "xanes")]})
    assert "potentials_from" not in first and second["potentials_from"] == "Mn-L2-elnes"
    assert first["core_hole_screening"] == mno6_runs["L2 full"]["diagnostics"]["core_hole_screening"]
    assert 0.0 < second["core_hole_screening"] < 1.0
    assert np.array_equal(first["spectra"]["eels"][1], mno6_runs["L2 full"]["spectra"]["eels"][1])
    energy = np.asarray(second["spectra"]["xas"][0])
    assert 6500 < energy[np.argmax(np.gradient(np.asarray(second["spectra"]["xas"][1])))] < 6600  # the Mn K edge


def test_cost_summary_counts_one_scf_per_site():
    from gnnspec.bench.ground_state import COSINE_GOAL, cost_summary, markdown, recipe_runs_per_core_hour

    def row(run, own, shared=None, cosine=1.0):
        r = {"element": "Ni", "site": 3, "run": run, "own_seconds": own, "own_cpu_seconds": own, "own_pot_seconds": own - 5}
        if shared is not None:
            r.update({"shared_from": "Ni-K-xanes", "shared_seconds": shared, "shared_cpu_seconds": shared, "xas_cosine": cosine, "xas_max_relative_difference": 0.0, "xas_same_energy_axis": True})
        return r

    rows = [row("Ni-K-xanes", 80.0), row("Ni-L3-elnes", 80.0, 4.0), row("Ni-L2-elnes", 80.0, 4.0, cosine=0.998)]
    s = cost_summary(rows)
    assert s["runs_per_core_hour_before"] == 3600 * 3 / 240 and s["runs_per_core_hour_after"] == 3600 * 3 / 88
    assert s["min_cosine"] == 0.998 and not s["all_within_goal"] and COSINE_GOAL == 0.999
    # Li K and O K: one run a site, each its own SCF; a TM site: one SCF and two shared runs
    # Li K and O K unmeasured: one run a site at the mean first-run cost; Ni: one SCF, two shared
    assert recipe_runs_per_core_hour(rows, {"Li": 1, "O": 1, "Ni": 3}) == 3600 * 5 / (3 * 80 + 2 * 4)
    li = dict(row("Li-K-xanes", 60.0), element="Li")
    assert recipe_runs_per_core_hour([*rows, li], {"Li": 1, "Ni": 3}) == 3600 * 4 / (60 + 80 + 2 * 4)
    assert "Ni-L2-elnes | 3 | 80.0 | Ni-K-xanes | 4.0 | 0.998000" in markdown(rows, s, None)

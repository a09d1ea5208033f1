"""XDI files and energy calibration against the reference foil, on the XAS Data Library's Mn K
spectra of four Mn oxides (three scans each; skipped where shared/ is absent)."""

import json
from pathlib import Path

import numpy as np
import pytest

from gnnspec.cli import main
from gnnspec.errors import InputError
from gnnspec.measured.readers import read_measured
from gnnspec.measured.xdi import calibrate_to_reference, first_inflection, half_step_energy, read_xdi

XDI = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "experimental_reference" / "xdi"
needs_data = pytest.mark.skipif(not XDI.is_dir(), reason="shared/data/experimental_reference is absent")
VALENCE = {"MnO": 2.0, "Mn3O4": 8 / 3, "Mn2O3": 3.0, "MnO2": 4.0}


def _calibrated_half_steps() -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for path in sorted(XDI.glob("*.xdi")):
        xdi = read_xdi(path)
        cal = calibrate_to_reference(xdi)
        mu, _ = xdi.absorption()
        out.setdefault(path.name.split("_rt")[0], []).append(half_step_energy(xdi.energy + cal.shift, mu, 6539.0))
    return out


@needs_data
def test_the_reference_channel_puts_the_mn_foil_at_6539_ev():
    for path in sorted(XDI.glob("*.xdi")):
        xdi = read_xdi(path)
        assert (xdi.element, xdi.edge) == ("Mn", "K") and set(xdi.columns) == {"energy", "i0", "itrans", "irefer"}
        cal = calibrate_to_reference(xdi)
        assert abs(cal.shift) < 1.0  # measured: -0.10 to -0.41 eV
        again = first_inflection(xdi.energy + cal.shift, xdi.reference(), 6539.0)
        assert again == pytest.approx(6539.0, abs=0.3)


@needs_data
def test_calibrated_edges_follow_the_mn_valence_and_scans_agree():
    """Half-step energies after foil calibration: repeat scans within 0.2 eV, the valence order
    MnO < Mn3O4 < Mn2O3 < MnO2, and 5-9 eV from Mn(II) to Mn(IV) (measured: 6543.6, 6545.7, 6549.2, 6551.6 eV)."""
    steps = _calibrated_half_steps()
    assert set(steps) == set(VALENCE)
    for values in steps.values():
        assert np.ptp(values) < 0.2
    mean = {k: float(np.mean(v)) for k, v in steps.items()}
    assert sorted(mean, key=mean.get) == sorted(VALENCE, key=VALENCE.get)
    assert 5.0 <= mean["MnO2"] - mean["MnO"] <= 9.0


@needs_data
def test_convert_keeps_chemical_shifts_and_records_the_calibration(tmp_path, capsys):
    """XAS defaults to absolute energies: MnO and MnO2 stay about 8 eV apart after convert, and a
    file moved by 3 eV stays 3 eV away; with --energy onset both collapse onto one onset."""
    mno, mno2 = XDI / "MnO_rt_01.xdi", XDI / "MnO2_rt_01.xdi"
    moved = tmp_path / "MnO_moved.xdi"
    lines = mno.read_text().splitlines()
    shifted = [row if row.startswith("#") or not row.strip() else f"{float(row.split()[0]) + 3.0:.4f} " + " ".join(row.split()[1:]) for row in lines]
    moved.write_text("\n".join(shifted) + "\n")
    onsets = {}
    for mode in ("reference", "absolute", "onset"):
        for name, path in (("MnO", mno), ("MnO2", mno2), ("moved", moved)):
            out = tmp_path / f"{name}_{mode}.json"
            assert main(["convert", f"{path}:Mn-K-xas", "--energy", mode, "--out", str(out)]) == 0
            meta = json.loads(out.read_text())["meta"]["channels"]["Mn-K-xas"]
            onsets[(mode, name)] = meta["alignment"]["onset_eV"] + meta["alignment"]["shift_eV"]  # on the written axis
            if mode == "reference":
                assert meta["energy"]["method"].startswith("reference foil")
                assert meta["energy"]["shift_eV"] == pytest.approx(-3.0 if name == "moved" else 0.0, abs=1.0)
            if mode == "absolute":
                assert meta["alignment"]["shift_eV"] == 0.0 and meta["energy"]["mode"] == "absolute"
    assert onsets[("absolute", "moved")] - onsets[("absolute", "MnO")] == pytest.approx(3.0, abs=0.1)
    assert onsets[("reference", "moved")] - onsets[("reference", "MnO")] == pytest.approx(0.0, abs=0.15)  # the foil moved too
    assert 4.0 < onsets[("absolute", "MnO2")] - onsets[("absolute", "MnO")] < 10.0
    assert abs(onsets[("onset", "MnO2")] - onsets[("onset", "MnO")]) < 0.1
    default = tmp_path / "default.json"
    assert main(["convert", f"{mno2}:Mn-K-xas", "--out", str(default)]) == 0
    assert json.loads(default.read_text())["meta"]["channels"]["Mn-K-xas"]["energy"]["mode"] == "absolute"


def test_bad_xdi_files_are_named_with_what_is_wrong(tmp_path):
    bad = tmp_path / "bad.xdi"
    bad.write_text("# not xdi\n1 2\n")
    with pytest.raises(InputError, match="bad.xdi: not an XDI file"):
        read_xdi(bad)
    bad.write_text("# XDI/1.0\n# Column.1: energy\n# Column.2: i0\n# ///\n1 2\n2 x\n")
    with pytest.raises(InputError, match="bad.xdi line 6: not a row of numbers"):
        read_xdi(bad)
    bad.write_text("# XDI/1.0\n# Column.1: energy\n# Column.2: i0\n# ///\n1 2\n2 3\n")
    with pytest.raises(InputError, match="no absorption column"):
        read_measured(bad)
    with pytest.raises(InputError, match="no reference channel"):
        calibrate_to_reference(read_xdi(bad), "Mn", "K")
    assert main(["convert", f"{bad}:Mn-K-xas", "--energy", "reference", "--out", str(tmp_path / "x.json")]) == 2


ATHENA = XDI.parent / "athena"


@pytest.mark.skipif(not ATHENA.is_dir(), reason="shared/data/experimental_reference is absent")
def test_athena_records_read_with_their_energy_shift_and_keep_the_valence_order(tmp_path):
    pytest.importorskip("larch")
    foil = read_measured(f"{ATHENA / 'Mn.prj'}@Mn_foil")
    assert foil.meta["format"] == "Athena" and foil.meta["athena_energy_shift_eV"] == pytest.approx(1.298, abs=0.01)
    assert first_inflection(foil.energy, foil.intensity, 6539.0) == pytest.approx(6539.0, abs=0.3)  # Athena's calibration
    ref = read_measured(f"{ATHENA / 'NiO.prj'}@d_Ref_NiO")  # NiO's Ni foil channel
    assert first_inflection(ref.energy, ref.intensity, 8333.0) == pytest.approx(8333.0, abs=0.3)
    steps = {r: half_step_energy(*(lambda m: (m.energy, m.intensity))(read_measured(f"{ATHENA / 'Mn.prj'}@{r}")), 6539.0)
             for r in ("MnO", "Mn3O4", "Mn2O3x", "Li2MnO3", "Pyrolusite")}
    # measured: 6545.0, 6547.8, 6550.0, 6554.1, 6552.2 eV: Mn(II) < Mn(II,III) < Mn(III) < both Mn(IV)
    assert steps["MnO"] < steps["Mn3O4"] < steps["Mn2O3x"] < min(steps["Li2MnO3"], steps["Pyrolusite"])
    with pytest.raises(InputError, match="holds 14 records; name one as Mn.prj@RECORD"):
        read_measured(ATHENA / "Mn.prj")
    with pytest.raises(InputError, match="no record 'MnX'"):
        read_measured(f"{ATHENA / 'Mn.prj'}@MnX")
    out = tmp_path / "mno.json"
    assert main(["convert", f"{ATHENA / 'Mn.prj'}@MnO:Mn-K-xas", "--out", str(out)]) == 0
    meta = json.loads(out.read_text())["meta"]["channels"]["Mn-K-xas"]
    assert meta["energy"]["mode"] == "absolute" and meta["energy"]["athena_energy_shift_eV"] == pytest.approx(1.298, abs=0.01)

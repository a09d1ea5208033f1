from pathlib import Path

import numpy as np
import pytest
from fixtures.dm3_writer import write_dm3
from fixtures.synthetic import write_tiny_msa

from gnnspec.errors import InputError
from gnnspec.measured.readers import read_dm, read_measured, read_msa, read_xas_text

FIXTURES = Path(__file__).parent / "fixtures"
EXPERIMENTAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "experimental_eels_nmc"
needs_experimental = pytest.mark.skipif(not EXPERIMENTAL.is_dir(), reason="shared experimental EELS data absent")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_msa(tmp_path_factory.mktemp("msa"))


def test_msa_xy_with_crlf_and_unit_suffixed_keywords(tiny):
    m = read_msa(tiny["tiny_xy.msa"])
    np.testing.assert_allclose(m.energy, 850.0 + 0.5 * np.arange(8))
    np.testing.assert_allclose(m.intensity, 100.0 + 10.0 * np.arange(8))
    assert m.modality == "eels"
    assert m.meta["header"]["BEAMKV"] == "300.0"
    assert m.meta["header"]["TITLE"] == "tiny XY test spectrum"


def test_msa_y_type_with_several_columns_and_kev_axis(tiny):
    m = read_measured(tiny["tiny_y.msa"])
    np.testing.assert_allclose(m.energy, 530.0 + 0.5 * np.arange(10))
    np.testing.assert_allclose(m.intensity, np.arange(1, 11))


def test_own_msa_parser_agrees_with_rosettasciio(tiny):
    rsciio_msa = pytest.importorskip("rsciio.msa")
    files = [tiny["tiny_xy.msa"]]
    if EXPERIMENTAL.is_dir():
        files += sorted(EXPERIMENTAL.glob("*.msa"))
    for path in files:
        ours = read_msa(path)
        theirs = rsciio_msa.file_reader(str(path))[0]
        axis = theirs["axes"][0]
        np.testing.assert_allclose(ours.intensity, theirs["data"])
        np.testing.assert_allclose(ours.energy, axis["offset"] + axis["scale"] * np.arange(axis["size"]), atol=1e-3)


@pytest.mark.parametrize(
    "text, message",
    [
        ("#FORMAT : EMSA/MAS\n#NPOINTS : 3\n#SPECTRUM :\n1, 2\n2, 3\n", "NPOINTS 3 but the file holds 2"),
        ("#FORMAT : EMSA/MAS\n#SPECTRUM :\n1, 2\n2, x\n", "line 4: non-numeric data"),
        ("#TITLE : no format line\n#SPECTRUM :\n1, 2\n2, 3\n", "not an EMSA/MAS file"),
        ("#FORMAT : EMSA/MAS\n#SPECTRUM :\n2, 2\n1, 3\n", "not strictly increasing"),
        ("#FORMAT : EMSA/MAS\n#XUNITS : nm\n#SPECTRUM :\n1, 2\n2, 3\n", "energy units 'nm'"),
        ("#FORMAT : EMSA/MAS\n#SPECTRUM :\n", "no data"),
    ],
)
def test_bad_msa_files_name_file_and_problem(tmp_path, text, message):
    path = tmp_path / "bad.msa"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        read_msa(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_xas_text_with_comments_header_and_commas():
    m = read_xas_text(FIXTURES / "xas_header.csv")
    np.testing.assert_allclose(m.energy, [8320, 8330, 8340, 8350, 8360])
    np.testing.assert_allclose(m.intensity, [0.01, 0.02, 0.9, 1.1, 1.0])
    assert m.modality == "xas" and m.meta["header_lines"] == ["energy,mu"]


def test_xas_text_whitespace_and_descending_scan():
    m = read_measured(FIXTURES / "xas_descending.txt")
    np.testing.assert_allclose(m.energy, [8320, 8330, 8340, 8350, 8360])
    np.testing.assert_allclose(m.intensity, [0.01, 0.02, 0.9, 1.1, 1.0])


@pytest.mark.parametrize(
    "text, message",
    [
        ("1 2\n2 3\nthree 4\n", "line 3: non-numeric values"),
        ("# only comments\nenergy intensity\n", "no numeric data rows"),
        ("1\n2\n", "expected at least 2 columns"),
        ("1 2\n1 3\n2 4\n", "not strictly increasing"),
        ("1 2\n2 nan\n", "non-finite"),
    ],
)
def test_bad_text_files_name_file_and_problem(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        read_xas_text(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_unknown_suffix_and_missing_file(tmp_path):
    (tmp_path / "x.h5").write_text("")
    with pytest.raises(InputError, match="unknown spectrum file type '.h5'"):
        read_measured(tmp_path / "x.h5")
    with pytest.raises(InputError, match="no such file"):
        read_measured(tmp_path / "missing.msa")


def test_dm3_spectrum_and_spectrum_image(tmp_path):
    """rosettasciio cannot write DM3: the fixture writer builds minimal files (tests/fixtures/dm3_writer.py)."""
    pytest.importorskip("rsciio.digitalmicrograph")
    counts = np.linspace(10.0, 20.0, 50)
    m = read_measured(write_dm3(tmp_path / "s.dm3", counts, [(840.0, 0.25, "eV")]))
    np.testing.assert_allclose(m.energy, 840.0 + 0.25 * np.arange(50), atol=1e-4)
    np.testing.assert_allclose(m.intensity, counts, rtol=1e-6)
    assert m.modality == "eels" and m.meta["n_spectra_averaged"] == 1

    cube = np.arange(2 * 3 * 50, dtype=float).reshape(2, 3, 50)
    m = read_dm(write_dm3(tmp_path / "si.dm3", cube, [(0.0, 1.0, "nm"), (0.0, 1.0, "nm"), (0.53, 0.0005, "keV")]))
    np.testing.assert_allclose(m.energy, 530.0 + 0.5 * np.arange(50), atol=1e-3)
    np.testing.assert_allclose(m.intensity, cube.reshape(6, 50).mean(axis=0))
    assert m.meta["n_spectra_averaged"] == 6


def test_dm3_garbage_is_an_input_error(tmp_path):
    pytest.importorskip("rsciio.digitalmicrograph")
    path = tmp_path / "junk.dm3"
    path.write_bytes(b"\x00\x00\x00\x07" + bytes(40))
    with pytest.raises(InputError, match="junk.dm3: not a readable Digital Micrograph file"):
        read_dm(path)


@needs_experimental
def test_experimental_files_read():
    survey = read_measured(EXPERIMENTAL / "tm_o_survey.msa")
    assert survey.energy.size == 2048 and survey.energy[0] == pytest.approx(440.0)
    assert np.all(np.diff(survey.energy) == pytest.approx(0.3, abs=1e-3))
    zlp = read_measured(EXPERIMENTAL / "zero_loss.msa")
    assert zlp.energy[0] == pytest.approx(-60.0)

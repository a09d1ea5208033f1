"""Elemental quantification as a second input of the spectrum encoder: its representation, the
spectra file field, the model API and the training draws."""

import json
import math

import numpy as np
import pytest
import torch
from model_fixtures import tiny_model_config

from gnnspec.channels import CHANNEL_NAMES
from gnnspec.errors import InputError
from gnnspec.models import build_model
from gnnspec.quantification import ELEMENTS, channel_element_index, channel_fractions, from_mapping, perturb_amounts
from gnnspec.spectra import Spectrum, parse_quantification, read_spectra, read_spectra_batch, write_spectra, write_spectra_batch

torch.set_num_threads(1)

CH = list(CHANNEL_NAMES)
IDX = channel_element_index(CH)


def _mask(*names):
    return torch.tensor([[c in names for c in CH]])


def test_channel_element_index_points_at_each_channels_element():
    assert [ELEMENTS[i] for i in IDX.tolist()] == [c.split("-")[0] for c in CH]


def test_fractions_are_among_the_present_elements_only():
    # 2 Li, 4 Ni, 0 Mn, 1 Co, 6 O atoms; channels present: Ni K, Ni L3 (EELS) and O K
    amounts = torch.tensor([[2.0, 4.0, 0.0, 1.0, 6.0]], dtype=torch.float64)
    q = channel_fractions(amounts, _mask("Ni-K-xas", "Ni-L3-eels", "O-K-eels"), IDX)[0]
    assert q[CH.index("Ni-K-xas")] == pytest.approx(0.4) and q[CH.index("Ni-L3-eels")] == pytest.approx(0.4)
    assert q[CH.index("O-K-eels")] == pytest.approx(0.6)
    assert q[CH.index("Co-K-xas")] == 0 and q[CH.index("Li-K-xas")] == 0  # absent channels
    # any scale gives the same: only ratios are measurable
    assert torch.allclose(channel_fractions(amounts * 37.0, _mask("Ni-K-xas", "Ni-L3-eels", "O-K-eels"), IDX)[0], q)
    # one element alone carries no information: fraction 1
    assert channel_fractions(amounts, _mask("O-K-xas"), IDX)[0, CH.index("O-K-xas")] == 1.0


def test_unknown_rows_are_nan():
    amounts = torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0], [math.nan] * 5, [1.0, 0.0, 0.0, 0.0, 0.0]])
    mask = _mask("Ni-K-xas", "O-K-eels").repeat(3, 1)
    q = channel_fractions(amounts, mask, IDX)
    assert torch.isfinite(q[0]).all() and torch.isnan(q[1]).all()
    assert torch.isnan(q[2]).all()  # the present elements (Ni, O) have no amount


def test_training_draws_keep_ratios_near_and_drop_whole_rows():
    torch.manual_seed(0)
    amounts = torch.tensor([[0.1, 0.2, 0.1, 0.1, 0.5]], dtype=torch.float64).repeat(4000, 1)
    noisy = perturb_amounts(amounts, 0.1, 0.0)
    log_ratio = (noisy / amounts).log()
    assert log_ratio.std().item() == pytest.approx(0.1, rel=0.05) and abs(log_ratio.mean().item()) < 0.01
    dropped = perturb_amounts(amounts, 0.0, 0.5)
    rows_nan = torch.isnan(dropped).all(dim=1)
    assert torch.isnan(dropped).any(dim=1).equal(rows_nan)  # whole rows only
    assert rows_nan.double().mean().item() == pytest.approx(0.5, abs=0.03)
    assert torch.equal(dropped[~rows_nan], amounts[~rows_nan])


def test_user_mapping_needs_every_present_element():
    q = from_mapping({"Ni": 20, "O": 60, "Li": 20}, CH, ["Ni-K-xas", "O-K-eels"], "q.json")
    assert q[CH.index("Ni-K-xas")] == pytest.approx(0.25) and q[CH.index("O-K-eels")] == pytest.approx(0.75)
    with pytest.raises(InputError, match=r"q\.json: .*no positive amount for O"):
        from_mapping({"Ni": 1.0}, CH, ["Ni-K-xas", "O-K-eels"], "q.json")
    with pytest.raises(InputError, match="'Fe'"):
        from_mapping({"Fe": 1.0, "Ni": 1.0}, CH, ["Ni-K-xas"], "q.json")


def test_spectra_files_carry_a_quantification(tmp_path):
    e = np.linspace(8330.0, 8390.0, 61)
    spectra = [Spectrum("Ni-K-xas", e, 1 + np.tanh(e - 8340))]
    path = write_spectra(tmp_path / "s.json", spectra, quantification={"Ni": 1, "O": 2.5})
    back, _ = read_spectra(path)
    assert back.quantification == {"Ni": 1.0, "O": 2.5}
    assert read_spectra(write_spectra(tmp_path / "plain.json", spectra))[0].quantification is None
    batch = write_spectra_batch(tmp_path / "b.jsonl", [("a", back), ("b", read_spectra(tmp_path / "plain.json")[0])])
    (a, qa), (b, qb) = read_spectra_batch(batch)
    assert qa.quantification == {"Ni": 1.0, "O": 2.5} and qb.quantification is None
    obj = json.loads(path.read_text())
    for bad, message in (({"Ni": -1}, "Ni is -1"), ({"Xx": 1}, "'Xx'"), ({"Ni": True}, "Ni is True"), ({}, "non-empty"), ({"Ni": 0}, "all zero")):
        obj["quantification"] = bad
        (tmp_path / "bad.json").write_text(json.dumps(obj))
        with pytest.raises(InputError, match=message) as err:
            read_spectra(tmp_path / "bad.json")
        assert "bad.json" in str(err.value)


def test_command_line_quantification_is_parsed_and_checked():
    assert parse_quantification("Ni=0.2, O=0.6") == {"Ni": 0.2, "O": 0.6}
    for bad in ("Ni0.2", "Ni=x", "Ni=-1"):
        with pytest.raises(InputError):
            parse_quantification(bad)


@pytest.fixture(scope="module")
def quantified_model():
    torch.manual_seed(0)
    return build_model(tiny_model_config(encoder={**tiny_model_config().encoder.__dict__, "quantification": True})).eval()


def test_encoder_reads_the_quantification_only_when_it_takes_one(quantified_model):
    spectra = {"Ni-K-xas": np.linspace(1, 2, 121), "O-K-eels": np.linspace(2, 1, 121)}
    # a fresh model's quantity embedding is random: the input moves the embedding
    torch.nn.init.normal_(quantified_model.encoder.unknown_quantity)
    plain = quantified_model.embed_spectra(spectra)
    rich = quantified_model.embed_spectra(spectra, quantification={"Ni": 1, "O": 2})
    poor = quantified_model.embed_spectra(spectra, quantification={"Ni": 1, "O": 1})
    assert not np.allclose(plain, rich) and not np.allclose(rich, poor)
    np.testing.assert_allclose(rich, quantified_model.embed_spectra(spectra, quantification={"Ni": 10, "O": 20}), atol=1e-6)
    # a NaN row is the same as no quantification
    x, mask = quantified_model.spectra_tensor(spectra)
    nan = torch.full(mask.shape, math.nan)
    with torch.no_grad():
        assert torch.allclose(quantified_model.encode_spectra(x, mask, nan), quantified_model.encode_spectra(x, mask))
    out = quantified_model.infer(spectra, quantification={"Ni": 1, "O": 2})
    assert out["quantification_used"] is True and abs(sum(out["element_content"].values()) - 1) < 1e-9
    assert quantified_model.infer(spectra)["quantification_used"] is False


def test_a_model_without_the_input_refuses_a_quantification():
    torch.manual_seed(0)
    model = build_model(tiny_model_config()).eval()
    assert not model.takes_quantification and not any("quantity" in k for k in model.state_dict())
    with pytest.raises(InputError, match="without an elemental-quantification input"):
        model.embed_spectra({"Ni-K-xas": np.ones(121)}, quantification={"Ni": 1})

"""Explanations, attributions and uncertainty of a tiny model (random weights, synthetic data)."""

import numpy as np
import pytest
import torch

from gnnspec.analysis.attributions import integrated_gradients, plot_attributions
from gnnspec.analysis.explain import explain_site, write_explanation
from gnnspec.analysis.uncertainty import PropertyEnsemble, calibrate, expected_calibration_error, fit_ensemble
from gnnspec.channels import CHANNELS
from gnnspec.errors import InputError
from gnnspec.models.factory import build_model
from gnnspec.structures.nmc import NMCParams, generate_nmc
from tests.model_fixtures import tiny_model_config


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(tiny_model_config()).double().eval()


@pytest.fixture(scope="module")
def nmc():
    return generate_nmc(NMCParams(seed=2, li_content=0.8, n_o_vacancies=1)).structure


def _site(structure, symbol):
    return next(i for i, s in enumerate(structure) if s.specie.symbol == symbol)


def test_explanation_shares_sum_to_one_and_contributions_to_spectrum(model, nmc, tmp_path):
    site = _site(nmc, "Ni")
    result = explain_site(model, nmc, site, "Ni-L23-eels")
    assert result["atoms"][0]["index"] == site and result["atoms"][0]["distance"] == 0.0
    assert np.allclose(result["contributions"].sum(0), result["spectrum"], atol=1e-10)
    assert sum(a["share"] for a in result["atoms"]) == pytest.approx(1.0)
    assert all(a["distance"] <= model.cfg.spectra.r_readout + 1e-9 for a in result["atoms"])
    files = write_explanation(result, tmp_path)
    assert [f.name for f in files] == ["contributions.csv", "contributions.json", "contributions.png"]
    assert len((tmp_path / "contributions.csv").read_text().splitlines()) == len(result["atoms"]) + 1
    with pytest.raises(InputError, match="needs a Mn absorber"):
        explain_site(model, nmc, site, "Mn-K-xas")


def test_integrated_gradients_are_complete(model, tmp_path):
    rng = np.random.default_rng(0)
    spectra = {c: 1.0 + 0.2 * rng.random(CHANNELS[c].n_energy) for c in ("O-K-eels", "Ni-L23-eels", "Ni-K-xas")}
    result = integrated_gradients(model, spectra, steps=64)
    assert result["channels"] == ["O-K-eels", "Ni-K-xas", "Ni-L23-eels"]
    for name, t in result["targets"].items():
        assert t["attribution"].shape == (3, CHANNELS["O-K-eels"].n_energy)
        # completeness: attributions sum to f(x) - f(baseline), up to the Riemann error
        assert abs(t["delta"]) < 0.05 * (abs(t["value"]) + 1), name
    plot_attributions(result, tmp_path / "a.png")
    assert (tmp_path / "a.png").stat().st_size > 1000


def test_integrated_gradients_hold_a_quantification_fixed():
    torch.manual_seed(1)
    encoder = {**tiny_model_config().encoder.__dict__, "quantification": True}
    model = build_model(tiny_model_config(encoder=encoder)).double().eval()
    rng = np.random.default_rng(1)
    spectra = {c: 1.0 + 0.2 * rng.random(CHANNELS[c].n_energy) for c in ("O-K-eels", "Ni-L23-eels")}
    plain = integrated_gradients(model, spectra, steps=64)
    quantified = integrated_gradients(model, spectra, steps=64, quantification={"Ni": 1.0, "O": 2.0})
    assert quantified["quantification_used"] and not plain["quantification_used"]
    for name, t in quantified["targets"].items():
        assert abs(t["delta"]) < 0.05 * (abs(t["value"]) + 1), name  # complete with the quantification fixed
        assert t["value"] != plain["targets"][name]["value"]  # and the quantification reaches the prediction


def test_ece_is_zero_for_calibrated_and_large_for_overconfident():
    rng = np.random.default_rng(0)
    p = rng.random(20000)
    y = (rng.random(20000) < p).astype(float)
    assert expected_calibration_error(p, y) < 0.02
    assert expected_calibration_error(np.where(p > 0.5, 0.99, 0.01), y) > 0.2


def test_ensemble_spread_and_temperature_scaling(tmp_path):
    rng = np.random.default_rng(1)
    emb = rng.standard_normal((400, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    logits = 6 * emb[:, :2]
    defects = (rng.random((400, 2)) < 1 / (1 + np.exp(-logits))).astype(float)
    content = np.exp(emb[:, :5])
    content /= content.sum(1, keepdims=True)
    ens = fit_ensemble(emb[:300], content[:300], defects[:300], members=4, steps=200)
    pred = ens.predict(emb[300:])
    assert pred["content"].shape == (100, 5) and np.allclose(pred["content"].sum(1), 1.0)
    assert (pred["defect_std"] > 0).all() and (pred["defect"] >= 0).all() and (pred["defect"] <= 1).all()
    report = calibrate(ens, emb[300:], defects[300:])
    for r in report.values():
        assert r["nll_after"] <= r["nll_before"] + 1e-12  # T = 1 is among the candidates
    # an overconfident ensemble gets a temperature above 1 and a smaller calibration error
    over = PropertyEnsemble(ens.w_content, ens.b_content, 5 * ens.w_defect, 5 * ens.b_defect, np.ones(2))
    big = rng.standard_normal((4000, 8))
    big /= np.linalg.norm(big, axis=1, keepdims=True)
    big_defects = (rng.random((4000, 2)) < 1 / (1 + np.exp(-6 * big[:, :2]))).astype(float)
    report = calibrate(over, big, big_defects)
    for r in report.values():
        assert r["temperature"] > 1.5 and r["ece_after"] < r["ece_before"]
    ens.save(tmp_path / "e.npz")
    again = PropertyEnsemble.load(tmp_path / "e.npz")
    assert np.allclose(again.predict(emb[:3])["defect"], ens.predict(emb[:3])["defect"])


def test_training_support_flags_queries_far_from_the_training_embeddings(tmp_path):
    from gnnspec.analysis.support import TrainingSupport

    rng = np.random.default_rng(0)
    centre = rng.normal(size=16)
    cloud = centre + 0.3 * rng.normal(size=(400, 16))  # the training distribution
    support = TrainingSupport.fit(cloud[:300], cloud[300:])
    support.save(tmp_path / "s.npz")
    support = TrainingSupport.load(tmp_path / "s.npz")
    assert support.check(cloud[350])["in_distribution"] or support.check(cloud[351])["in_distribution"]
    far = support.check(-centre)  # the opposite direction: nothing like it was trained on
    assert not far["in_distribution"] and far["nearest_training_cosine"] < far["validation_p01"]
    assert abs(support.check(cloud[0])["nearest_training_cosine"] - 1.0) < 1e-2  # a training point itself


def test_training_support_keeps_a_separate_reference_for_quantified_queries(tmp_path):
    from gnnspec.analysis.support import QUANTIFIED_INPUTS, TrainingSupport

    rng = np.random.default_rng(1)
    spectra_alone = rng.normal(size=16) + 0.3 * rng.normal(size=(300, 16))
    quantified = rng.normal(size=16) + 0.3 * rng.normal(size=(300, 16))  # elsewhere in the space
    TrainingSupport.fit(spectra_alone[:200], spectra_alone[200:]).save(
        tmp_path / "s.npz", TrainingSupport.fit(quantified[:200], quantified[200:], QUANTIFIED_INPUTS)
    )
    plain, with_q = TrainingSupport.load(tmp_path / "s.npz"), TrainingSupport.load(tmp_path / "s.npz", quantified=True)
    assert plain.check(quantified[250])["in_distribution"] is False
    result = with_q.check(quantified[250])
    assert result["in_distribution"] and result["reference"] == QUANTIFIED_INPUTS
    # a file without the quantified pair answers with the spectra-alone reference, and says so
    TrainingSupport.fit(spectra_alone[:200], spectra_alone[200:]).save(tmp_path / "old.npz")
    assert TrainingSupport.load(tmp_path / "old.npz", quantified=True).check(spectra_alone[250])["reference"] == "spectra alone"


def test_channel_support_flags_a_spectrum_of_another_channel():
    """Spectrum-space support: held-out spectra of a channel pass, the same channel given an O K-like
    shape (a spectrum pasted into the wrong channel) is foreign, and the check reports per channel."""
    from gnnspec.analysis.support import ChannelSupport

    rng = np.random.default_rng(0)
    x = np.linspace(0.0, 1.0, 121)

    def tm_edge(n):  # white line near the start, continuum after
        centre = 0.15 + 0.03 * rng.standard_normal((n, 1))
        return 1.0 + 4.0 * np.exp(-((x - centre) ** 2) / 0.002) + 0.5 * (x > centre)

    def o_edge(n):  # pre-edge, then a broad main peak at two thirds
        return 1.0 + 0.8 * np.exp(-((x - 0.1) ** 2) / 0.001) + 2.0 * np.exp(-((x - 0.65 + 0.02 * rng.standard_normal((n, 1))) ** 2) / 0.02)

    support = ChannelSupport.fit({"Ni-L23-eels": tm_edge(300), "O-K-eels": o_edge(300)}, {"Ni-L23-eels": tm_edge(100), "O-K-eels": o_edge(100)})
    held_out = support.check({"Ni-L23-eels": tm_edge(1)[0], "O-K-eels": o_edge(1)[0]})
    assert all(c["in_distribution"] for c in held_out.values())
    pasted = support.check({"Ni-L23-eels": o_edge(1)[0]})
    assert not pasted["Ni-L23-eels"]["in_distribution"]
    assert pasted["Ni-L23-eels"]["nearest_training_correlation"] < pasted["Ni-L23-eels"]["threshold"] < pasted["Ni-L23-eels"]["validation_p01"]
    assert support.check({"Mn-K-xas": tm_edge(1)[0]}) == {}  # a channel it has no references for is not judged


def test_channel_support_compares_a_broad_measurement_at_its_own_resolution():
    """A held-out spectrum measured at 2.4 eV FWHM is foreign against sharp training spectra, in
    distribution once references and validation are broadened to 2.4 eV, and a spectrum of another
    channel stays foreign at that resolution; a support without validation spectra says it cannot adapt."""
    import torch

    from gnnspec.analysis.support import ChannelSupport
    from gnnspec.channels import CHANNELS
    from gnnspec.instrument import gaussian_resolution

    rng = np.random.default_rng(1)
    e = CHANNELS["Ni-L23-eels"].grid - CHANNELS["Ni-L23-eels"].grid[0]  # eV from the window's start

    def tm_edge(n):  # two narrow white lines 17 eV apart (0.8 eV wide), a continuum after
        l3 = 5.0 + 0.3 * rng.standard_normal((n, 1))
        return 1.0 + 6 * np.exp(-0.5 * ((e - l3) / 0.35) ** 2) + 3 * np.exp(-0.5 * ((e - l3 - 17) / 0.35) ** 2) + 0.5 * (e > l3)

    def o_edge(n):
        return 1.0 + 2.0 * np.exp(-0.5 * ((e - 40 + rng.standard_normal((n, 1))) / 4.0) ** 2)

    support = ChannelSupport.fit({"Ni-L23-eels": tm_edge(400)}, {"Ni-L23-eels": tm_edge(200)})
    measured = gaussian_resolution(torch.from_numpy(tm_edge(1)), 0.5, 2.4).numpy()[0]
    sharp = support.check({"Ni-L23-eels": measured})["Ni-L23-eels"]
    broad = support.check({"Ni-L23-eels": measured}, fwhm_ev=2.4)["Ni-L23-eels"]
    assert not sharp["in_distribution"] and broad["in_distribution"]
    assert "2.4 eV" in broad["resolution"] and broad["validation_p01"] != sharp["validation_p01"]
    other = gaussian_resolution(torch.from_numpy(o_edge(1)), 0.5, 2.4).numpy()[0]
    assert not support.check({"Ni-L23-eels": other}, fwhm_ev=2.4)["Ni-L23-eels"]["in_distribution"]
    # a training spectrum itself, measured at 2.4 eV, correlates fully with its broadened reference
    ref = support.references["Ni-L23-eels"][:1].astype(np.float64)
    itself = gaussian_resolution(torch.from_numpy(ref), 0.5, 2.4).numpy()[0]
    assert support.check({"Ni-L23-eels": itself}, fwhm_ev=2.4)["Ni-L23-eels"]["nearest_training_correlation"] > 0.999
    old = ChannelSupport(support.references, support.val_quantiles)
    assert "not adapted" in old.check({"Ni-L23-eels": measured}, fwhm_ev=2.4)["Ni-L23-eels"]["resolution"]


def test_noise_level_reads_white_noise_whatever_the_scale():
    from gnnspec.analysis.support import noise_level

    rng = np.random.default_rng(3)
    e = np.linspace(0.0, 60.0, 241)
    clean = 1.0 + 3.0 * np.exp(-0.5 * ((e - 10) / 1.2) ** 2) + 0.5 * (e > 10)
    noisy = clean + 0.05 * rng.standard_normal((50, e.size))
    assert noise_level(clean)[0] < 0.01  # a smooth spectrum is not noise
    assert np.median(noise_level(noisy)) == pytest.approx(0.05 / clean.std(), rel=0.1)
    assert np.allclose(noise_level(7.0 * noisy + 3.0), noise_level(noisy))


def test_a_noisy_thick_measurement_of_a_training_like_spectrum_is_in_distribution():
    """Counting noise and plural scattering (t/lambda 0.9) make a held-out spectrum foreign against
    clean references; compared as measured (references and validation scattered alike, validation
    given the query's noise) it is in distribution, and a spectrum of another channel measured the
    same way stays foreign."""
    import torch

    from gnnspec.analysis.support import ChannelSupport
    from gnnspec.channels import CHANNELS
    from gnnspec.instrument import Instrument

    rng = np.random.default_rng(4)
    ch = CHANNELS["Ni-L23-eels"]
    e = ch.grid - ch.grid[0]

    def tm_edge(n):
        l3 = 5.0 + 0.3 * rng.standard_normal((n, 1))
        return 1.0 + 6 * np.exp(-0.5 * ((e - l3) / 0.9) ** 2) + 3 * np.exp(-0.5 * ((e - l3 - 17) / 0.9) ** 2) + 0.5 * (e > l3)

    def o_edge(n):
        return 1.0 + 2.0 * np.exp(-0.5 * ((e - 40 + rng.standard_normal((n, 1))) / 4.0) ** 2)

    support = ChannelSupport.fit({ch.name: tm_edge(400)}, {ch.name: tm_edge(200)})
    clean_p01 = float(support.val_quantiles[ch.name][0])
    instrument = Instrument(thickness=0.9, counts=1e5)
    measured = instrument.apply(ch.grid, tm_edge(1)[0], channel=ch.name, generator=torch.Generator().manual_seed(0))
    plain = support.check({ch.name: measured})[ch.name]  # its noise is matched, its plural scattering not
    as_measured = support.check({ch.name: measured}, thickness=0.9)[ch.name]
    assert not plain["in_distribution"] and as_measured["in_distribution"]
    assert "t/lambda 0.90" in as_measured["resolution"] and "noise" in as_measured["resolution"]
    other = instrument.apply(ch.grid, o_edge(1)[0], channel=ch.name, generator=torch.Generator().manual_seed(1))
    assert not support.check({ch.name: other}, thickness=0.9)[ch.name]["in_distribution"]
    # noisier (1e4 counts, no plural scattering): the validation quantile drops with the query's noise
    noisy = Instrument(counts=1e4).apply(ch.grid, tm_edge(1)[0], channel=ch.name, generator=torch.Generator().manual_seed(2))
    verdict = support.check({ch.name: noisy})[ch.name]
    assert verdict["in_distribution"] and verdict["validation_p01"] < clean_p01 - 0.01
    # pure noise is too noisy to judge, whatever it correlates with
    garbage = support.check({ch.name: rng.random(e.size)})[ch.name]
    assert not garbage["in_distribution"] and "too noisy" in garbage["why"]
    # a noiseless query adds no noise to the validation spectra: the quantile is the clean one
    clean = support.check({ch.name: tm_edge(1)[0]})[ch.name]
    assert "noise" not in clean["resolution"] and clean["validation_p01"] == pytest.approx(clean_p01, abs=1e-3)


def test_reconstruction_flags_a_spectrum_placed_among_environments_that_look_different():
    """Two kinds of training environment (embeddings near a or b, spectra of shape A or B): a
    spectrum of shape A embedded near a reconstructs; the same spectrum embedded near b (the
    encoder fooled) does not, though every training spectrum of shape A would pass the channel check."""
    from gnnspec.analysis.reconstruction import ReconstructionSupport

    rng = np.random.default_rng(5)
    name = "Ni-L23-eels"
    e = np.linspace(0.0, 60.0, 121)
    shape = {"A": lambda c: 1 + 5 * np.exp(-0.5 * ((e - c) / 1.5) ** 2), "B": lambda c: 1 + 2 * np.exp(-0.5 * ((e - 40 - c) / 6.0) ** 2)}
    axis = {"A": np.eye(8)[0], "B": np.eye(8)[1]}

    def envs(n):
        kinds = rng.choice(["A", "B"], size=n)
        emb = np.array([axis[k] + 0.05 * rng.standard_normal(8) for k in kinds])
        x = np.zeros((n, 1, e.size))
        for i, k in enumerate(kinds):
            x[i, 0] = shape[k](10 + rng.standard_normal())
        return emb, x, np.ones((n, 1), dtype=bool)

    support = ReconstructionSupport.fit(envs(400), envs(200), [name])
    query = {name: shape["A"](10.3)}
    right = support.check(axis["A"][None], query)[name]
    wrong = support.check(axis["B"][None], query)[name]
    assert right["in_distribution"] and right["reconstruction_correlation"] > 0.99
    assert not wrong["in_distribution"] and wrong["reconstruction_correlation"] < right["threshold"]
    again = ReconstructionSupport.from_arrays(support.arrays(), [name])
    assert again.check(axis["B"][None], query) == support.check(axis["B"][None], query)
    assert ReconstructionSupport.from_arrays({}, [name]) is None


def test_query_resolution_sources():
    from gnnspec.analysis.commands import query_resolution
    from gnnspec.errors import InputError

    meta = {"zero_loss": {"fwhm_eV": 2.4}, "channels": {"Mn-L23-eels": {"instrument": {"zero_loss_fwhm_ev": 2.2}}}}
    r = query_resolution(meta, ["Mn-L23-eels", "O-K-eels", "Ni-K-xas"], 1.0)
    assert r["Mn-L23-eels"]["fwhm_ev"] == 2.2 and r["O-K-eels"]["fwhm_ev"] == 2.4
    assert r["Ni-K-xas"] == {"fwhm_ev": 1.0, "source": "--resolution", "thickness": None}
    assert query_resolution({}, ["Ni-K-xas"], None)["Ni-K-xas"]["fwhm_ev"] is None
    with pytest.raises(InputError, match="--resolution must be a positive"):
        query_resolution({}, ["Ni-K-xas"], -1.0)
    kept = {"instrument": {"zero_loss_fwhm_ev": 2.4, "thickness_t_over_lambda": 0.93, "plural_scattering": "recorded, not removed"}}
    removed = {"instrument": {"zero_loss_fwhm_ev": 2.4, "thickness_t_over_lambda": 0.93, "plural_scattering": "removed by Fourier-ratio deconvolution"}}
    r = query_resolution({"channels": {"O-K-eels": kept, "Mn-L23-eels": removed}}, ["O-K-eels", "Mn-L23-eels"], None)
    assert r["O-K-eels"]["thickness"] == 0.93 and r["Mn-L23-eels"]["thickness"] is None

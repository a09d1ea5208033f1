"""Measured spectra in: file readers, zero-loss calibration, background removal, survey cutting, alignment.

The chain from a measured file to a ``gnnspec.spectra/1`` channel spectrum:
:mod:`~gnnspec.measured.readers` (``.msa``, ``.dm3``/``.dm4``, text) ->
:mod:`~gnnspec.measured.alignment` (zero-loss calibration, edge location, alignment) ->
:mod:`~gnnspec.measured.background` (power-law or linear pre-edge background, normalisation) ->
:mod:`~gnnspec.measured.edges` (one edge, or every edge of a survey, cut to channel windows) ->
:mod:`~gnnspec.measured.convert` (files in, ``gnnspec.spectra/1`` out) and
:mod:`~gnnspec.measured.commands` (the ``gnnspec convert`` command).
Beside the chain, :mod:`~gnnspec.measured.quantify` measures the elemental quantification of an
EELS survey from its edge intensities and the hydrogenic cross-sections of
:mod:`~gnnspec.measured.cross_sections`.
"""

from gnnspec.measured.alignment import (
    Alignment,
    ZeroLossFit,
    align_to_onset,
    align_to_reference,
    calibrate_onsets,
    expected_onset,
    fit_zero_loss,
)
from gnnspec.measured.background import BackgroundFit, fit_power_law, remove_background
from gnnspec.measured.convert import convert_measured, plot_converted
from gnnspec.measured.cross_sections import partial_cross_section
from gnnspec.measured.edges import ProcessedEdge, cut_survey, process_edge
from gnnspec.measured.quantify import Optics, QuantifyRequest, quantify_edges
from gnnspec.measured.readers import MeasuredSpectrum, read_dm, read_measured, read_msa, read_xas_text

__all__ = [
    "Alignment",
    "BackgroundFit",
    "MeasuredSpectrum",
    "Optics",
    "ProcessedEdge",
    "QuantifyRequest",
    "ZeroLossFit",
    "align_to_onset",
    "align_to_reference",
    "calibrate_onsets",
    "convert_measured",
    "cut_survey",
    "expected_onset",
    "fit_power_law",
    "fit_zero_loss",
    "partial_cross_section",
    "plot_converted",
    "process_edge",
    "quantify_edges",
    "read_dm",
    "read_measured",
    "read_msa",
    "read_xas_text",
    "remove_background",
]

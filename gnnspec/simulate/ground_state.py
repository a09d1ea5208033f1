"""One self-consistent field per absorbing site: FEFF's ``pot.bin`` shared between its edges.

With ``COREHOLE RPA`` FEFF10's SCF (its ``pot`` stage, about 95 % of an ``scf`` run) converges
the potentials of the *ground state*: the core hole enters later, screened, in the ``screen``
and ``xsph`` stages. The self-consistent potentials of one absorbing site are therefore the same
for its K, L3 and L2 edges. Measured on an NMC Mn site (``pot.bin`` of full ``scf`` runs of the
three edges, decoded field by field): the Fermi level, interstitial values, densities and
potentials are identical; what differs is the hole alone, and FEFF takes it from the free-atom
calculation, so a run without SCF gives the same values bit for bit:

* ``HOLE_FIELDS``: ``ihole`` (header), the edge energy ``emu``, ``s02``, ``erelax`` and the
  absorber's Dirac orbitals (``dgc0``, ``dpc0``, ``dgc``, ``dpc``, ``adgc``, ``adpc``);
* ``GEOMETRY_FIELDS``: muffin-tin and Norman radii, overlap, atom counts, charges, orbital
  quantum numbers; the same in every run of a site (a check that two files describe the same
  cluster);
* everything else (``xmu``, ``vint``, ``rhoint``, ``rs``, ``xf``, ``edens``, ``vclap``, ``vtot``,
  ``edenvl``, ``qnrm``, ``xnmues``, ...) comes from the SCF.

:func:`splice_core_hole` writes the ``pot.bin`` of another edge from a full run's file and the
hole fields of a non-SCF run of that edge (about 1-3 s). The spliced file is byte for byte the
file a full SCF run of that edge writes, and the spectra that follow are identical
(``python -m gnnspec.bench.ground_state``; a test checks the splice on a small real run).

``pot.bin`` is FEFF's packed-ASCII (PAD) file (``rdpot``): lines of integers, and arrays as
lines starting with ``!``, ten 8-character numbers a line, each array on lines of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: PAD encoding constants (FEFF's ``padlib.h``): base 90, character offset 37.
_PAD_OFFSET, _PAD_HALF_BASE, _PAD_BASE = 37, 45, 90.0
#: Numbers per PAD line (FEFF writes at most 82 characters: ``!`` + 10 x 8).
_PER_LINE = 10
#: Indices in the 13 miscellaneous values (``dum``) that belong to the hole: emu, s02, erelax.
HOLE_SCALARS = (4, 5, 6)
HOLE_FIELDS = frozenset({"dgc0", "dpc0", "dgc", "dpc", "adgc", "adpc"})
GEOMETRY_FIELDS = ("imt", "rmt", "inrm_iz_kappa", "rnrm", "folp", "folpx", "xnatph", "xion", "xnval", "eorb", "iorb")


class PotentialFileError(ValueError):
    """A ``pot.bin`` that cannot be read, or two that do not describe the same cluster."""


def unpad(chunk: str) -> float:
    """One PAD number (FEFF's ``unpad``) from its characters."""
    iexp = ord(chunk[0]) - _PAD_OFFSET - _PAD_HALF_BASE
    head = ord(chunk[1]) - _PAD_OFFSET
    sign = (head % 2) * 2 - 1
    total = (head // 2) / (_PAD_BASE * _PAD_BASE)
    for i in range(len(chunk), 2, -1):
        total += (ord(chunk[i - 1]) - _PAD_OFFSET) / _PAD_BASE**i
    return 2 * sign * _PAD_BASE * total * 10.0**iexp


@dataclass
class PotField:
    """One field of ``pot.bin``: its name, its lines as written and its values."""

    name: str
    lines: list[str]
    values: np.ndarray


def _blocks(lines: list[str]) -> list[list[str]]:
    """Runs of consecutive PAD lines (``!``) and of integer lines."""
    out: list[list[str]] = []
    for line in lines:
        if out and out[-1][0].startswith("!") == line.startswith("!"):
            out[-1].append(line)
        else:
            out.append([line])
    return out


def read_pot_fields(text: str) -> list[PotField]:
    """The fields of a ``pot.bin`` text in file order (layout of FEFF10's ``rdpot``)."""
    lines = text.splitlines()
    try:
        header = [int(x) for x in lines[0].split()]
        ntitle, nph1, npad = header[0], header[1] + 1, header[2]
        fields = [PotField("header", lines[:1], np.array(header)), PotField("title", lines[1 : 1 + ntitle], np.zeros(0))]
        blocks = iter(_blocks(lines[1 + ntitle :]))

        def pad_values(block: list[str]) -> np.ndarray:
            return np.array([unpad(s[k : k + npad]) for s in (ln[1:] for ln in block) for k in range(0, len(s) - npad + 1, npad)])

        def ints(name: str) -> int:
            block = next(blocks)
            fields.append(PotField(name, block, np.array([int(x) for ln in block for x in ln.split()])))
            return len(fields[-1].values)

        def split(spec: list[tuple[str, int]]) -> None:
            block, start = next(blocks), 0
            for name, n in spec:
                k = -(-n // _PER_LINE)
                fields.append(PotField(name, block[start : start + k], pad_values(block[start : start + k])[:n]))
                start += k
            if start != len(block):
                raise PotentialFileError(f"PAD block of {len(block)} lines, expected {start} for {[n for n, _ in spec]}")

        split([("dum", 13)])
        ints("imt")
        split([("rmt", nph1)])
        norb = ints("inrm_iz_kappa") - 2 * nph1  # inrm and iz per potential, then kappa per orbital
        n_orb, n_dev, n_rad = 251 * norb * nph1, 10 * norb * nph1, 251 * nph1
        split(
            [(n, nph1) for n in ("rnrm", "folp", "folpx", "xnatph", "xion")]
            + [("dgc0", 251), ("dpc0", 251), ("dgc", n_orb), ("dpc", n_orb), ("adgc", n_dev), ("adpc", n_dev)]
            + [(n, n_rad) for n in ("edens", "vclap", "vtot", "edenvl", "vvalgs", "dmag")]
            + [("xnval", norb * nph1), ("eorb", norb)]
        )
        ints("iorb")
        last, k = next(blocks), -(-nph1 // _PER_LINE)
        fields.append(PotField("qnrm", last[:k], pad_values(last[:k])[:nph1]))
        fields.append(PotField("xnmues", last[k:], pad_values(last[k:])))
        if next(blocks, None) is not None:
            raise PotentialFileError("unexpected lines after xnmues")
    except (IndexError, ValueError, StopIteration) as exc:
        raise PotentialFileError(f"not a FEFF10 pot.bin: {exc}") from None
    return fields


def splice_core_hole(scf_text: str, hole_text: str) -> str:
    """``pot.bin`` of another edge of the same site: the SCF fields of ``scf_text`` (a full
    run) with the hole fields of ``hole_text`` (a non-SCF run of the wanted edge, same cluster).

    Raises :class:`PotentialFileError` when the two files do not describe the same cluster.
    """
    scf, hole = read_pot_fields(scf_text), read_pot_fields(hole_text)
    if [f.name for f in scf] != [f.name for f in hole]:
        raise PotentialFileError("the two pot.bin files have different layouts")
    by_name = {f.name: f for f in hole}
    h_scf, h_hole = scf[0].values, by_name["header"].values
    if len(h_scf) != len(h_hole) or np.any(np.delete(h_scf, 4) != np.delete(h_hole, 4)):
        raise PotentialFileError(f"pot.bin headers differ beyond the hole: {h_scf.tolist()} vs {h_hole.tolist()}")
    for name in GEOMETRY_FIELDS:
        a, b = next(f for f in scf if f.name == name), by_name[name]
        if a.values.shape != b.values.shape or not np.array_equal(a.values, b.values):
            raise PotentialFileError(f"pot.bin field {name} differs: the files describe different clusters")
    npad = int(h_scf[2])
    out: list[str] = []
    for field in scf:
        other = by_name[field.name]
        if field.name == "header" or field.name in HOLE_FIELDS:
            out += other.lines
        elif field.name == "dum":
            first, own = field.lines[0][1:], other.lines[0][1:]
            chunks = [(own if k in HOLE_SCALARS else first)[k * npad : (k + 1) * npad] for k in range(len(first) // npad)]
            out += ["!" + "".join(chunks), *field.lines[1:]]
        else:
            out += field.lines
    return "\n".join(out) + "\n"


@dataclass
class GroundState:
    """The self-consistent ``pot.bin`` of one absorbing site, shared by its runs.

    ``pot_bin`` is None until a full run of the site has finished; ``source`` names that run
    (such as ``Ni-L3-elnes``)."""

    pot_bin: str | None = None
    source: str | None = None

    @property
    def ready_from(self) -> str | None:
        """The run whose SCF the next run takes (``source``), or None while there is none."""
        return self.source if self.pot_bin is not None else None

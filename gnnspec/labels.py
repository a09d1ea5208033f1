"""The labels of a local environment, defined once for the whole project.

An environment is a centre site plus every site within the environment radius ``R_ENV`` of it
(:mod:`gnnspec.structures.environments`, which computes the labels); the whole supercell is also
one ("bulk"). Its labels, in the orders below, are what the dataset stores (``env_content``,
``env_defects``), what the property heads predict and what the library and benchmarks score:

* ``content`` (:data:`CONTENT_ELEMENTS` order): for each element, the fraction of the atoms
  within ``R_ENV`` of the centre (the centre included) that are of that element. Atoms of other
  elements count in the total, so the five fractions sum to at most 1.
* ``o_vacancy``: an ideal O lattice site within ``R_ENV`` of the centre is empty.
* ``antisite``: a TM atom (:data:`TM_ELEMENTS`) on a ``li_layer`` site, or a Li atom on a
  ``tm_layer`` site, lies within ``R_ENV`` of the centre (the centre included).

Defect labels are 0/1 in :data:`DEFECTS` order. :data:`CONTENT_ELEMENTS` is also the order of
the element amounts of an elemental quantification (:mod:`gnnspec.quantification`).
"""

from __future__ import annotations

#: Elements whose atom fractions make up an environment's content, in label order.
CONTENT_ELEMENTS = ("Li", "Ni", "Mn", "Co", "O")
#: Defect labels, in label order.
DEFECTS = ("o_vacancy", "antisite")
#: Transition metals of layered NMC (the ``antisite`` definition; TM ratios are given in this order).
TM_ELEMENTS = ("Ni", "Mn", "Co")

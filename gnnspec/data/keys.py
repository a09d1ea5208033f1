"""Names of the fields of a structure graph, in one place (models and training read these).

A structure graph (:class:`gnnspec.data.dataset.StructureGraph`) is one periodic supercell or
one non-periodic cluster with

========================  ===================  ===============================================
key                       shape                meaning
========================  ===================  ===============================================
``pos``                   [N, 3] float         Cartesian positions, Angstrom
``z``                     [N] long             atomic numbers
``edge_index``            [2, E] long          source, target atom of each directed edge
``edge_shift``            [E, 3] float         periodic shift: vec = pos[t] - pos[s] + shift
``site_y``                [N, C, K] float      normalised FEFF spectrum of each site/channel
``site_y_mask``           [N, C] bool          which site spectra exist
``site_y_tiers``          [N, T, C, K] float   the same in each further FEFF tier (only with T >= 1)
``site_y_tiers_mask``     [N, T, C] bool       which of those exist
``env_member_index``      [M] long             member atoms of all environments (node index)
``env_member_env``        [M] long             which environment each member row belongs to
``env_centre_index``      [n_env] long         centre atom of each environment
``env_y``                 [n_env, C, K] float  environment-averaged spectra
``env_y_mask``            [n_env, C] bool      which environment spectra exist
``env_content``           [n_env, 5] float     Li, Ni, Mn, Co, O atom fractions
``env_defects``           [n_env, 2] float     o_vacancy, antisite (0/1)
``sid``                   [1] long             structure id in its dataset
========================  ===================  ===============================================

C follows :data:`gnnspec.channels.CHANNEL_NAMES`, K is the common grid length.
"""

POS = "pos"
Z = "z"
EDGE_INDEX = "edge_index"
EDGE_SHIFT = "edge_shift"
SITE_Y = "site_y"
SITE_Y_MASK = "site_y_mask"
SITE_Y_TIERS = "site_y_tiers"
SITE_Y_TIERS_MASK = "site_y_tiers_mask"
ENV_MEMBER_INDEX = "env_member_index"
ENV_MEMBER_ENV = "env_member_env"
ENV_CENTRE_INDEX = "env_centre_index"
ENV_Y = "env_y"
ENV_Y_MASK = "env_y_mask"
ENV_CONTENT = "env_content"
ENV_DEFECTS = "env_defects"
SID = "sid"

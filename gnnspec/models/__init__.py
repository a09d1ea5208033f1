"""Models: structure encoder (backbone), forward spectra head with per-atom contributions,
structure and spectrum embeddings in one space, property heads, factory and checkpoints."""

from gnnspec.models.config import ModelConfig
from gnnspec.models.factory import MODELS, build_model, load_checkpoint
from gnnspec.models.joint import JointModel

__all__ = ["MODELS", "JointModel", "ModelConfig", "build_model", "load_checkpoint"]

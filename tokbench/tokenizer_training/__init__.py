"""Training of tokbench's in-house tokenizers (`tokbench train-robust`): RobustTok latent perturbation, Reg-VQ
regularisers and the ViT-VQGAN recipe in one trainer. See `trainer.py` for the order of the loss terms."""

from .config import DEFAULTS, load_config, make_config
from .trainer import Trainer

__all__ = ["DEFAULTS", "Trainer", "load_config", "make_config"]

"""tokbench's generator side: pre-tokenised data, training, sampling and gFID for the in-house AR generators
(LlamaGen-style GPT and RAR, `tokbench.gen.archs`).

Entry points: `gfid(generator, tokenizer, reference, extractor, settings=…, num=…, seed=…, batch_size=…)` →
(value, protocol); `load_generator(path)`; `generate(model, labels, noise, settings)`; `train(tokens, config, out)`.
"""

from .checkpoint import GeneratorMeta, TokenizerRef, load_generator, save_generator
from .gfid import class_labels, gfid, sample_images
from .reference import GfidReference, fd_reference, resolve_reference
from .sampling import SamplingConfig, cfg_scale, generate, pick, sample_noise, sample_seeds

__all__ = ["GeneratorMeta", "TokenizerRef", "load_generator", "save_generator", "gfid", "class_labels",
           "sample_images", "GfidReference", "fd_reference", "resolve_reference", "SamplingConfig", "cfg_scale", "generate", "pick", "sample_noise", "sample_seeds"]

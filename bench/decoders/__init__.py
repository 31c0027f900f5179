"""Decoders: an axis of their own, usable by any method.

* ``bench.decoders.config``: ``DecoderConfig``, the ``transformer`` and ``gpt2`` presets;
* ``bench.decoders.model``: ``CaptionDecoder`` (build, train, decode, save);
* ``bench.decoders.batching``: training batches, length-sorted pieces, padding;
* ``bench.decoders.mappers``: embedding -> prefix vectors (linear, MLP, transformer);
* ``bench.decoders.transformer`` / ``gpt2``: the two networks; ``search``: greedy and beam search;
  ``fusion``: SynTIC's tag fusion; ``vocab``: the vocabularies;
* ``bench.decoders.fit_cache``: ``fit_decoder``, through which two methods whose decoders train
  on the very same inputs (nonoise and decap, say) share one fit.
"""

from bench.decoders.config import PRESETS, DecoderConfig, preset
from bench.decoders.model import CaptionDecoder, FitStats, NonFiniteLoss

__all__ = ["PRESETS", "CaptionDecoder", "DecoderConfig", "FitStats", "NonFiniteLoss", "preset"]

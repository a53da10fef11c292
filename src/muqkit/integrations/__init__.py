"""muqkit models inside the benchmarks where the field compares music representations.

* :mod:`muqkit.integrations.audio_items`: audio items as benchmark harnesses hand them over (decoded arrays,
  encoded bytes, paths) to mono waveforms at the model's rate, through muqkit's audio layer;
* :mod:`muqkit.integrations.mteb_encoder`: MuQ and MuQ-MuLan as MTEB encoders (MAEB; the ``mteb`` extra);
* :mod:`muqkit.integrations.hear_eval`: hear-eval-kit's embedding runner on :mod:`muqkit.hear`, and a
  prediction step on its outputs scored by its own score functions (the ``hear`` extra).

Each module imports its harness when it is imported, never when :mod:`muqkit` is.
"""

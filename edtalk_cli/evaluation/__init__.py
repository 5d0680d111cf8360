"""Measurements of a model against the synthetic world's exact ground truth.

- :mod:`~edtalk_cli.evaluation.systems`: what is measured (a model bundle through the render
  engine, or the synthetic renderer itself as the ceiling);
- :mod:`~edtalk_cli.evaluation.harness`: ``edtalk eval`` (self- and cross-reenactment, lip sync,
  leakage, expression transfer, emotion presets; JSON report and contact sheet);
- :mod:`~edtalk_cli.evaluation.probes`: ``edtalk train evaluate`` (quick probes of a generator and
  Audio2Lip as networks, training checkpoints included).

This package and ``training/`` are the only library code that uses :mod:`edtalk_cli.synthetic`.
"""

"""Grokking on modular arithmetic, as a plugin: everything the generic core does not know about.

It plugs in through the extension points a user's own task has: callbacks named in config
(``configs/data/modular.yaml`` attaches the Fourier progress measures; Grokfast is a callback),
report sections registered by task, and the words of ``callbacks.run_summary`` (``grok_epoch``).
The core (``project.train``, ``project.lit_module``, ``project.runs``' generic tools) never
imports this package.
"""

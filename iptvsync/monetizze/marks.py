"""Marks shared by the receiver, ``simulate`` and ``status`` (a module of constants: ``status``
imports it without the parser).

A simulated sale code starts with ``SIMULATED_SALE_PREFIX``: never a real sale's, and ``status``
tells iptvsync's own postbacks from Monetizze's by it. ``KEY_REFUSED`` is the receiver's reason
for a refused postback shaped like Monetizze's (its content type, its fields) whose chave_unica is
wrong: real sales are being refused, and ``status`` fails on one.
"""

SIMULATED_SALE_PREFIX = "SIM"
KEY_REFUSED = "chave_unica wrong on a Monetizze postback"

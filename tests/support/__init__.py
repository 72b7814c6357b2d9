"""Helpers the tests and benchmarks share: fake panels, fake Monetizze, SMTP, installs."""

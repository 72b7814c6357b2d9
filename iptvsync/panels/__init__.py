"""Panel adapters: one module per family behind ``base.Panel``; ``registry`` builds them from
``[panels.<name>]`` and is the only place that knows the families' kind strings."""

"""WhatsApp gateways: one module per gateway behind ``base.Gateway``, named only in
``registry``; ``phone`` (E.164), ``render`` (text templates), ``_http`` (the shared HTTP leg)."""

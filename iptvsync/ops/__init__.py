"""What operators do besides ``process``: manage subscriptions (``subs``), reconcile with
Monetizze and the panels (``reconcile``), check an install (``doctor``) and its health."""

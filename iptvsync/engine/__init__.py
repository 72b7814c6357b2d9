"""``process``: apply the inbox to the ledger, sync panels, send mail, sweep expiries."""

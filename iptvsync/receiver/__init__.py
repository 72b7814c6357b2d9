"""The postback receiver: a WSGI app (``app``) on cheroot (``server``), writing through a
group-commit writer process (``writer``). It only verifies, stores and answers."""

"""``iptvsync simulate``: post a realistic postback to the running receiver (go-live checks)."""

from __future__ import annotations

import typer

from .app import app, load

sim_app = typer.Typer(no_args_is_help=True, help="Post realistic postbacks to the running receiver.")
app.add_typer(sim_app, name="simulate")


def _post(ctx: typer.Context, kind: str, email: str, product: str | None, sale: str | None,
          subscription: str | None, parcela: int, url: str | None, insecure: bool) -> None:
    import warnings

    import requests
    import urllib3

    from ..monetizze.simulate import build_postback

    cfg = load(ctx)
    product = product or next(iter(cfg.products), None)
    if product is None:
        typer.echo(f"error: no [products.<code>] in {cfg.path}", err=True)
        raise typer.Exit(2)
    payload, body = build_postback(kind, chave_unica=cfg.require("MONETIZZE_CHAVE_UNICA"), product=product,
                                   email=email, sale=sale, subscription=subscription, parcela=parcela)
    if url is None:
        r = cfg.receiver
        scheme = "https" if r.certfile else "http"
        host = "127.0.0.1" if r.host in ("0.0.0.0", "::", "") else r.host
        url = f"{scheme}://{host}:{r.port}{r.path}"
    try:
        with warnings.catch_warnings():
            if insecure:  # asked for: urllib3's InsecureRequestWarning would only repeat the option back
                warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            resp = requests.post(url, data=body, timeout=15, verify=not insecure,
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    except requests.exceptions.SSLError:
        typer.echo(f"error: the receiver's TLS certificate at {url} is not trusted (self-signed?); for a test,"
                   " pass --insecure", err=True)
        raise typer.Exit(1) from None
    except requests.RequestException as exc:
        typer.echo(f"error: could not reach the receiver ({type(exc).__name__}); is `iptvsync serve` running?",
                   err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{kind}: sale {payload['venda']['codigo']}, subscription {payload['assinatura']['codigo']}, "
               f"parcela {parcela} -> HTTP {resp.status_code} {resp.text.strip()}")
    if resp.status_code != 200:
        raise typer.Exit(1)


def _command(kind: str, doc: str):
    def command(ctx: typer.Context, email: str = typer.Option("comprador@example.com", help="Buyer email."),
                product: str = typer.Option(None, help="Product code (default: the first in [products])."),
                sale: str = typer.Option(None, help="Sale code (default: a fresh SIM… code)."),
                subscription: str = typer.Option(None, help="Subscription code (renewal/cancel: the purchase's)."),
                parcela: int = typer.Option(1, help="Charge number (2 for the first renewal)."),
                url: str = typer.Option(None, help="Receiver URL (default: from [receiver])."),
                insecure: bool = typer.Option(False, "--insecure",
                                              help="Do not verify the TLS certificate (a self-signed one).")):
        _post(ctx, kind, email, product, sale, subscription, parcela, url, insecure)

    command.__doc__ = doc
    sim_app.command(kind)(command)


_command("purchase", "A paid first charge of a new subscription.")
_command("renewal", "A paid renewal charge (pass --subscription and --parcela 2).")
_command("cancel", "A subscription cancellation (pass --subscription).")
_command("refund", "A refund of a sale (pass --sale and --subscription).")
_command("dispute", "A disputed sale (pass --sale and --subscription).")

"""`ratchet up`, `down` and `codec-server`: the embedded services."""

from __future__ import annotations

import asyncio
import os
from typing import Annotated

import typer
from rich.markup import escape

from ..errors import ConfigError
from ._common import TranscriptStoreUrl, err, out


def up(
    llm: Annotated[bool, typer.Option(help="Also start the embedded local LLM.")] = True,
    codec: Annotated[
        bool,
        typer.Option(
            help="Give the Web UI a codec endpoint, so it shows each model call's exact "
            "prompt (read from RATCHET_TRANSCRIPT_STORE's store) and decrypts payloads "
            "when RATCHET_ENCRYPTION_KEYS is set."
        ),
    ] = True,
) -> None:
    """Start the embedded Temporal dev server (Web UI on :8233, showing exact prompts) and
    the local LLM."""
    from ..local import LocalServiceError
    from ..local import up as local_up

    try:
        services = local_up(
            llm=llm, codec=codec, on_progress=lambda line: err.print(f"  {line}", markup=False)
        )
    except LocalServiceError as e:
        err.print(f"[red]error:[/] {escape(str(e))}")
        raise typer.Exit(1) from None
    if services.temporal_address:
        asyncio.run(_register(services.temporal_address))
    out.print(f"Temporal  {services.temporal_address}   Web UI {services.ui_url}")
    if services.codec_url:
        out.print(f"codec     {services.codec_url}   (the Web UI shows the exact prompts)")
    if services.llm_base_url:
        out.print(f"local LLM {services.llm_base_url}")


async def _register(address: str) -> None:
    from .._connect import connect
    from .._search import register_search_attributes

    await register_search_attributes(await connect(address))


def down() -> None:
    """Stop the embedded services that `ratchet up` started."""
    from ..local import down as local_down

    lines = local_down()
    for line in lines or ["nothing to stop"]:
        out.print(line)


def codec_server(
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = 8888,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    origin: Annotated[
        list[str] | None,
        typer.Option(
            help="Web UI origin allowed by CORS; repeat for several "
            "(default: http://127.0.0.1:8233 and http://localhost:8233)."
        ),
    ] = None,
    no_auth: Annotated[
        bool,
        typer.Option(
            "--no-auth",
            help="Serve without a token (127.0.0.1 only), e.g. for the embedded Web UI, "
            "which sends none.",
        ),
    ] = False,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            help="With --no-auth, a host name it also answers besides 127.0.0.1 and "
            "localhost (the public name an authenticating reverse proxy forwards); repeat "
            "for several."
        ),
    ] = None,
    transcript_store: TranscriptStoreUrl = None,
    expand: Annotated[
        bool,
        typer.Option(
            "--expand/--no-expand",
            help="Show each model call's input with its transcript references expanded "
            "into the exact prompt and tools, read from the workers' transcript store.",
        ),
    ] = True,
    generate_key: Annotated[
        bool, typer.Option("--generate-key", help="Print a new 'id:base64key' entry and exit.")
    ] = False,
) -> None:
    """Decode payloads for the Temporal Web UI: the exact prompts, decrypted.

    Each model call's input is shown with the messages and tools it sent (from the
    transcript store); with RATCHET_ENCRYPTION_KEYS set, payloads are decrypted too.
    Clients send `Authorization: Bearer $RATCHET_CODEC_TOKEN`. Point the Web UI's
    codec server setting (or `temporal ... --codec-endpoint`) at this address.
    """
    from contextlib import suppress
    from datetime import UTC, datetime

    from ..codec import DEFAULT_ORIGINS, TOKEN_ENV, CodecServer, codec_from_env
    from ..codec import generate_key as new_key
    from ..transcripts import store_from_url

    if generate_key:
        out.print(f"k{datetime.now(UTC):%Y%m%d}:{new_key()}", markup=False)
        return
    try:
        codec = codec_from_env()
        if codec is None and not expand:
            raise ConfigError(
                "nothing to decode: set RATCHET_ENCRYPTION_KEYS (or RATCHET_ENCRYPTION_KEYS_FILE) "
                "to the workers' keys (`ratchet codec-server --generate-key` makes one), or "
                "drop --no-expand to show exact prompts"
            )
        token = os.environ.get(TOKEN_ENV) or None
        if token is None and not no_auth:
            raise ConfigError(
                f"set {TOKEN_ENV} to the secret clients send as 'Authorization: Bearer <token>', "
                "or pass --no-auth to serve on 127.0.0.1 without one"
            )
        store = store_from_url(transcript_store) if expand else None
        server = CodecServer(
            codec,
            token=token,
            origins=origin or DEFAULT_ORIGINS,
            host=host,
            port=port,
            transcript_store=store,
            allowed_hosts=allow_host or (),
        )
    except ConfigError as e:
        err.print(f"[red]error:[/] {escape(str(e))}")
        raise typer.Exit(1) from None
    auth = "bearer token required" if token else "no token required"
    keys = (
        f"keys {', '.join(codec.key_ids)}, active {codec.active_key_id}"
        if codec is not None
        else "no keys: payloads are not decrypted"
    )
    prompts = f"prompts from {store!r}" if store is not None else "prompts not expanded"
    err.print(
        f"codec server on {server.url} ({auth}; {keys}; {prompts}; "
        f"origins {', '.join(origin or DEFAULT_ORIGINS)}); Ctrl-C to stop",
        markup=False,
    )
    with suppress(KeyboardInterrupt):
        server.serve_forever()

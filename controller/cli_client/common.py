"""What every client subcommand shares: --url/--token/--json, the client, and printing."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from common.settings import Settings
from controller.cli_client.client import ApiClient, ApiError, split_urls

Handler = Callable[[ApiClient, argparse.Namespace], int]


class InputError(Exception):
    """Input the command cannot use (an unreadable ``--file``, a malformed ``KEY=VALUE``),
    found before anything is sent: reported like an API error, as one ``error:`` line."""


def client_options() -> argparse.ArgumentParser:
    """A parent parser: the flags each client subcommand accepts after its own name."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--url",
        action="append",
        help="controller base URL, repeatable or comma separated (default: CHRONORAFT_URL, "
        "else http://127.0.0.1:8080-8082); the next one is tried when one does not answer",
    )
    parent.add_argument(
        "--token", help="API token sent as 'Authorization: Bearer ...' (default CHRONORAFT_TOKEN)"
    )
    parent.add_argument("--json", action="store_true", help="print the API's JSON")
    return parent


def make_client(args: argparse.Namespace) -> ApiClient:
    settings = Settings.from_env()
    urls = split_urls(args.url) if args.url else settings.url
    return ApiClient(urls, token=args.token or settings.token)


def run(handler: Handler) -> Callable[[argparse.Namespace], int]:
    """The argparse ``func``: build the client, call the handler, turn API errors and
    unusable input into ``error: ...`` and exit 1."""

    def call(args: argparse.Namespace) -> int:
        try:
            return handler(make_client(args), args)
        except (ApiError, InputError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    return call


def emit(args: argparse.Namespace, data: Any, render: Callable[[Any], str]) -> None:
    print(json.dumps(data, indent=2) if args.json else render(data))

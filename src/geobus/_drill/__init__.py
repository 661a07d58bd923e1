"""Placeholder while this command is being built (issue 5)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


add_send_arguments = add_receive_arguments = add_arguments


def run(args: argparse.Namespace) -> int:
    raise SystemExit(f"geobus {args.command}: not built yet")


run_send = run_receive = run

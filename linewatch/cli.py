"""The ``linewatch`` command: one click group whose subcommands load lazily.

Subcommands live in the package that implements them and are imported only when invoked, so a
gateway without the ``train`` extra can run the runtime, and ``linewatch train`` there explains
which extra to install instead of printing a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util

import click

from edge_runtime import __version__

# name -> ("module:attribute", short help, extra that provides it or None)
LAZY_COMMANDS: dict[str, tuple[str, str, str | None]] = {
    "simulate": ("train.cli:simulate", "Write a synthetic plant with labelled faults.", "train"),
    "train": ("train.cli:train", "Train an anomaly detector on normal sensor data.", "train"),
    "evaluate": ("linewatch.evaluate:evaluate", "Score labelled data with a bundle (no torch) or a run; pooled metrics.", None),
    "export": ("export.cli:export", "Export a run to a verified model bundle.", "train"),
    "inspect": ("edge_runtime.commands:inspect", "Summarise a bundle and verify its hashes.", None),
    "score": ("edge_runtime.commands:score", "Score a CSV file offline with a bundle.", None),
    "run": ("edge_runtime.commands:run", "Run the MQTT edge runtime.", None),
    "doctor": ("edge_runtime.commands:doctor", "Say what this machine offers and what the configuration gets from it.", None),
    "config": ("edge_runtime.commands:config", "Print the shipped reference files (configuration, systemd unit, mosquitto).", None),
    "sparkplug-node": ("linewatch.sparkplug_replay:sparkplug_node", "Replay CSV files as a Sparkplug B edge node.", None),
    "bench": ("linewatch.bench:bench", "Measure inference backends on this machine (latency, throughput, memory).", "bench"),
    "demo": ("linewatch.demo:demo", "The whole story on a simulated plant, end to end.", "train"),
}


# Modules each extra provides; checked (without importing them) before a subcommand is loaded,
# because subcommands import their heavy dependencies only when they run.
EXTRA_MODULES = {"train": ("torch", "pandas", "onnx", "onnxscript", "scipy", "matplotlib"), "bench": ("hdrh",)}


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _missing_extra_command(name: str, extra: str, missing: str) -> click.Command:
    """A stand-in command that explains which extra provides ``name``."""

    @click.command(name=name, context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    def stand_in() -> None:
        raise click.ClickException(
            f"'linewatch {name}' needs the '{extra}' extra (not installed: {missing}): pip install 'linewatch[{extra}]'"
        )

    stand_in.help = LAZY_COMMANDS[name][1]
    return stand_in


class LazyGroup(click.Group):
    """A click group that imports each subcommand's module only when that subcommand runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """All subcommand names, without importing any of them."""
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import and return the subcommand, or a stand-in when its extra is missing."""
        if cmd_name not in LAZY_COMMANDS:
            return super().get_command(ctx, cmd_name)
        target, _, extra = LAZY_COMMANDS[cmd_name]
        module_name, attribute = target.split(":")
        if extra is not None:
            missing = [m for m in EXTRA_MODULES[extra] if not _available(m)]
            if missing:
                return _missing_extra_command(cmd_name, extra, ", ".join(missing))
        return getattr(importlib.import_module(module_name), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List subcommands with their short help from the table, importing nothing."""
        rows = [(name, LAZY_COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="linewatch")
def main() -> None:
    """linewatch: autoencoder anomaly detection from the workstation to the factory edge."""

"""``linewatch sparkplug-node``: replay CSV files as a Sparkplug B edge node (the demo, tests, commissioning a plant).

A tool, not part of a gateway: it publishes what a Sparkplug plant would, through the runtime's own
:class:`~edge_runtime.sparkplug.node.EdgeNode`.
"""

from __future__ import annotations

import sys
import time

import click

from edge_runtime.contract.errors import LinewatchError
from edge_runtime.sparkplug.node import EdgeNode


@click.command("sparkplug-node")
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--broker", default="127.0.0.1:1883", show_default=True, help="HOST:PORT of the MQTT broker.")
@click.option("--group", default="plant", show_default=True, help="Sparkplug group id.")
@click.option("--node", default="sim", show_default=True, help="Sparkplug edge node id.")
@click.option("--features", default=None, help="Columns to publish as metrics, comma-separated.")
@click.option("--bundle", "bundle_path", default=None, type=click.Path(exists=True, file_okay=False), help="...or the features of this bundle.")
@click.option("--series-column", default="machine", show_default=True, help="Column whose values are the devices (absent: one device per file).")
@click.option("--time-column", default=None, help="Time column (default: time/timestamp/datetime).")
@click.option("--rate", default=500.0, show_default=True, help="DATA messages per second.")
@click.option("--gap-every", default=0, show_default=True, help="Leave out every Nth DATA message: a sequence gap (0: none).")
def sparkplug_node(data, broker, group, node, features, bundle_path, series_column, time_column, rate, gap_every):
    """Replay CSV files as a Sparkplug B edge node whose devices are the series (e.g. `linewatch simulate` output):
    NBIRTH/DBIRTH with aliases, alias-only DDATA in time order, rebirths on request, NDEATH at the end.
    """
    from edge_runtime.contract.bundle import load_bundle
    from edge_runtime.contract.tables import csv_header, read_csv
    from edge_runtime.sparkplug import sparkplug_b_pb2 as pb

    if bool(features) == bool(bundle_path):
        raise click.UsageError("give --features or --bundle (one of them)")
    try:
        names = features.split(",") if features else load_bundle(bundle_path).features
        series = [s for path in data for s in read_csv(path, names, series_column if series_column in csv_header(path) else None, time_column)]
    except LinewatchError as error:
        raise click.ClickException(str(error)) from None
    rows = sorted(((float(t), s.name, [None if v != v else float(v) for v in values]) for s in series for t, values in zip(s.time, s.values)),
                  key=lambda row: row[0])
    host, _, port = broker.rpartition(":")
    devices = {s.name: [(name, pb.Double) for name in names] for s in series}
    try:
        edge = EdgeNode(host or "127.0.0.1", int(port), group, node, devices).start()
    except (OSError, ValueError) as error:
        raise click.ClickException(f"--broker {broker}: {error}") from None
    try:
        with click.progressbar(length=len(rows), label=f"spBv1.0/{group}/DDATA/{node}/<device>", file=sys.stderr) as bar:
            sent = replay(edge, ((device, t, values) for t, device, values in rows), rate, gap_every, bar.update)
    finally:
        edge.stop()
    click.echo(f"published {sent} DDATA messages for {len(devices)} device(s) as edge node {group}/{node} "
               f"({edge.births} birth(s), {edge.rebirth_requests} rebirth request(s) answered)")


def replay(node: EdgeNode, rows, rate: float, gap_every: int = 0, progress=None) -> int:
    """Publish ``rows`` (``(device, time in s, values)``, in time order) as DATA at ``rate`` messages a second, paced
    against intended send times (a slow moment is caught up, not carried on); every ``gap_every``-th message
    (0: none) is left out as lost, so a consumer sees a sequence gap and asks for a rebirth. Returns the messages sent.
    """
    start, sent = time.monotonic(), 0
    for k, (device, t, values) in enumerate(rows):
        ahead = start + k / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        if gap_every and k % gap_every == gap_every - 1:
            node.skip()
        else:
            node.publish(device, values, int(round(t * 1000)))
            sent += 1
        if progress is not None:
            progress(1)
    return sent

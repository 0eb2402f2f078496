"""What ships was generated from what is committed: the Sparkplug B classes are protoc's output for the schema."""

import subprocess
import sys
from pathlib import Path


def test_the_generated_classes_match_the_schema(tmp_path):
    """edge_runtime/sparkplug/sparkplug_b_pb2.py is what protoc makes of sparkplug_b.proto (`make proto`; grpcio-tools is in
    the dev extra).
    """
    source = Path(__file__).parents[2] / "edge_runtime" / "sparkplug"
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{source}", f"--python_out={tmp_path}", "sparkplug_b.proto"], check=True)
    assert (tmp_path / "sparkplug_b_pb2.py").read_text() == (source / "sparkplug_b_pb2.py").read_text()

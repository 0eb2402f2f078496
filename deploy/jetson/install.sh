#!/usr/bin/env bash
# Install the linewatch runtime on a Jetson with JetPack 6 (L4T r36.x) as a hardened systemd service.
# Usage (as root, from the folder holding the linewatch wheel): deploy/jetson/install.sh linewatch-*.whl
set -euo pipefail
WHEEL=${1:?usage: install.sh linewatch-VERSION-py3-none-any.whl}
ORT_INDEX=${ORT_INDEX:-https://pypi.jetson-ai-lab.io/jp6/cu126}  # onnxruntime-gpu for JetPack 6 (CUDA 12.6)

id linewatch >/dev/null 2>&1 || useradd --system --home-dir /var/lib/linewatch --shell /usr/sbin/nologin linewatch
# --system-site-packages: the venv sees JetPack's TensorRT Python bindings (python3-libnvinfer).
python3 -m venv --system-site-packages /opt/linewatch/venv
/opt/linewatch/venv/bin/pip install --extra-index-url "$ORT_INDEX" onnxruntime-gpu
/opt/linewatch/venv/bin/pip install "$WHEEL"
install -d -m 0755 /etc/linewatch /etc/linewatch/bundles
[ -e /etc/linewatch/gateway.toml ] || /opt/linewatch/venv/bin/linewatch config example gateway -o /etc/linewatch/gateway.toml
/opt/linewatch/venv/bin/linewatch config example unit > /etc/systemd/system/linewatch.service
# The GPU's device nodes; the shipped unit's hardening leaves /dev as it is, so only the group membership is needed.
usermod -a -G video,render linewatch 2>/dev/null || usermod -a -G video linewatch
systemctl daemon-reload
/opt/linewatch/venv/bin/linewatch doctor --config /etc/linewatch/gateway.toml || true
echo "edit /etc/linewatch/gateway.toml, copy bundles to /etc/linewatch/bundles, then: systemctl enable --now linewatch"

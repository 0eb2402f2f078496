"""linewatch edge runtime: MQTT in, per-machine windows, latency-budgeted scoring, anomaly events out.

This package never imports torch, ``train`` or ``export``: a gateway installs only the base
distribution (numpy, onnxruntime, paho-mqtt, click).
"""

__version__ = "0.1.0"

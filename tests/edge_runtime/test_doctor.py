"""`linewatch doctor` on this machine, against a real mosquitto, and with faked GPU provider lists."""

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from edge_runtime import doctor
from edge_runtime.contract.bundle import load_bundle


def run_doctor(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "linewatch", "doctor", *map(str, args)], capture_output=True, text=True, timeout=120)


def gateway(tmp_path, broker_port: int, bundle, **broker) -> str:
    extra = "".join(f"{key} = {json.dumps(value)}\n" for key, value in broker.items())
    path = tmp_path / "gw.toml"
    path.write_text(f'[broker]\nport = {broker_port}\n{extra}[runtime]\nstate_dir = "{tmp_path / "state"}"\n'
                    f'[[models]]\nname = "pumps"\nbundle = "{bundle}"\n')
    return str(path)


def by_check(report: dict) -> dict:
    return {f["check"]: f for f in report["findings"]}


def test_doctor_describes_this_machine(tmp_path):
    result = run_doctor("--json")
    assert result.returncode == 0, result.stdout + result.stderr
    found = by_check(json.loads(result.stdout))
    assert found["python"]["status"] == "ok" and found["sqlite"]["status"] == "ok"
    assert "CPUExecutionProvider" in found["onnxruntime"]["detail"]
    assert {"platform", "cuda", "tensorrt", "gpu"} <= set(found)


def test_doctor_checks_the_configuration_against_a_real_broker(broker, runtime_bundle, tmp_path):
    result = run_doctor("--json", "--config", gateway(tmp_path, broker.port, runtime_bundle))
    assert result.returncode == 0, result.stdout
    found = by_check(json.loads(result.stdout))
    assert found["broker"]["status"] == "ok" and "reachable (plain TCP)" in found["broker"]["detail"]
    assert found["state"]["status"] == "ok" and not (tmp_path / "state").exists()  # checked, not created
    assert "hashes verified" in found["model pumps"]["detail"] and found["model pumps backend"]["status"] == "ok"
    assert found["clock"]["status"] in ("ok", "warn")


def test_doctor_names_the_blockers_and_exits_1(broker, runtime_bundle, tmp_path):
    down = run_doctor("--config", gateway(tmp_path, 1, runtime_bundle))
    assert down.returncode == 1 and "fail  broker" in down.stdout and "1 blocker(s)" in down.stdout
    tls = run_doctor("--json", "--config", gateway(tmp_path, broker.port, runtime_bundle, tls=True))  # a plain-TCP broker
    assert tls.returncode == 1 and "TLS handshake failed" in by_check(json.loads(tls.stdout))["broker"]["detail"]


@pytest.mark.parametrize("providers,backend,allow_fallback,status", [
    (["CPUExecutionProvider"], "onnxruntime", False, "ok"),
    (["CPUExecutionProvider"], "onnxruntime-cuda", False, "fail"),
    (["CPUExecutionProvider"], "onnxruntime-cuda", True, "warn"),
    (["CUDAExecutionProvider", "CPUExecutionProvider"], "onnxruntime-cuda", False, "ok"),
    (["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"], "onnxruntime-tensorrt", False, "ok"),
    (["CUDAExecutionProvider", "CPUExecutionProvider"], "onnxruntime-tensorrt", False, "fail"),
    (["CPUExecutionProvider"], "tensorrt", False, "fail"),  # no engine in the bundle, no bindings
])
def test_backend_compatibility_with_faked_provider_lists(runtime_bundle, providers, backend, allow_fallback, status):
    model = SimpleNamespace(name="pumps", bundle=str(runtime_bundle), backend=backend, precision="fp32", allow_fallback=allow_fallback)
    found = {f.check: f for f in doctor.bundle_findings(model, load_bundle(runtime_bundle), providers)}
    assert found["model pumps backend"].status == status, found["model pumps backend"].detail


def test_the_machine_report_follows_the_provider_list(monkeypatch):
    monkeypatch.setattr(doctor, "onnxruntime_providers", lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    found = {f.check: f for f in doctor.machine_findings()}
    assert found["cuda"].status == "ok" and "TensorRT provider is available" in found["tensorrt"].detail
    monkeypatch.setattr(doctor, "onnxruntime_providers", lambda: None)
    found = {f.check: f for f in doctor.machine_findings()}
    assert found["onnxruntime"].status == "fail" and found["cuda"].status == "warn"

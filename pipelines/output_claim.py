"""A build's claim on its output folder: one build at a time prepares, writes and commits it.

The claim is `.build-claim.json` in the output folder, naming its holder (host, pid, start
time, command). A second build that finds a live claim refuses in one line naming the holder,
before it deletes or writes anything; a claim whose holder is gone is taken over, with a
warning naming it. The claim is removed when the build ends, whatever the outcome.

- Local (and NFS) folders: the holder keeps an exclusive `flock` on the claim file for the
  whole build. The kernel releases it when the process ends, even on SIGKILL, so a claim that
  can be locked is stale by definition: no clock, no pid guessing.
- gs://: no locks, so the claim object is created only if absent (`ifGenerationMatch=0`), and
  the holder rewrites it every HEARTBEAT_SECONDS (matching its own generation). A claim whose
  heartbeat is older than STALE_SECONDS is taken over by replacing exactly that generation, so
  of two builds taking over one stale claim only one succeeds. A holder whose heartbeat finds
  the claim taken over has lost it: its build stops before committing the manifest.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
import uuid

from pipelines.errors import LaunchError

CLAIM = ".build-claim.json"
HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 180.0


class OutputClaimed(LaunchError):
    """Another build holds the output folder; the message names it."""


def _holder() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex,
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "heartbeat": time.time(), "command": " ".join(sys.argv)[:300]}


def describe(holder: dict | None) -> str:
    """`holder` in words, for the messages."""
    if not holder:
        return "a build that has not yet written its name"
    return (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
            f" ({holder.get('command') or 'command unknown'})")


def _refusal(output_dir: str, holder: dict | None) -> str:
    return (f"{output_dir} is being written by another build ({describe(holder)}); wait for "
            f"it to finish, or choose another --output-dir")


class _LocalClaim:
    def __init__(self, output_dir: str, warn):
        self.path = os.path.join(output_dir, CLAIM)
        self.output_dir, self.warn, self.fd, self.holder = output_dir, warn, None, _holder()

    def acquire(self) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise OutputClaimed(_refusal(self.output_dir, _read_local(self.path))) from None
            try:  # the file we locked may have been removed by its holder meanwhile
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        stale = _read_local(self.path)
        if stale:
            self.warn(f"{self.output_dir}: taking over the claim of a build that is no longer "
                      f"running ({describe(stale)})")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(self.holder).encode(), 0)
        self.fd = fd

    def check(self) -> None:
        """A local claim cannot be lost while its lock is held."""

    def release(self) -> None:
        if self.fd is not None:
            try:
                os.unlink(self.path)  # while still locked: nobody can lock it in between
            except FileNotFoundError:
                pass
            os.close(self.fd)
            self.fd = None


def _read_local(path: str) -> dict | None:
    try:
        with open(path, "rb") as handle:
            return json.loads(handle.read() or b"null")
    except (OSError, ValueError):
        return None


class _ObjectClaim:
    """The claim on gs://, through the google-cloud-storage client (Beam's GCS filesystem
    cannot make a write conditional on an object's generation)."""

    def __init__(self, output_dir: str, warn):
        from google.cloud import storage

        bucket, _, prefix = output_dir[len("gs://"):].partition("/")
        name = f"{prefix.rstrip('/')}/{CLAIM}" if prefix else CLAIM
        client = (storage.Client.create_anonymous_client()
                  if os.environ.get("STORAGE_EMULATOR_HOST") else storage.Client())
        self.blob = client.bucket(bucket).blob(name)
        self.output_dir, self.warn, self.holder = output_dir, warn, _holder()
        self.generation, self.lost, self._stop = None, None, threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _write(self, match: int) -> int | None:
        from google.api_core import exceptions

        self.holder["heartbeat"] = time.time()
        try:
            self.blob.upload_from_string(json.dumps(self.holder), if_generation_match=match,
                                         content_type="application/json")
        except exceptions.PreconditionFailed:
            return None
        return self.blob.generation

    def _current(self):
        from google.api_core import exceptions

        try:
            data = self.blob.download_as_bytes()
        except exceptions.NotFound:
            return None, None
        try:
            return json.loads(data), self.blob.generation
        except ValueError:
            return {}, self.blob.generation

    def acquire(self) -> None:
        for _ in range(5):
            self.generation = self._write(0)
            if self.generation is not None:
                break
            holder, generation = self._current()
            if generation is None:
                continue  # released meanwhile: try again
            age = time.time() - float((holder or {}).get("heartbeat", 0))
            if age < STALE_SECONDS:
                raise OutputClaimed(_refusal(self.output_dir, holder))
            self.generation = self._write(generation)
            if self.generation is not None:
                self.warn(f"{self.output_dir}: taking over the claim of a build whose heartbeat "
                          f"stopped {age:.0f} s ago ({describe(holder)})")
                break
        else:
            raise OutputClaimed(_refusal(self.output_dir, self._current()[0]))
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            generation = self._write(self.generation)
            if generation is None:
                self.lost = self._current()[0]
                return
            self.generation = generation

    def check(self) -> None:
        if self.lost is not None:
            raise OutputClaimed(f"{self.output_dir}: this build lost its claim on the folder to "
                                f"another build ({describe(self.lost)}); its manifest was not "
                                f"committed")

    def release(self) -> None:
        from google.api_core import exceptions

        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.lost is None and self.generation is not None:
            try:
                self.blob.delete(if_generation_match=self.generation)
            except (exceptions.NotFound, exceptions.PreconditionFailed):
                pass


class Claim:
    """`with Claim(output_dir, warn) as claim:` holds the folder for the block; `claim.check()`
    raises OutputClaimed if the claim was lost (before committing)."""

    def __init__(self, output_dir: str, warn):
        if output_dir.startswith("gs://"):
            self._impl = _ObjectClaim(output_dir, warn)
        elif "://" in output_dir:  # other object stores: no conditional writes through Beam
            self._impl = None
        else:
            os.makedirs(output_dir, exist_ok=True)  # (two builds may create it at once)
            self._impl = _LocalClaim(output_dir, warn)

    def __enter__(self):
        if self._impl:
            self._impl.acquire()
        return self

    def check(self) -> None:
        if self._impl:
            self._impl.check()

    def __exit__(self, *_):
        if self._impl:
            self._impl.release()

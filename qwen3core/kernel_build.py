"""Building a compiled kernel library into a cache directory so that no kill can wedge it.

``torch.utils.cpp_extension.load`` guards a build directory with a ``lock`` *file*: a process
killed mid-build (``timeout``, a cancelled CI job, ``docker stop``) leaves that file behind, and
every later process waits for it forever. :func:`install` builds another way:

- one lock per library, taken with ``fcntl.flock``: the kernel drops it when its holder dies,
  however it dies, so a killed build never blocks the next one;
- a bounded wait for a live holder (``QWEN3CORE_KERNEL_BUILD_WAIT`` seconds, 900 by default),
  then an error naming the holder's pid;
- the build runs in a fresh temporary directory beside the target, and the finished directory,
  completion marker included, is renamed into place: readers either see a whole library or
  none;
- whatever an earlier, killed build left (its temporary directories, a target directory without
  the marker) is removed under the lock before building again.

Readers need no lock: they load ``<target>/<library>`` only when ``<target>/<marker>`` exists.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.metadata
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from qwen3core.errors import BackendSelectionError

try:
    import fcntl
except ImportError:  # not POSIX: importing must still work (the plugin list must load)
    fcntl = None

WAIT_ENV = "QWEN3CORE_KERNEL_BUILD_WAIT"
DEFAULT_WAIT_SECONDS = 900.0
_POLL_SECONDS = 0.2


class KernelBuildTimeout(BackendSelectionError):
    """Another live process held a kernel build lock for longer than the bounded wait."""


def find_ninja() -> str | None:
    """The ninja torch's extension builder will run, or None. The ``ninja`` wheel (a
    dependency) puts one in the environment's scripts folder, which is not on PATH when the
    environment is used without activating it; then that folder is added to PATH."""
    found = shutil.which("ninja")
    if found is not None:
        return found
    try:
        import ninja  # the PyPI wheel that ships the binary
    except ImportError:
        return None
    for bin_dir in _ninja_wheel_dirs(ninja):
        if shutil.which("ninja", path=bin_dir):
            os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
            return shutil.which("ninja")
    return None


def _ninja_wheel_dirs(ninja: object) -> list[str]:
    """Folders the ninja wheel may have put its binary in: the running environment's scripts
    folder (``ninja.BIN_DIR``), and, for an environment that sees the wheel from another one
    (a venv with system site-packages), the folder its install record names."""
    dirs = [str(getattr(ninja, "BIN_DIR", ""))]
    try:
        dist = importlib.metadata.distribution("ninja")
    except importlib.metadata.PackageNotFoundError:
        return [d for d in dirs if d]
    for file in dist.files or ():
        if file.name in ("ninja", "ninja.exe"):
            dirs.append(str(Path(dist.locate_file(file)).resolve().parent))
    return [d for d in dirs if d]


def is_complete(target: Path, marker: str) -> bool:
    return (target / marker).is_file()


def install(target: Path, marker: str, build: Callable[[Path], str],
            *, what: str = "kernels") -> bool:
    """Make ``target`` a finished build: return at once when it is one, else build it.

    ``build(directory)`` compiles into the empty ``directory`` and returns the marker's text;
    it may load the library it built (a loaded file stays valid after the rename). Returns True
    when this call ran ``build``, False when a finished build was already there.
    """
    if is_complete(target, marker):
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / f"{target.name}.lock", what=what):
        if is_complete(target, marker):  # another process finished while we waited
            return False
        _remove_leftovers(target)
        staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.build-", dir=target.parent))
        try:
            text = build(staging)
            (staging / marker).write_text(text)
            os.replace(staging, target)  # atomic: target does not exist (removed above)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return True


def _remove_leftovers(target: Path) -> None:
    """Under the lock, nothing else is building: every staging directory is a dead build's,
    and a target without its marker is a half-built one from before this scheme."""
    for stale in target.parent.glob(f"{target.name}.build-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if target.exists():
        # Renamed first: an orphaned compiler still writing into it cannot stop the removal
        # from clearing the name.
        dead = target.parent / f"{target.name}.build-dead-{os.getpid()}-{time.time_ns()}"
        os.rename(target, dead)
        shutil.rmtree(dead, ignore_errors=True)


def wait_seconds() -> float:
    raw = os.environ.get(WAIT_ENV)
    if not raw:
        return DEFAULT_WAIT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        raise BackendSelectionError(f"{WAIT_ENV}={raw!r} is not a number of seconds") from None
    if not value >= 0:
        raise BackendSelectionError(f"{WAIT_ENV}={raw!r} must be zero or more seconds")
    return value


@contextlib.contextmanager
def _locked(path: Path, *, what: str) -> Iterator[None]:
    limit = wait_seconds()
    if fcntl is None:
        raise BackendSelectionError(f"building the {what} needs a POSIX system (fcntl locks)")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + limit
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
            holder = _holder(path)
            if time.monotonic() >= deadline:
                raise KernelBuildTimeout(
                    f"gave up after {limit:.0f} s waiting for process {holder} to finish "
                    f"building the {what} (lock {path}); wait for it or stop it (a stopped "
                    f"build releases the lock and the next run builds afresh), or raise "
                    f"{WAIT_ENV}")
            if not told:
                print(f"qwen3core: waiting (at most {limit:.0f} s, {WAIT_ENV}) for process "
                      f"{holder}, which is building the {what}", file=sys.stderr, flush=True)
                told = True
            time.sleep(_POLL_SECONDS)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays, harmless, for the next holder


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "?"
    except OSError:
        return "?"

"""A throwaway PostgreSQL server with pgvector, started and stopped by the tests.

Binaries: Debian's ``postgresql`` when the ``vector`` extension is installed for it
(``postgresql-N-pgvector``, in Debian from trixie on), else the server and pgvector
build that the ``pgserver`` wheel ships (the test extra installs it). The cluster
lives in a temporary directory, listens on a free loopback port, and is removed at
the end. PostgreSQL refuses to run as root: as root, it runs as the ``postgres`` user
(``make system-deps`` installs Debian's postgresql package, which creates that user).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _debian_bin() -> Path | None:
    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        version = Path(bindir).parent.name
        if Path(f"/usr/share/postgresql/{version}/extension/vector.control").is_file():
            return Path(bindir)
    return None


def _wheel_bin() -> Path | None:
    try:
        import pgserver
    except ImportError:
        return None
    bindir = Path(pgserver.__file__).parent / "pginstall" / "bin"
    share = bindir.parent / "share" / "postgresql" / "extension" / "vector.control"
    return bindir if share.is_file() else None


def postgres_bin() -> Path | None:
    """Where ``initdb``/``pg_ctl`` with pgvector are, or None."""
    return _debian_bin() or _wheel_bin()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _reachable_by_postgres(bindir: Path, root: Path) -> Path:
    """The binaries where the postgres user can run them.

    A virtual environment inside a private directory (a clone under /root) is out of
    the postgres user's reach: copy the installation next to the cluster then.
    """
    check = ["runuser", "-u", "postgres", "--", "test", "-x", str(bindir / "initdb")]
    if subprocess.run(check, capture_output=True, timeout=30).returncode == 0:
        return bindir
    # keep the layout around the installation: the wheel's binaries find their shared
    # libraries through RPATH $ORIGIN/../../../pgserver.libs
    package = bindir.parent.parent
    copy = root / "site" / package.name / bindir.parent.name
    shutil.copytree(bindir.parent, copy, symlinks=True)
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, root / "site" / libs.name, symlinks=True)
    subprocess.run(["chown", "-R", "postgres", str(root / "site")], check=True, timeout=120)
    return copy / "bin"


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Start a cluster; yield its connection URL (database ``pad``, user ``pad``)."""
    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError(
            "no PostgreSQL with pgvector found: run `make system-deps` and install the "
            "test extra (it brings the pgserver wheel's build)"
        )
    root = Path(tempfile.mkdtemp(prefix="pad-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
        bindir = _reachable_by_postgres(bindir, root)
    data, port = root / "data", _free_port()

    def run(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=120)

    run(str(bindir / "initdb"), "-D", str(data), "-U", "pad", "--auth=trust", "-E", "UTF8")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(root / "log"),
        "-w",
        "start",
    )
    try:
        run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "pad", "pad")
        yield f"postgresql://pad@127.0.0.1:{port}/pad"
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(root, ignore_errors=True)

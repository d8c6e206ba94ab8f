"""Where an unattended recovery's plan comes from: `rescue.plan=URL|PATH`.

- A PATH is looked up, in this order, on a disk (or ISO) labelled RESCUEPLAN, on the rescue ISO
  itself, and in the rescue system. The plan's relative paths (its settings, their passphrase
  and SSH key files) are relative to the plan file, so a plan disk carries everything one host
  needs, and the generic ISO carries nothing host-specific.
- An http(s) URL is downloaded into /run/rescue/plan, with the settings file it names by a
  relative path (fetched from the same place). TLS certificates are verified.
- An sftp URL likewise (rescue.live.sftp_fetch): sftp://USER@HOST[:PORT]/PATH?fingerprint=
  SHA256:... pins the server's host key (required), and &key=PATH names a private key file in
  the rescue system (on a site's own ISO, say); without a key, the password is typed at the
  console.

The plan disk is mounted read-only, with permissions that keep its secret files private (FAT
and ISO 9660 have no owners: their files are shown as root's, mode 0400/0600), because the
settings loader refuses secret files that others can read.
"""

from __future__ import annotations

import getpass
import os
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urljoin, urlparse

from rescue.errors import PlanError
from rescue.process.execute import run
from rescue.recovery.mounts import filesystem_device, mount

LABEL = "RESCUEPLAN"
PLAN_DIR = Path("/run/rescue/plan")
MEDIUM = Path("/run/live/medium")
FETCH_TIMEOUT = 30.0
MAX_PLAN_BYTES = 1 << 20
# Read-only, and owner-only where the file system has no modes of its own.
Fetch = Callable[[str], bytes]
MOUNT_OPTIONS = {"vfat": "ro,umask=0077", "iso9660": "ro,mode=0400,dmode=0500"}


def fetch_plan(
    spec: str,
    *,
    work: Path = PLAN_DIR,
    medium: Path = MEDIUM,
    ask_password: Callable[[str], str] = getpass.getpass,
) -> tuple[Path, str]:
    """The local path of the plan named by spec, and one line saying where it came from.

    ask_password is how an sftp URL without a key gets its password (typed at the console:
    a secret never goes on the kernel command line, which every process can read)."""
    scheme = urlparse(spec).scheme
    if scheme in ("http", "https"):
        return _download_plan(spec, work, _http_get)
    if scheme == "sftp":
        from rescue.live.sftp_fetch import SftpFetcher

        with SftpFetcher(spec, ask_password) as fetcher:
            return _download_plan(spec, work, fetcher.get)
    if scheme:
        raise PlanError(
            f"rescue.plan={_public(spec)}: only http://, https://, sftp:// and paths are supported"
        )
    return _find_plan(spec, work, medium)


def _find_plan(spec: str, work: Path, medium: Path) -> tuple[Path, str]:
    relative = spec.lstrip("/")
    searched = []
    device = filesystem_device(f"label:{LABEL}")
    if device is not None:
        point = work / "disk"
        fstype = _fs_type(device)
        mount(device, point, options=MOUNT_OPTIONS.get(fstype, "ro"))
        searched.append(f"the disk labelled {LABEL} ({device})")
        if (point / relative).is_file():
            return point / relative, f"from the disk labelled {LABEL} ({device})"
    searched.append(f"the rescue ISO ({medium})")
    if (medium / relative).is_file():
        return medium / relative, "from the rescue ISO"
    searched.append("the rescue system")
    if Path("/", relative).is_file():
        return Path("/", relative), "from the rescue system"
    raise PlanError(f"rescue.plan={spec}: no such file on {', '.join(searched)}")


def _fs_type(device: str) -> str:
    found = run(["blkid", "-o", "value", "-s", "TYPE", device], mask_output=False)
    return found.output.strip()


def _download_plan(url: str, work: Path, fetch: Fetch) -> tuple[Path, str]:
    """The plan at url, and the settings it names by a relative path, from the same place."""
    work.mkdir(parents=True, exist_ok=True, mode=0o700)
    plan = work / "plan.toml"
    _write_private(plan, fetch(url))
    try:
        settings = tomllib.loads(plan.read_text()).get("settings")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PlanError(f"the plan from {_public(url)} is not valid TOML: {exc}") from None
    if isinstance(settings, str) and not os.path.isabs(settings):
        if ".." in Path(settings).parts:
            raise PlanError(f"the plan from {_public(url)} names settings outside its directory")
        _write_private(work / settings, fetch(urljoin(url, settings)))
    return plan, f"downloaded from {_public(url)}"


def _public(url: str) -> str:
    """The URL without its query (an sftp URL's key path and fingerprint), for messages."""
    return url.split("?", 1)[0]


def _write_private(target: Path, data: bytes) -> None:
    """Mode 0600 from the start: the plan and settings are the keys to a backup."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _http_get(url: str) -> bytes:
    """The body at an http(s) URL, certificates verified, at most MAX_PLAN_BYTES."""
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as response:
            data = response.read(MAX_PLAN_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise PlanError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PlanError(f"cannot download {url}: {reason}") from None
    if len(data) > MAX_PLAN_BYTES:
        raise PlanError(f"{url} is larger than {MAX_PLAN_BYTES} bytes: not a plan")
    return data

"""A real archive for the PACS tests: Orthanc (Debian's ``orthanc`` and ``orthanc-dicomweb``)
started on free loopback ports with a temporary storage folder and a generated configuration:
DIMSE under the AE title ``ORTHANC`` (which knows this application as ``DASHBOARD``), DICOMweb
over HTTP at ``/dicom-web`` behind a test user, and nothing reachable from outside the machine.

:class:`Orthanc` starts and stops one; :meth:`Orthanc.store` loads DICOM files into it through
its REST API. ``.ci/run`` installs the packages; without them the fixture fails and says how to
install them.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from core.pacs.settings import PacsSettings
from tests.browser import free_port

BINARY = "Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
AET = "ORTHANC"
CALLING_AET = "DASHBOARD"
USER, PASSWORD = "dashboard-test", "not-a-real-secret-7f3a"
INSTALL_HINT = "apt-get install orthanc orthanc-dicomweb (.ci/run installs them)"


def orthanc_missing() -> str | None:
    """Why Orthanc cannot run here, or None."""
    if shutil.which(BINARY) is None:
        return f"Orthanc is not installed: {INSTALL_HINT}."
    if not DICOMWEB_PLUGIN.is_file():
        return f"Orthanc's DICOMweb plugin is not installed: {INSTALL_HINT}."
    return None


class Orthanc:
    """One Orthanc server in ``folder`` (storage, configuration, log)."""

    def __init__(self, folder: Path, *, calling_port: int | None = None) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.http_port = free_port()
        self.dicom_port = free_port()
        # Where this application's own storage SCP would listen (C-MOVE's destination).
        self.calling_port = calling_port or free_port()
        self.log = folder / "orthanc.log"
        self._proc: subprocess.Popen | None = None

    # -- the settings the application is given ---------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> PacsSettings:
        return PacsSettings("dicomweb", url=f"{self.url}/dicom-web", username=USER, password=PASSWORD, timeout_s=20)

    @property
    def dimse(self) -> PacsSettings:
        return PacsSettings(
            "dimse", host="127.0.0.1", port=self.dicom_port, called_aet=AET, calling_aet=CALLING_AET, timeout_s=20
        )

    # -- life cycle -------------------------------------------------------------------------
    def configuration(self) -> dict:
        return {
            "Name": "dashboard-test-pacs",
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "index"),
            "StorageCompression": False,
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD},
            "DicomServerEnabled": True,
            "DicomAet": AET,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True,
            "DicomCheckModalityHost": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": False,
            "DicomModalities": {
                "dashboard": {
                    "AET": CALLING_AET,
                    "Host": "127.0.0.1",
                    "Port": self.calling_port,
                    "AllowEcho": True,
                    "AllowFind": True,
                    "AllowGet": True,
                    "AllowMove": True,
                    "AllowStore": True,
                }
            },
            "UnknownSopClassAccepted": True,
            "ExecuteLuaEnabled": False,
            "RestApiWriteToFileSystemEnabled": False,
            "SaveJobs": False,
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "Ssl": False},
        }

    def start(self, timeout_s: float = 30.0) -> Orthanc:
        missing = orthanc_missing()
        if missing:
            raise RuntimeError(missing)
        config = self.folder / "orthanc.json"
        config.write_text(json.dumps(self.configuration(), indent=2), encoding="utf-8")
        with self.log.open("wb") as log:
            self._proc = subprocess.Popen([BINARY, str(config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"Orthanc stopped at start:\n{self._tail()}")
            try:
                self.rest("GET", "/system")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer in {timeout_s:.0f} s:\n{self._tail()}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:  # a clean stop takes Orthanc about 3.5 s; its storage is a test's temporary folder
                self._proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> Orthanc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- REST -----------------------------------------------------------------------------
    def rest(self, method: str, path: str, body: bytes | None = None, content_type: str = "application/dicom"):  # noqa: ANN201
        """Call Orthanc's REST API as the test user; the decoded JSON answer (or None)."""
        request = urllib.request.Request(self.url + path, data=body, method=method)
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        if body is not None:
            request.add_header("Content-Type", content_type)
        with urllib.request.urlopen(request, timeout=30) as answer:
            data = answer.read()
        return json.loads(data) if data else None

    def store(self, files: Iterable[bytes]) -> int:
        """Load DICOM files into the archive; how many were stored."""
        n = 0
        for data in files:
            self.rest("POST", "/instances", data)
            n += 1
        return n

    def instances_of_series(self, series_uid: str) -> int:
        """How many instances of a series the archive holds (0 when none)."""
        found = self.rest(
            "POST",
            "/tools/find",
            json.dumps({"Level": "Series", "Query": {"SeriesInstanceUID": series_uid}}).encode(),
            "application/json",
        )
        if not found:
            return 0
        return len(self.rest("GET", f"/series/{found[0]}")["Instances"])

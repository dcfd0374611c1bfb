"""A real Orthanc PACS for tests, from Debian's `orthanc` and `orthanc-dicomweb` packages.

`start_orthanc(folder)` writes its own configuration (storage, index and log in `folder`, free HTTP and
DICOM ports, HTTP basic authentication, the DICOMweb plugin, C-FIND / C-GET / C-STORE allowed from any
AE title), starts it and waits until it answers; `Orthanc.stop()` ends it. `orthanc_missing()` says why
it cannot run here (the tests then skip with that reason). `.ci/run` installs the packages.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ORTHANC = "Orthanc"
DICOMWEB_PLUGIN_DIRS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc/plugins"))
USER, PASSWORD = "brainseg", "pacs-test-secret"
AE_TITLE = "ORTHANC"


def _plugin() -> Path | None:
    for folder in DICOMWEB_PLUGIN_DIRS:
        found = sorted(folder.glob("libOrthancDicomWeb.so*")) if folder.is_dir() else []
        if found:
            return found[0]
    return None


def orthanc_missing() -> str:
    """'' when Orthanc and its DICOMweb plugin are installed, else why the PACS tests skip."""
    if shutil.which(ORTHANC) is None:
        return "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb; .ci/run does it)"
    if _plugin() is None:
        return "the Orthanc DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)"
    return ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Orthanc:
    folder: Path
    http_port: int
    dicom_port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def rest(self, method: str, path: str, data: bytes | None = None) -> object:
        """Orthanc's own REST API (to upload, list and delete in tests), as the authorised user."""
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = answer.read()
        return json.loads(body) if body else None

    def upload(self, files: list[Path]) -> int:
        for path in files:
            self.rest("POST", "/instances", path.read_bytes())
        return len(files)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        path = self.folder / "orthanc.log"
        return path.read_text(errors="replace")[-4000:] if path.is_file() else ""


def make_test_ca(folder: Path) -> tuple[Path, Path]:
    """(a CA certificate, a certificate + key for 127.0.0.1 signed by it), made with the openssl tool."""
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=BrainSeg test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj",
            "/CN=127.0.0.1")
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
            "server.crt", "-days", "2", "-extfile", "san.cnf")
    return folder / "ca.pem", folder / "server.crt"


class Relay:
    """A TCP relay in front of Orthanc: HTTPS with a test CA (`tls_folder`), and/or a connection that is
    cut once `cut_after` bytes have gone upstream (a network dropping mid-send).

    TLS is put in front, as a hospital's reverse proxy (nginx) does, because Debian bookworm's Orthanc
    1.10.1 dies (SIGSEGV) on the first connection to its own HTTPS.
    """

    def __init__(self, target_port: int, *, tls_folder: Path | None = None, cut_after: int | None = None) -> None:
        self.ca_file: Path | None = None
        self.context: ssl.SSLContext | None = None
        if tls_folder is not None:
            self.ca_file, certificate = make_test_ca(tls_folder)
            self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.context.load_cert_chain(certificate, tls_folder / "server.key")
        self.target_port, self.cut_after = target_port, cut_after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        if self.context is not None:
            try:
                client = self.context.wrap_socket(client, server_side=True)
            except (ssl.SSLError, OSError):  # a client that does not trust the certificate hangs up here
                client.close()
                return
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        threading.Thread(target=_relay, args=(upstream, client), daemon=True).start()
        _relay(client, upstream, self.cut_after)

    def close(self) -> None:
        self.listener.close()


def _relay(source: socket.socket, target: socket.socket, limit: int | None = None) -> None:
    sent = 0
    try:
        while chunk := source.recv(65536):
            if limit is not None and sent + len(chunk) > limit:
                target.sendall(chunk[: max(0, limit - sent)])
                break  # the network drops: both ends are closed below
            target.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    finally:
        for end in (source, target):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()



def start_orthanc(folder: Path, *, timeout: float = 60.0) -> Orthanc:
    """A fresh Orthanc with its own storage in `folder`, answering on free ports."""
    folder.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "BrainSegTest",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": AE_TITLE,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [str(_plugin())],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowGet": True,
        "DicomCheckCalledAet": True,
        "StableAge": 2,
        "ConcurrentJobs": 2,
        "SaveJobs": False,
    }
    (folder / "orthanc.json").write_text(json.dumps(config, indent=2))
    log = (folder / "orthanc.log").open("wb")
    process = subprocess.Popen([ORTHANC, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    server = Orthanc(folder, http_port, dicom_port, process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited with status {process.returncode}:\n{server.log()}")
        try:
            server.rest("GET", "/system")
            return server
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"Orthanc did not answer within {timeout:.0f} s:\n{server.log()}")

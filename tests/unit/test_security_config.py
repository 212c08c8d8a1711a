"""Security settings: booleans, what a node refuses to start without, and dev certificates."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from common.secure_start import check_start, missing_protection
from common.settings import Settings, SettingsError, parse_bool
from controller.certs import write_dev_certs
from tests.helpers import wait_until


@pytest.mark.parametrize("raw", ["1", "true", "True", "YES", "on", " on "])
def test_true_spellings(raw: str) -> None:
    assert parse_bool(raw) is True


@pytest.mark.parametrize("raw", ["0", "false", "No", "OFF"])
def test_false_spellings(raw: str) -> None:
    assert parse_bool(raw) is False


@pytest.mark.parametrize("raw", ["", "2", "enabled", "y"])
def test_anything_else_is_a_settings_error_naming_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError, match="CHRONORAFT_INSECURE_DEV"):
        Settings.from_env({"CHRONORAFT_INSECURE_DEV": raw})


def test_bool_and_secret_settings_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "CHRONORAFT_INSECURE_DEV": "yes",
            "CHRONORAFT_PROTECT_OPS_ENDPOINTS": "0",
            "CHRONORAFT_API_TOKENS": "a:admin:0123456789abcdef,b:read:0123456789abcdef",
            "CHRONORAFT_GRPC_SECRET": "s3cret-value",
            "CHRONORAFT_WORKER_ALLOWED_COMMANDS": "/usr/bin/*,echo",
        }
    )
    assert settings.insecure_dev and not settings.protect_ops_endpoints
    assert len(settings.api_tokens) == 2
    assert settings.worker_allowed_commands == ("/usr/bin/*", "echo")
    assert "s3cret" not in repr(settings) and "0123456789abcdef" not in repr(settings)


def test_a_controller_needs_tokens_a_raft_password_and_the_grpc_secret() -> None:
    assert len(missing_protection(Settings(), "controller")) == 3
    assert len(missing_protection(Settings(), "worker")) == 1
    with pytest.raises(SettingsError, match=r"refusing to start the controller: no API token"):
        check_start(Settings(), "controller")
    with pytest.raises(SettingsError, match=r"refusing to start the worker: no gRPC secret"):
        check_start(Settings(), "worker")
    complete = Settings(
        api_tokens_file="/etc/chronoraft/tokens", raft_password="p", grpc_secret="s"
    )
    assert check_start(complete, "controller") == []


def test_insecure_dev_starts_anyway_and_says_what_is_missing() -> None:
    missing = check_start(Settings(insecure_dev=True), "controller")
    assert any("CHRONORAFT_RAFT_PASSWORD" in m for m in missing)


def test_dev_certificates_chain_to_their_ca_and_serve_both_ends(tmp_path: Path) -> None:
    paths = write_dev_certs(tmp_path / "certs", hosts=["worker-7", "10.1.2.3"], days=30)
    assert [p.name for p in paths] == ["ca.crt", "ca.key", "node.crt", "node.key"]
    assert (paths[1].stat().st_mode & 0o777) == 0o600 and (paths[3].stat().st_mode & 0o777) == 0o600
    ca = x509.load_pem_x509_certificate(paths[0].read_bytes())
    node = x509.load_pem_x509_certificate(paths[2].read_bytes())
    node.verify_directly_issued_by(ca)
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    names = node.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "worker-7"} <= set(names.get_values_for_type(x509.DNSName))
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1", "::1"}
    usage = node.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usage)
    with pytest.raises(FileExistsError):
        write_dev_certs(tmp_path / "certs")


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("command", "missing"),
    [
        ("controller", ["no API token", "no Raft password", "no gRPC secret"]),
        ("worker", ["no gRPC secret"]),
    ],
)
def test_the_commands_refuse_to_start_unprotected(command: str, missing: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONORAFT_")}
    proc = subprocess.run(
        [sys.executable, "-m", "controller.cli", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"refusing to start the {command}" in proc.stderr
    for phrase in missing:
        assert phrase in proc.stderr
    assert "--insecure-dev" in proc.stderr


def test_insecure_dev_starts_a_worker_and_says_so_loudly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONORAFT_")}
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "worker", "--insecure-dev", "--port", "0"]
            + ["--data-dir", str(tmp_path / "data"), "--controllers", "127.0.0.1:1"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until("the worker to start", lambda: "worker started" in log.read_text(), 30)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log.read_text()
    assert "INSECURE DEV MODE: no gRPC secret" in text
    assert "anyone reaching gRPC can run tasks here" in text

"""MQTT client keys named by their systemd credential (`LoadCredential=`): found in $CREDENTIALS_DIRECTORY
(the OPC UA one: test_opcua_security.py).

Under the shipped unit (DynamicUser) the agent cannot read /etc/edge-agent/*.key; systemd
copies them into $CREDENTIALS_DIRECTORY and the site file names them by credential.
"""
from __future__ import annotations

import shutil

from test_tls import USER, attempt, pki, tls_broker  # noqa: F401 (fixtures)


def test_mqtt_client_key_from_the_credentials_directory(tmp_path, tls_broker, pki, caplog, monkeypatch):
    creds = tmp_path / "credentials"
    creds.mkdir()
    shutil.copy(pki.client[1], creds / "mqtt-client.key")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    lines = attempt(tmp_path, tls_broker, caplog, want_delivery=True, url=f"mqtts://localhost:{tls_broker.mtls}",
                    username=USER, password_file=str(pki.password_file), ca_file=str(pki.ca.path),
                    cert_file=str(pki.client[0]), key_file="mqtt-client.key",
                    key_password_file=str(pki.key_password_file))
    assert lines == []

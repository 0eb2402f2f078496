"""Why a connection to the broker failed, in words a gateway operator can act on.

paho swallows the exceptions of its reconnect loop; the link hands them here at the boundary and
logs the result once per cause. Each cause has a short ``reason`` (a metric label) and advice.
"""

from __future__ import annotations

import socket
import ssl

from edge_runtime.config import BrokerConfig

REASONS = ("tls_verify", "tls", "closed_before_connack", "refused_by_broker", "connection_refused", "dns", "timeout", "network",
           "write_stalled")


def classify(error: BaseException, config: BrokerConfig) -> tuple[str, str]:
    """``(reason, advice)`` for an exception raised while connecting."""
    where = f"{config.host}:{config.port}"
    if isinstance(error, ssl.SSLCertVerificationError):
        check = error.verify_message or str(error)
        if "hostname" in check.lower() or "ip address mismatch" in check.lower():
            return "tls_verify", (f"TLS verification failed ({check}): the broker's certificate does not name '{config.host}'; "
                                  "connect by a name or address listed in its subjectAltName")
        return "tls_verify", (f"TLS verification failed ({check}): the broker's certificate does not chain to "
                              f"ca_file {config.ca_file or '(the system CAs)'}; set ca_file to the CA that signed it")
    if isinstance(error, ssl.SSLError):
        text = str(error)
        if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
            return "tls", f"TLS handshake failed ({text}): {where} does not speak TLS; use its TLS port or set tls = false"
        return "tls", (f"TLS handshake failed ({text}): check cert_file/key_file against the broker's "
                       "require_certificate and cafile")
    if isinstance(error, ConnectionResetError) and config.tls:
        return "tls", f"the broker reset the connection during the TLS handshake: {where} does not speak TLS; use its TLS port or set tls = false"
    if isinstance(error, ConnectionRefusedError):
        return "connection_refused", f"nothing accepts connections on {where}: is the broker running, on this port?"
    if isinstance(error, socket.gaierror):
        return "dns", f"cannot resolve '{config.host}' ({error})"
    if isinstance(error, TimeoutError):
        return "timeout", f"no answer from {where} ({error}): a firewall, or the wrong host"
    return "network", f"{where}: {error}"


def closed_before_connack(config: BrokerConfig) -> tuple[str, str]:
    """The broker closed the connection before answering CONNECT."""
    hint = ("if its listener uses TLS, set tls = true" if not config.tls else
            "it may require a client certificate (cert_file/key_file), or refuse this TLS version")
    return "closed_before_connack", f"{config.host}:{config.port} closed the connection before answering: {hint}"


def refused_by_broker(reason_code, config: BrokerConfig) -> tuple[str, str]:
    """The broker answered CONNECT with a refusal (CONNACK reason code)."""
    text = str(reason_code)
    if "user name or password" in text.lower() or "not authorized" in text.lower():
        advice = "check username and the password file/variable, and the broker's password_file and ACL"
    elif "identifier" in text.lower():
        advice = "the broker refused client_id; choose another"
    else:
        advice = "see the broker's log"
    return "refused_by_broker", f"the broker refused the connection: {text}: {advice}"

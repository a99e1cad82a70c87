"""The per-cluster secret: what authenticates Raft peers and broker registrations of one cluster.

``mqbench cluster up`` (and the clusters of ``run`` and ``dr``) create ``DIR/cluster.secret``: 32
random bytes as 64 hex digits, created with mode 0600 (``create_secret_file``). Every broker
process gets its path (``--cluster-secret-file``) and uses it for

* the Raft port: the ``raft.auth`` handshake and a tag on every frame;
* REGISTER_BROKER / UNREGISTER_BROKER: signed with RocketMQ's request signature
  (``remoting.signature``) under the fixed access key ``mqbench-cluster`` and the secret's hex
  digits as secret key, with the signing time in ``mqbenchSignedAtMs`` (inside the signature);

and the name server, given the same file, refuses a registration or unregistration that is not
signed so, or whose signing time is more than ``SIGNED_WINDOW_MS`` away from its own clock (a
captured request cannot be replayed later). A name server without a secret accepts every
registration, as RocketMQ's does, so real RocketMQ brokers can register with it.

``read_secret_file`` refuses a file that others may read (group/other permission bits) or that does
not hold a secret: UserError naming the file.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from mqbench.errors import UserError

from .formats import signature
from .formats.command import RemotingCommand

SECRET_FILE = "cluster.secret"
SECRET_BYTES = 32
CLUSTER_ACCESS_KEY = "mqbench-cluster"
SIGNED_AT_FIELD = "mqbenchSignedAtMs"
SIGNED_WINDOW_MS = 5 * 60_000


def create_secret_file(directory: str | os.PathLike) -> Path:
    """``DIR/cluster.secret`` with a fresh secret (mode 0600); an existing one is kept (a cluster
    brought up again in its directory keeps its secret) after its mode was checked."""
    path = Path(directory) / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        read_secret_file(path)
        return path
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(SECRET_BYTES) + "\n")
    return path


def read_secret_file(path: str | os.PathLike) -> bytes:
    """The secret in ``path`` (module doc); UserError when missing, open to others or malformed."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise UserError(f"cluster secret file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read cluster secret file {path}: {exc}") from None
    if mode & 0o077:
        raise UserError(f"cluster secret file {path} is open to other users (mode {mode & 0o777:o}); "
                        f"chmod 600 it")
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) < 16:
        raise UserError(f"cluster secret file {path} does not hold a secret (at least 32 hex digits)")
    return secret


def sign_request(cmd: RemotingCommand, secret: bytes, now_ms: int) -> RemotingCommand:
    """``cmd`` with its ext fields signed for the cluster (module doc)."""
    fields = dict(cmd.ext_fields)
    fields[SIGNED_AT_FIELD] = str(now_ms)
    cmd.ext_fields = signature.sign(fields, cmd.body, CLUSTER_ACCESS_KEY, secret.hex())
    return cmd


def check_request(cmd: RemotingCommand, secret: bytes, now_ms: int) -> str | None:
    """None when ``cmd`` is signed with the cluster secret within the time window; else why not."""
    fields = cmd.ext_fields
    if fields.get(signature.ACCESS_KEY) != CLUSTER_ACCESS_KEY or signature.SIGNATURE not in fields:
        return "not signed with the cluster secret"
    if not signature.verify(fields, cmd.body, secret.hex()):
        return "signature does not match the cluster secret"
    try:
        signed_at_ms = int(fields.get(SIGNED_AT_FIELD, ""))
    except ValueError:
        return f"no signing time ({SIGNED_AT_FIELD})"
    if abs(now_ms - signed_at_ms) > SIGNED_WINDOW_MS:
        return f"signed {abs(now_ms - signed_at_ms)} ms away from this name server's clock"
    return None

"""A private Dovecot IMAP server on loopback, for the bounce mailbox poller's tests.

Debian's `dovecot-imapd` (scripts/test installs it when run as root), run
unprivileged with a configuration of its own: a passwd-file with one user,
Maildir storage in a temporary directory, plaintext IMAP on 127.0.0.1 at a
free port. Nothing of the system's Dovecot (config, sockets, mail) is used.
Run as root, the server drops to `nobody` before it starts.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from service.dev.mail_catcher import free_port
from tests.waiting import exited, wait_until

BINARY = shutil.which("dovecot") or (
    "/usr/sbin/dovecot" if os.access("/usr/sbin/dovecot", os.X_OK) else None
)
USER, PASSWORD = "bounces", "heslo-jen-pro-test"

CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
instance_name = zpravodaj-test-{port}
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
first_valid_uid = 0
first_valid_gid = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-reader {{
    user = {user}
  }}
  unix_listener stats-writer {{
    user = {user}
  }}
}}
"""


class PrivateDovecot:
    """`start()` it, use `url`, `stop()` it (or a `with` block)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="zpravodaj-dovecot-"))
        self._process: subprocess.Popen | None = None
        if os.geteuid() == 0:
            account = pwd.getpwnam("nobody")
            self.uid, self.gid = account.pw_uid, account.pw_gid
        else:
            self.uid, self.gid = os.geteuid(), os.getegid()
        self.user = pwd.getpwuid(self.uid).pw_name
        self.group = grp.getgrgid(self.gid).gr_name

    @property
    def url(self) -> str:
        return f"imap://{USER}:{PASSWORD}@127.0.0.1:{self.port}/INBOX"

    def start(self, timeout: float = 20.0) -> PrivateDovecot:
        for folder in ("run", "state", f"home/{USER}/Maildir"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        config = self.root / "dovecot.conf"
        config.write_text(
            CONFIG.format(
                root=self.root,
                port=self.port,
                user=self.user,
                group=self.group,
                uid=self.uid,
                gid=self.gid,
            )
        )
        if os.geteuid() == 0:
            for path in [self.root, *self.root.rglob("*")]:
                os.chown(path, self.uid, self.gid)
        self._process = subprocess.Popen(
            [BINARY, "-F", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            user=self.uid if os.geteuid() == 0 else None,
            group=self.gid if os.geteuid() == 0 else None,
            extra_groups=[] if os.geteuid() == 0 else None,
        )
        try:
            wait_until(
                self._greets, f"dovecot to answer on port {self.port}", timeout=timeout,
                ignore=(OSError,), abort=lambda: exited(self._process), details=self.log,
            )  # fmt: skip
        except BaseException:
            self.stop()
            raise
        return self

    def _greets(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as probe:
            return probe.recv(64).startswith(b"* OK")

    def log(self) -> str:
        path = self.root / "dovecot.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        if self._process is not None and self._process.poll() is not None:
            text += self._process.stderr.read().decode(errors="replace")
        return text[-3000:]

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
            self._process = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivateDovecot:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

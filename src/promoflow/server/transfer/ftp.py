"""The FTP(S) server (A13): pyftpdlib, one virtual user per tenant chrooted to its own tree.

- A connection gets its own thread (``ThreadedFTPServer``), so the blocking work done for it (password hash,
  content hash, the database transaction that records an upload) never stalls another tenant's transfer.
- The database is reached through the same async ``Database`` and services as the API and the worker (one
  event loop in a helper thread, see ``bridge``), so an upload is enqueued by the very ``enqueue`` the API uses,
  in the same transaction as its import record.
- An upload is written to a staging file outside every FTP tree. Only when the transfer completed is it moved to
  the private inbox and recorded; the ``226`` reply is sent after the record committed, so a ``226`` means "queued".
  An aborted, oversized or refused upload leaves nothing behind.
- A write that fails (a full disk: ENOSPC, EDQUOT; or any other error of the file system) aborts the upload with
  ``452`` (no space: RFC 959's "insufficient storage space in system", worth trying again later) or ``451`` (the
  error named), deletes the partial file and queues nothing; the log names the tenant, the file and the error.
  pyftpdlib's own answer would be ``426 None`` (it reads the errno of its wrapper, which has none), or no answer
  at all when closing the file fails too (its buffer cannot be written either).
- A passive data port is one of ``PROMOFLOW_FTP_PASSIVE_PORTS`` or none: when every one is in use, ``PASV`` is
  answered ``425`` and the log names the setting and the ports. pyftpdlib would take any free port instead, one
  the firewall (the reason for a range) does not let through, and the client would wait for nothing.
- Allowed: list and download anywhere in the own tree, upload into the four import folders (exact file names,
  no resume), delete in the output folders. No mkdir, rename, chmod, site commands. Symlinks are neither
  followed nor listed; paths outside the tree are refused.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import posixpath
import ssl
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyftpdlib.handlers import DTPHandler, FTPHandler
from pyftpdlib.servers import ThreadedFTPServer

from ...kit.clock import Clock, SystemClock
from ...kit.errtext import os_error
from ...wire.xml import IMPORT_RESULTS_DIR, InvalidFileName, parse_file_name, result_file_name
from ..config import OperatorError, Settings, passive_ports
from ..worker.wakeup import wake_local_workers
from .bridge import DbBridge
from .files import KIND_BY_DIR, FileStore
from .ftpaccess import ConfinedFS, Logins, TenantAuthorizer
from .inbox import record_refused, record_upload

log = logging.getLogger("promoflow.transfer")
_ftp_log = logging.getLogger("pyftpdlib")

# Two of pyftpdlib's internals, taken from where its handlers use them (their modules moved between releases):
# the passive listener, and the wrapper by which the data channel tells a file's errors from its socket's.
_PassiveDTP: Any = FTPHandler.passive_dtp
_FileReadWriteError: type[Exception] = vars(sys.modules[DTPHandler.__module__])["_FileReadWriteError"]

_REMOVED_COMMANDS = frozenset(
    {"APPE", "STOU", "MKD", "XMKD", "RMD", "XRMD", "RNFR", "RNTO", "MFMT", "SITE", "SITE CHMOD", "SITE HELP"}
)


def name_problem(name: str, folder: str) -> str | None:
    """Why ``name`` cannot be uploaded into ``folder``, or None."""
    kind = KIND_BY_DIR[folder]
    try:
        parsed = parse_file_name(name)
    except InvalidFileName as exc:
        return str(exc)
    if parsed.kind != kind:
        return f"{name!r} is a {parsed.kind.value} file; {folder} takes {kind.value} files"
    return None


def recordable(name: str) -> str:
    """A refused name as it is recorded (and shown in its result): characters that cannot be printed (or carried
    by XML) are escaped, and it is cut to the column's 255 characters."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in name)[:255] or "''"


def result_path(name: str, import_id: uuid.UUID) -> str:
    """Where the import's result file appears, as the FTP user sees it."""
    return f"{IMPORT_RESULTS_DIR}/{result_file_name(name, import_id)}"


NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def write_failure_reply(err: OSError) -> str:
    """The reply to an upload whose file could not be written. A full disk (or the server user's exhausted quota)
    is 452, a condition of the server that passes: try again later. 552 ("exceeded storage allocation") would
    blame the tenant's allocation, and a tenant has none but the size limit, which is answered 552 already."""
    why = os.strerror(err.errno) if err.errno is not None else str(err)
    if err.errno in NO_SPACE:
        return (
            f"452 Insufficient storage space on the server ({why}): the upload was aborted and deleted, nothing "
            "was queued. Upload it again later."
        )
    return (
        f"451 The server could not write the upload ({why}): it was aborted and deleted, nothing was queued. "
        "Upload it again later."
    )


class UploadWriteError(Exception):
    """Writing, syncing or moving a completed upload failed; the OSError is the cause."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


# ---------------------------------------------------------------------------------------------- handlers


@dataclass
class FtpContext:
    """What every connection of one server shares."""

    settings: Settings
    store: FileStore
    bridge: DbBridge
    logins: Logins
    clock: Clock


class _GuardedUpload:
    """Data channel mixin: aborts an upload past the size limit; records a completed one before replying."""

    cmd_channel: Any
    receive: bool
    transfer_finished: bool
    tot_bytes_received: int
    file_obj: Any
    _closed: bool
    _resp: tuple[str, Callable[..., Any]]

    def handle_read(self) -> None:
        super().handle_read()  # type: ignore[misc]
        limit = self.cmd_channel.transfer.settings.ftp_max_upload_bytes
        if self.receive and not self._closed and self.tot_bytes_received > limit:
            self._resp = (
                f"552 Upload exceeds the limit of {limit} bytes; aborted and deleted.",
                _ftp_log.info,
            )
            self.transfer_finished = False
            self.close()

    def handle_error(self) -> None:
        # Called by the I/O loop inside its `except`: the error is the one being handled. pyftpdlib marks the
        # file's errors (not the socket's) by wrapping them in _FileReadWriteError.
        exc = sys.exc_info()[1]
        err = os_error(exc) if isinstance(exc, _FileReadWriteError) else None
        if err is None or self._closed:
            super().handle_error()  # type: ignore[misc]
            return
        if self.receive:
            reply = self.cmd_channel.upload_write_failed(err, self.file_obj, self.tot_bytes_received)
        else:
            reply = (
                f"451 The server could not read the file ({os.strerror(err.errno or 0)}); transfer aborted."
            )
            log.error("transfer.download_read_failed user=%s path=%s error=%s", self.cmd_channel.username,
                      getattr(self.file_obj, "name", "?"), os.strerror(err.errno or 0))  # fmt: skip
        self._resp = (reply, _ftp_log.debug)  # logged above, with what the operator needs
        self.transfer_finished = False
        self.close()

    def close(self) -> None:
        if not self._closed and self.receive and self.file_obj is not None:
            if self.transfer_finished:
                try:
                    self._resp = (self.cmd_channel.complete_upload(self.file_obj), _ftp_log.debug)
                except UploadWriteError as exc:
                    reply = self.cmd_channel.upload_write_failed(
                        exc.error, self.file_obj, self.tot_bytes_received
                    )
                    self._resp = (reply, _ftp_log.debug)
                    self.transfer_finished = False
                except Exception:
                    log.exception("transfer.upload_record_failed")
                    self._resp = (
                        "451 The upload could not be queued; nothing was kept. Upload it again.",
                        log.warning,
                    )
                    self.transfer_finished = False
            if not self.transfer_finished and not self.file_obj.closed:
                # What the file's buffer still holds cannot be written either (the disk is full): closing must
                # not raise here, or pyftpdlib never sends the reply nor removes the partial file.
                with contextlib.suppress(OSError):
                    self.file_obj.close()
        super().close()  # type: ignore[misc]


class NoPassivePortError(OSError):
    """Every port of PROMOFLOW_FTP_PASSIVE_PORTS is in use."""


class _PassiveInRange(_PassiveDTP):  # type: ignore[misc]
    """pyftpdlib's passive listener, refusing its fall-back to a port outside the configured range."""

    def bind(self, addr: Any) -> None:
        ranged = self.cmd_channel.passive_ports is not None
        if ranged and addr[1] == 0 and self.__dict__.get("_pf_tried"):
            # pyftpdlib asks for any port only once every configured one was in use.
            self.close()
            raise NoPassivePortError(errno.EADDRINUSE, "every passive port is in use")
        if ranged and addr[1]:
            self.__dict__["_pf_tried"] = True
        super().bind(addr)


class _TenantCommands:
    """Control channel mixin: uploads go to staging under exact, conventional names."""

    transfer: FtpContext
    fs: Any
    username: str
    data_channel: Any
    _restart_position: int
    _current_type: str
    _in_dtp_queue: Any
    respond: Callable[..., None]  # FTPHandler's
    socket: Any
    authenticated: bool
    password: str
    close_when_done: Callable[[], None]

    def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
        # A logged-in session is held to the tenant's current password, as a new login is (`Logins`: at most the
        # login cache's time late): a password replaced because it leaked stops an open session's next command.
        if (
            self.authenticated
            and cmd != "QUIT"
            and self.transfer.logins.check(self.username, self.password) is None
        ):
            self.respond("530 The FTP password was replaced; log in again with the new one.")
            self.close_when_done()
            return
        super().pre_process_command(line, cmd, arg)  # type: ignore[misc]

    def _make_epasv(self, extmode: bool = False) -> None:
        # PASV and EPSV.
        try:
            super()._make_epasv(extmode)  # type: ignore[misc]
        except NoPassivePortError:
            spec = self.transfer.settings.ftp_passive_ports
            log.warning("transfer.passive_ports_exhausted address=%s ports=%s: every port of "
                        "PROMOFLOW_FTP_PASSIVE_PORTS is in use; widen the range (and the firewall's opening) or "
                        "lower PROMOFLOW_FTP_MAX_CONNECTIONS", self.socket.getsockname()[0], spec)  # fmt: skip
            self.respond("425 Can't open a data connection: every passive port of the server is in use. Try "
                         "again later.")  # fmt: skip

    def ftp_STOR(self, file: str, mode: str = "w") -> str | None:
        if "a" in mode or self._restart_position:
            self._restart_position = 0
            self.respond("550 Resuming an upload is not supported; upload the whole file again.")
            return None
        ftp_path = self.fs.fs2ftp(file)
        folder, name = posixpath.split(ftp_path)
        ctx = self.transfer
        if folder not in KIND_BY_DIR:
            self.respond("553 Upload into one of: " + ", ".join(sorted(KIND_BY_DIR)) + ".")
            return None
        tenant_id = ctx.logins.tenant_of(self.username)
        problem = name_problem(name, folder)
        if problem is not None:
            # Recorded like every upload, so its result file (named by its import id when the name cannot be
            # part of a file name) says why, in upload order.
            kind = KIND_BY_DIR[folder].value
            shown = recordable(name)
            where = "importResults"
            try:
                refused = ctx.bridge.call(
                    lambda db: _refuse(db, ctx, tenant_id, folder, shown, kind, problem)
                )
                where = result_path(shown, refused.import_id)
                wake_local_workers()  # its job writes the result file
            except Exception:
                log.exception("transfer.refusal_record_failed")
            log.info("transfer.name_refused tenant=%s file=%r reason=%s", tenant_id, name, problem)
            self.respond(f"553 {problem}; the result will be {where}.")
            return None
        try:
            staged = ctx.store.new_staging_file(tenant_id)
            fd = open(staged, "xb")  # noqa: SIM115 - handed to the data channel, which closes it
        except OSError as exc:
            self.respond(_write_failed(exc, tenant_id, ftp_path, str(ctx.store.staging_path(tenant_id)), 0))
            return None
        self._staged[str(staged)] = (folder, name)
        if self.data_channel is not None:
            self.respond("125 Data connection already open. Transfer starting.")
            self.data_channel.file_obj = fd
            self.data_channel.enable_receiving(self._current_type, "STOR")
        else:
            self.respond("150 File status okay. About to open data connection.")
            self._in_dtp_queue = (fd, "STOR")
        return file

    @property
    def _staged(self) -> dict[str, tuple[str, str]]:
        staged: dict[str, tuple[str, str]] | None = self.__dict__.get("_pf_staged")
        if staged is None:
            staged = self.__dict__["_pf_staged"] = {}
        return staged

    def upload_write_failed(self, err: OSError, file_obj: Any, received: int) -> str:
        """Log an upload whose file could not be written (tenant, file, staging path, the error); the reply.
        The data channel then deletes the partial file (``on_incomplete_file_received``)."""
        path = str(getattr(file_obj, "name", "?"))
        folder, name = self._staged.get(path, ("?", "?"))
        tenant_id = self.transfer.logins.tenant_of(self.username)
        return _write_failed(err, tenant_id, posixpath.join(folder, name), path, received)

    def complete_upload(self, file_obj: Any) -> str:
        """The transfer finished: fsync, hash, move into the inbox, record + enqueue; the reply to send. A file
        operation that fails raises UploadWriteError, with nothing moved into the inbox."""
        ctx = self.transfer
        staged = Path(file_obj.name)
        folder, name = self._staged[str(staged)]
        try:
            file_obj.flush()
            os.fsync(file_obj.fileno())
            file_obj.close()
            size = staged.stat().st_size
        except OSError as exc:
            raise UploadWriteError(exc) from exc
        if size > ctx.settings.ftp_max_upload_bytes:
            self._staged.pop(str(staged))
            staged.unlink(missing_ok=True)
            return f"552 Upload exceeds the limit of {ctx.settings.ftp_max_upload_bytes} bytes; deleted."
        digest = hashlib.sha256()
        with open(staged, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        tenant_id = ctx.logins.tenant_of(self.username)
        import_id = uuid.uuid4()
        relpath = ctx.store.inbox_relpath(tenant_id, import_id)
        try:
            inbox = ctx.store.accept(staged, relpath)
        except OSError as exc:
            ctx.store.resolve(relpath).unlink(missing_ok=True)  # moved, but its folder could not be synced
            raise UploadWriteError(exc) from exc
        self._staged.pop(str(staged))
        kind = KIND_BY_DIR[folder].value
        try:
            accepted = ctx.bridge.call(
                lambda db: _record(
                    db, ctx, tenant_id, import_id, folder, name, kind, relpath, size, digest.hexdigest()
                )  # fmt: skip
            )
        except BaseException:
            inbox.unlink(missing_ok=True)
            raise
        wake_local_workers()  # committed: a worker in this process (`serve`) takes it now, not at its next poll
        log.info("transfer.file_received tenant=%s import=%s file=%r bytes=%d status=%s",
                 tenant_id, import_id, name, size, accepted.status)  # fmt: skip
        where = result_path(name, import_id)
        if accepted.status == "duplicate":
            return (
                f"226 Transfer complete; queued as import {import_id}, a duplicate of import "
                f"{accepted.duplicate_of} (same content): nothing is applied again; result {where}."
            )
        return f"226 Transfer complete; queued as import {import_id}; result {where}."

    def on_file_received(self, file: str) -> None:
        """Recorded in complete_upload (before the reply); nothing left to do."""

    def on_incomplete_file_received(self, file: str) -> None:
        self._staged.pop(file, None)
        Path(file).unlink(missing_ok=True)
        log.info("transfer.upload_incomplete user=%s", self.username)


def _write_failed(err: OSError, tenant_id: Any, file: str, path: str, received: int) -> str:
    """Log an upload whose file could not be created or written (tenant, file, staging path, bytes, the error);
    the reply (`write_failure_reply`)."""
    log.error("transfer.upload_write_failed tenant=%s file=%r path=%s bytes=%d error=%s",
              tenant_id, file, path, received, _describe(err))  # fmt: skip
    return write_failure_reply(err)


def _describe(err: OSError) -> str:
    """``ENOSPC (No space left on device)``: the name to search for and the words to read."""
    if err.errno is None:
        return str(err)
    return f"{errno.errorcode.get(err.errno, err.errno)} ({os.strerror(err.errno)})"


async def _record(db: Any, ctx: FtpContext, tenant_id: uuid.UUID, import_id: uuid.UUID, folder: str, name: str,
                  kind: str, relpath: str, size: int, digest: str) -> Any:  # fmt: skip
    async with db.write() as conn:
        return await record_upload(
            conn, tenant_id=tenant_id, import_id=import_id, folder=folder, name=name, kind=kind,
            stored_path=relpath, size=size, content_hash=digest, root=str(ctx.store.base), now=ctx.clock.now(),
        )  # fmt: skip


async def _refuse(db: Any, ctx: FtpContext, tenant_id: uuid.UUID, folder: str, name: str, kind: str,
                  reason: str) -> Any:  # fmt: skip
    async with db.write() as conn:
        return await record_refused(
            conn,
            tenant_id=tenant_id,
            folder=folder,
            name=name,
            kind=kind,
            reason=reason,
            root=str(ctx.store.base),
            now=ctx.clock.now(),
        )


def _check_tls_pair(settings: Settings) -> None:
    """The certificate and key load and belong together, or the server does not start: one line saying which
    (OpenSSL's own error names neither file)."""
    cert, key = settings.ftp_tls_cert, settings.ftp_tls_key
    for name, path in (("PROMOFLOW_FTP_TLS_CERT", cert), ("PROMOFLOW_FTP_TLS_KEY", key)):
        if path is not None and not path.is_file():
            raise OperatorError(f"FTPS: {name} names {path}, which is not a file")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            str(cert), str(key) if key else None
        )
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            why = f"the key {key} is not the key of the certificate {cert}"
        elif key is None:
            why = f"{cert} holds no private key: set PROMOFLOW_FTP_TLS_KEY to its key file"
        else:
            why = f"{cert} must be a PEM certificate and {key} its PEM private key (are they swapped?)"
        raise OperatorError(f"FTPS: {why}") from None


def handler_class(ctx: FtpContext) -> type[FTPHandler]:
    """The handler (and data channel) classes for this server's settings: FTPS when a certificate is set."""
    settings = ctx.settings
    tls = settings.ftp_tls_cert is not None
    control_base: type[Any] = FTPHandler
    data_base: type[Any] = DTPHandler
    attrs: dict[str, Any] = {}
    if tls:
        try:
            from pyftpdlib.handlers.ftps.control import TLS_FTPHandler
            from pyftpdlib.handlers.ftps.data import TLS_DTPHandler
        except ImportError as exc:  # pragma: no cover - pyOpenSSL is a server dependency
            raise RuntimeError("FTPS needs pyOpenSSL (pip install pyopenssl)") from exc
        control_base, data_base = TLS_FTPHandler, TLS_DTPHandler
        _check_tls_pair(settings)
        attrs.update(
            certfile=str(settings.ftp_tls_cert),
            keyfile=str(settings.ftp_tls_key) if settings.ftp_tls_key else None,
            tls_control_required=settings.ftp_tls_required,
            tls_data_required=settings.ftp_tls_required,
        )
    dtp = type("PromoflowDTP", (_GuardedUpload, data_base), {})
    commands = {k: v for k, v in control_base.proto_cmds.items() if k not in _REMOVED_COMMANDS}
    attrs.update(
        transfer=ctx,
        authorizer=TenantAuthorizer(ctx.logins),
        abstracted_fs=ConfinedFS,
        passive_dtp=_PassiveInRange,
        dtp_handler=dtp,
        proto_cmds=commands,
        passive_ports=passive_ports(settings.ftp_passive_ports),
        masquerade_address=settings.ftp_masquerade_address,
        banner="promoflow FTP" + ("S (AUTH TLS)" if tls else "") + " ready.",
        permit_foreign_addresses=False,
        auth_failed_timeout=settings.ftp_auth_failed_delay_seconds,
        use_sendfile=False,
    )
    return type("PromoflowFTPHandler", (_TenantCommands, control_base), attrs)


# ------------------------------------------------------------------------------------------------ server


class FtpServer:
    """The server in a background thread: ``start()`` binds (the port is known after it), ``stop()`` ends it."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.store = FileStore(settings.data_dir)
        self.bridge = DbBridge(settings.resolved_database_url())
        logins = Logins(self.bridge, self.store, settings.ftp_auth_cache_seconds)
        self.ctx = FtpContext(settings, self.store, self.bridge, logins, clock or SystemClock())
        self._server: ThreadedFTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        host, port = self._server.address[:2]
        return host, port

    def start(self) -> FtpServer:
        logging.getLogger("pyftpdlib").setLevel(
            logging.DEBUG if self.settings.log_level.lower() == "debug" else logging.WARNING
        )
        self.bridge.start()
        handler = handler_class(self.ctx)
        server = ThreadedFTPServer((self.settings.ftp_host, self.settings.ftp_port), handler)
        server.max_cons = self.settings.ftp_max_connections
        server.max_cons_per_ip = self.settings.ftp_max_connections_per_ip
        self._server = server
        self._thread = threading.Thread(target=self._run, name="promoflow-ftp", daemon=True)
        self._thread.start()
        host, port = self.address
        scheme = "ftps" if self.settings.ftp_tls_cert else "ftp"
        print(f"promoflow ftp listening on {scheme}://{host}:{port}", flush=True)
        log.info("transfer.ftp_started address=%s:%d tls=%s", host, port, scheme == "ftps")
        return self

    def _run(self) -> None:
        assert self._server is not None
        try:
            while not self._stop.is_set():
                self._server.serve_forever(timeout=0.2, blocking=False, handle_exit=False)
        finally:
            self._server.close_all()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)
        self.bridge.stop()
        log.info("transfer.ftp_stopped")


def start_ftp_service(settings: Settings) -> Callable[[], None]:
    """`serve`'s process service: start the FTP server beside the API; returns its stop function."""
    return FtpServer(settings).start().stop


def run_ftp(settings: Settings) -> None:
    """`promoflow ftp`: only the FTP server, until SIGINT/SIGTERM."""
    import signal

    server = FtpServer(settings).start()
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.stop()

"""The FTP(S) side of the sync agent: upload outbox files, read import results back (stdlib ``ftplib``).

``ftp://user:password@host:port`` or ``ftps://…`` (explicit TLS: ``AUTH TLS`` on the control connection and
``PROT P`` for data). User and password are URL-decoded, so a password may contain ``%40`` for ``@``.

Uploads never leave a partial file under the final name. promoflow's FTP server guarantees this itself: it
stages every upload outside the tenant's tree and answers ``226`` only once the complete file is recorded
(its tree has no rename). Against a plain FTP server, ``via_rename=True`` uploads to ``.<name>.part`` and
renames it into place.
"""

from __future__ import annotations

import ftplib
import io
import posixpath
import ssl
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import unquote, urlsplit

__all__ = ["FtpConnection", "FtpError", "FtpRefused", "FtpTarget", "FtpUnavailable"]


class FtpError(Exception):
    """Base of the FTP side's failures."""


class FtpUnavailable(FtpError):
    """No usable FTP session: the server is unreachable, the login failed, or a transfer broke off."""


class FtpRefused(FtpError):
    """The server refused one file for good (5xx reply to the upload): ``code`` and ``message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class FtpTarget:
    """Where to upload: parsed from ``ftp[s]://user:password@host[:port][/root]``."""

    tls: bool
    host: str
    port: int
    user: str
    password: str
    root: str = ""

    @classmethod
    def from_url(cls, url: str) -> FtpTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("ftp", "ftps"):
            raise ValueError(f"an FTP URL starts with ftp:// or ftps://, not {parts.scheme or 'nothing'}://")
        if not parts.hostname:
            raise ValueError("the FTP URL names no host")
        if parts.username is None:
            raise ValueError("the FTP URL names no user (ftp://user:password@host:port)")
        return cls(
            tls=parts.scheme == "ftps",
            host=parts.hostname,
            port=parts.port or 21,
            user=unquote(parts.username),
            password=unquote(parts.password or ""),
            root=parts.path.rstrip("/"),
        )

    def redacted(self) -> str:
        """The URL without its password (for logs and reports)."""
        return f"{'ftps' if self.tls else 'ftp'}://{self.user}@{self.host}:{self.port}{self.root}"

    def path(self, folder: str, name: str | None = None) -> str:
        base = f"{self.root}{folder}" if folder.startswith("/") else posixpath.join(self.root or "/", folder)
        return base if name is None else posixpath.join(base, name)


_ERRORS: tuple[type[BaseException], ...] = (*ftplib.all_errors, ssl.SSLError)


def _reply_code(exc: ftplib.Error) -> tuple[str, str]:
    text = str(exc).strip()
    code, _, message = text.partition(" ")
    return (code if code.isdigit() else "500"), (message or text)


class FtpConnection:
    """One FTP(S) session (a context manager). Every failure is an :class:`FtpError`."""

    def __init__(
        self, target: FtpTarget, *, timeout: float = 30.0, tls_context: ssl.SSLContext | None = None
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.tls_context = tls_context
        self._ftp: ftplib.FTP | None = None

    def __enter__(self) -> FtpConnection:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> None:
        target = self.target
        ftp: ftplib.FTP
        if target.tls:
            ftp = ftplib.FTP_TLS(
                context=self.tls_context or ssl.create_default_context(), timeout=self.timeout
            )
        else:
            ftp = ftplib.FTP(timeout=self.timeout)
        try:
            ftp.connect(target.host, target.port)
            ftp.login(target.user, target.password)
            if isinstance(ftp, ftplib.FTP_TLS):
                ftp.prot_p()
        except _ERRORS as exc:
            ftp.close()
            raise FtpUnavailable(f"cannot use {target.redacted()}: {exc}") from exc
        self._ftp = ftp

    def close(self) -> None:
        ftp, self._ftp = self._ftp, None
        if ftp is None:
            return
        try:
            ftp.quit()
        except _ERRORS:
            ftp.close()

    @property
    def ftp(self) -> ftplib.FTP:
        if self._ftp is None:
            raise FtpUnavailable("the FTP session is not open")
        return self._ftp

    def _fail(self, what: str, exc: BaseException) -> FtpError:
        if isinstance(exc, ftplib.error_perm):
            code, message = _reply_code(exc)
            return FtpRefused(code, f"{what}: {message}")
        return FtpUnavailable(f"{what}: {exc}")

    # -------------------------------------------------------------------------------------- operations

    def listing(self, folder: str) -> dict[str, int | None]:
        """The files in ``folder`` with their sizes (None when the server does not say)."""
        path = self.target.path(folder)
        try:
            try:
                return {
                    name: int(facts["size"]) if "size" in facts else None
                    for name, facts in self.ftp.mlsd(path, facts=["type", "size"])
                    if facts.get("type", "file") == "file"
                }
            except ftplib.error_perm as exc:
                if not str(exc).startswith("500") and not str(exc).startswith("502"):
                    raise
            names = self.ftp.nlst(path)
            return {posixpath.basename(name): None for name in names}
        except _ERRORS as exc:
            if isinstance(exc, ftplib.error_perm) and str(exc).startswith("550"):
                return {}  # no such folder (yet)
            raise self._fail(f"list {path}", exc) from exc

    def upload(self, folder: str, name: str, data: bytes, *, via_rename: bool = False) -> str:
        """Store ``data`` as ``folder/name``; the server's final reply (``226 …``)."""
        final = self.target.path(folder, name)
        target = self.target.path(folder, f".{name}.part") if via_rename else final
        try:
            reply = self.ftp.storbinary(f"STOR {target}", io.BytesIO(data))
            if via_rename:
                self.ftp.rename(target, final)
        except _ERRORS as exc:
            raise self._fail(f"upload {final}", exc) from exc
        return reply

    def download(self, folder: str, name: str) -> bytes:
        path = self.target.path(folder, name)
        out = io.BytesIO()
        try:
            self.ftp.retrbinary(f"RETR {path}", out.write)
        except _ERRORS as exc:
            raise self._fail(f"download {path}", exc) from exc
        return out.getvalue()

    def delete(self, folder: str, name: str) -> bool:
        path = self.target.path(folder, name)
        try:
            self.ftp.delete(path)
        except ftplib.error_perm:
            return False
        except _ERRORS as exc:
            raise self._fail(f"delete {path}", exc) from exc
        return True

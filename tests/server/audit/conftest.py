from tests.server.transfer.conftest import transfer  # noqa: F401  (the FTP fixture, for the file-import tests)

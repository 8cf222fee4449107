"""File transfer (A13, A14): the FTP(S) server, the import queue and importers, result files, the imports API
and the promotion export.

Data flow: an FTP upload completes → the bytes move out of the tenant's tree into the private inbox → one
transaction records the import and enqueues its job on the tenant's transfer queue → a worker streams the file
through the hardened XML codecs, applies records in batches through the same services as the API, records
each record's verdict in the batch's transaction → writes the result file and moves the file to processed/.
"""

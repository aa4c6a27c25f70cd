"""Bulk transfers between the edge and Blob Storage: a folder tree up, models (or files) down.

``mfgvision file-upload`` sends a folder tree to a container, resumable and skipping what is already
there (same size and MD5). ``mfgvision file-download`` syncs a models container into the model volume
(``<name>/<version>/model.onnx`` + labels), atomically and verified, or plain files into a folder.
Both run once, or as a module with ``--interval``.
"""

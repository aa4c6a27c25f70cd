"""The FileCleanup module: image retention by age and disk watermark, leftovers, old database rows."""

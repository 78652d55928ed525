"""Dataset readers, row validation and the batch load / reload orchestration."""

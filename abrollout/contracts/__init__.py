"""Contracts: the input spec, the tool arguments and receipts, and the output report."""

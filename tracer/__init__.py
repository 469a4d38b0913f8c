"""mcalltrace: a live eBPF tracer for the Go scheduler."""

__version__ = "0.1.0"

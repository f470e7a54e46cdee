"""callstorage: a Kubernetes operator for where call recordings and transcriptions are stored."""

__version__ = "0.1.0"

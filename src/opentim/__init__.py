"""OpenTIM: a self-hosted server for the Tencent Cloud Chat REST API."""

__version__ = "0.1.0"

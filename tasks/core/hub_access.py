"""Can the Hugging Face hub be reached? A socket probe of a few seconds, asked before any hub download.

transformers and datasets retry an unreachable hub for about a minute before failing; qaflow asks first and
fails (or reads the local cache) at once. Imports nothing else of qaflow and no heavy library.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

HUB_PROBE_TIMEOUT_S = 3.0


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def hub_reachable(endpoint: str | None = None) -> bool:
    """True when a TCP connection to the hub endpoint opens within HUB_PROBE_TIMEOUT_S."""
    url = urlparse(endpoint or hub_endpoint())
    try:
        with socket.create_connection((url.hostname or "", url.port or 443), timeout=HUB_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False

"""The web layer: the aiohttp app (README: "Using it") and the server that runs it.

The only package that imports ``aiohttp.web``; nothing else in feedbot imports it.
"""

from feedbot.web.app import CACHE, SETTINGS, STORE, create_app
from feedbot.web.server import WebServer

__all__ = ["CACHE", "SETTINGS", "STORE", "WebServer", "create_app"]

"""The embedded server's web page: browse entities, projects, runs and files in a browser.

Server-rendered (Jinja2, autoescaped), no build step and nothing fetched from elsewhere: the templates, a
stylesheet and a copy-button script ship in this package. The server mounts `create_web_app` at /web and
redirects / there.
"""

from __future__ import annotations

from .pages import FileOpener, attachment_disposition, create_web_app
from .session import MOUNT

__all__ = ["MOUNT", "FileOpener", "attachment_disposition", "create_web_app"]

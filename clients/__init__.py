"""The clients: the terminal client (``clients/terminal.py``), the stream client every Python
client holds a live stream with (``clients/stream.py``), and the web client's files
(``clients/web/``, served by the BFF)."""

from pathlib import Path

#: The web client's files (HTML, CSS, one JavaScript module), which the BFF serves.
WEB = Path(__file__).resolve().parent / "web"

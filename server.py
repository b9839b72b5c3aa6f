"""The ASGI entry point: ``uvicorn server:app``. Configuration comes from Settings
(``AUTOREPLY_*`` environment variables or ``autoreply.toml``)."""

from autoreply.app import create_app

app = create_app()

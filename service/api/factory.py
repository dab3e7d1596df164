"""Uvicorn entry point: `service.api.factory:app_from_environment` with factory=True."""

from fastapi import FastAPI

from service.api.app import create_app
from service.logging_setup import configure_logging
from service.settings import Settings


def app_from_environment() -> FastAPI:
    settings = Settings()
    # Each worker process is its own entry point, so each configures its logging.
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)

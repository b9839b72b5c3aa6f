"""The FastAPI service: customer webhook, agent API, admin and operations endpoints."""

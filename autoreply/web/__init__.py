"""What one running service holds, shared by its two front doors: the JSON API
(``autoreply.api``) and the agent console (``autoreply.console``). Neither imports the other;
both import this. ``autoreply.app.create_app`` puts them together on one FastAPI app.

    state.py       ServiceState (the bot, batcher, channels, limits, metrics) and StateDep
    batching.py    micro-batching of customer messages; in_own_thread for long work
    limits.py      per-user and per-IP rate limits, the body size limit
    delivery.py    sending agent replies and handoff notices back to the chat channels
    errors.py      HTTP errors and the one error body every endpoint returns
    logs.py        request ids and JSON log lines
    prometheus.py  the Prometheus metrics behind ``/metrics``
"""

